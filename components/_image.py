"""The container image every chainproof component runs in.

Components run without network access and without ``pip install`` at run time,
so the image must already contain chainproof and its pinned dependencies. The
image is referenced by digest, never by tag.
"""

# The project does not publish an image yet: this reference names the image
# ``chainproof compile --image REGISTRY/PATH@sha256:DIGEST`` replaces. It is
# digest-shaped so kfp accepts it; the all-zero digest matches no real image,
# so a pipeline compiled without --image can never silently run something else.
COMPONENT_IMAGE = "us-docker.pkg.dev/chainproof/images/chainproof-python311@sha256:" + "0" * 64
