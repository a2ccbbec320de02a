"""Tiny KFP components for compile-only tests (no ``from __future__ import annotations``:
kfp reads the real annotation objects)."""

from kfp import dsl


@dsl.component(base_image="python:3.11")
def echo(x: str) -> str:
    """Return its input."""
    return x
