"""Artifact types chainproof components emit for other toolkits.

``VertexModel`` has the schema title of Google Cloud Pipeline Components'
``google.VertexModel``, so a registered model can feed GCPC components such as
``ModelDeployOp`` downstream without installing GCPC (which pins
google-cloud-aiplatform below 2). kfp matches artifact types by schema title.

This module lives in the SDK, not in ``chainproof.components``: the KFP executor
imports it inside the running step, where ``kfp.dsl.component`` does not exist.
"""

from kfp.dsl import Artifact

__all__ = ["VertexModel"]


class VertexModel(Artifact):  # type: ignore[misc]  # kfp ships no type information
    """A Vertex AI Model Registry version.

    Attributes (as artifact metadata):
        resourceName: ``projects/P/locations/L/models/ID@VERSION`` (what GCPC reads).
    """

    schema_title = "google.VertexModel"
    schema_version = "0.0.1"
