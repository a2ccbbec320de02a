"""A pipeline that consumes register_model's google.VertexModel output (no ``from __future__``:
kfp reads the annotations as objects)."""

from kfp import dsl
from kfp.dsl import Input

from chainproof.artifact_types import VertexModel
from chainproof.components import register_model


def build_downstream(image: str):
    @dsl.component(base_image=image, install_kfp_package=False)
    def deploy(model: Input[VertexModel]) -> str:
        return model.metadata["resourceName"]

    @dsl.pipeline(name="downstream")
    def downstream(registry_uri: str) -> str:
        model = dsl.importer(artifact_uri="gs://b/m", artifact_class=dsl.Model)
        chain = dsl.importer(artifact_uri="gs://b/c", artifact_class=dsl.Artifact)
        reg = register_model(model=model.output, chain=chain.output, layout_sha256="0" * 64, signer="s",
                             model_name="m", registry_uri=registry_uri)
        return deploy(model=reg.outputs["registered_model"]).output

    return downstream
