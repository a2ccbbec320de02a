"""A pipeline that consumes register_model's google.VertexModel output (no ``from __future__``:
kfp reads the annotations as objects)."""

from kfp import dsl
from kfp.dsl import Input

from chainproof import dsl as chainproof_dsl
from chainproof.artifact_types import VertexModel
from chainproof.components import register_model


def build_downstream(image: str):
    @dsl.component(base_image=image, install_kfp_package=False)
    def deploy(model: Input[VertexModel]) -> str:
        return model.metadata["resourceName"]

    @chainproof_dsl.pipeline(name="downstream")
    def downstream(registry_uri: str) -> str:
        model = dsl.importer(artifact_uri="gs://b/m", artifact_class=dsl.Model)
        verification = dsl.importer(artifact_uri="gs://b/c", artifact_class=dsl.Artifact)
        reg = register_model(model=model.output, verification=verification.output, model_name="m",
                             registry_uri=registry_uri)
        return deploy(model=reg.outputs["registered_model"]).output

    return downstream
