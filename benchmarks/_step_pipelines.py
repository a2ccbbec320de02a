"""The same N-step pipeline as plain kfp components and as chainproof.dsl components.

Each step copies a small file from its input to its output: the measured difference is
the zero-trust wrapper itself (verify the inputs against the producer's link, digest the
outputs, sign a link, write the evidence beside the outputs). No ``from __future__``:
kfp reads the annotations as types.
"""

from kfp import dsl as kfp_dsl
from kfp.dsl import Dataset, Input, Output

from chainproof import dsl

STEPS = 5


def _first(out: Output[Dataset]) -> None:
    with open(out.path, "w") as f:
        f.write("x" * 1024)


def _copy(src: Input[Dataset], out: Output[Dataset]) -> None:
    with open(src.path) as f_in, open(out.path, "w") as f_out:
        f_out.write(f_in.read())


plain_first = kfp_dsl.component(_first, base_image="python:3.11", install_kfp_package=False)
plain_copy = kfp_dsl.component(_copy, base_image="python:3.11", install_kfp_package=False)
zt_first = dsl.component(_first)
zt_copy = dsl.component(_copy)


@kfp_dsl.pipeline(name="plain-steps")
def plain_steps():
    task = plain_first()
    for _ in range(STEPS - 1):
        task = plain_copy(src=task.outputs["out"])


@dsl.pipeline(name="zero-trust-steps")
def zero_trust_steps():
    task = zt_first()
    for _ in range(STEPS - 1):
        task = zt_copy(src=task.outputs["out"])
