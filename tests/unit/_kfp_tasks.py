"""Tiny KFP components for compile-only tests (no ``from __future__ import annotations``:
kfp reads the real annotation objects)."""

from kfp import dsl


@dsl.component(base_image="python:3.11")
def echo(x: str) -> str:
    """Return its input."""
    return x


@dsl.pipeline(name="inner")
def inner(x: str = "i"):
    """A nested pipeline that is not wrapped with ``confidential``."""
    echo(x=x)


def confidential_pipelines():
    """Three pipelines: all pinned (with If and ParallelFor), one with an unpinned nested pipeline, one plain."""
    from chainproof.confidential import confidential

    @dsl.pipeline(name="confidential-training")
    @confidential
    def training(x: str = "a"):
        first = echo(x=x)
        with dsl.If(first.output == "a"):
            echo(x=first.output)
        with dsl.ParallelFor(["p", "q"]) as item:
            echo(x=item)

    @dsl.pipeline(name="mixed")
    @confidential
    def mixed(x: str = "a"):
        echo(x=x)
        inner(x=x)  # its own tasks are not pinned

    @dsl.pipeline(name="plain")
    def plain(x: str = "a"):
        echo(x=x)

    return training, mixed, plain
