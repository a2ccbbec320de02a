"""Generated manifests pass the project's restricted check and kubernetes-validate (strict); weakenings are named."""

from __future__ import annotations

import copy

import pytest

from chainproof.cli import main
from chainproof.errors import InputError
from chainproof.k8s.manifests import ManifestOptions, check_documents, render_manifests

kv = pytest.importorskip("kubernetes_validate", reason="needs the test extra: pip install 'chainproof[test]'")

IMAGE = "registry.example/chainproof-serve@sha256:" + "a" * 64


def _docs(**kw: object) -> list[dict]:
    return render_manifests(ManifestOptions(ref="local://fraud@3", image=IMAGE, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("fetch", [False, True])
def test_generated_manifests_pass(fetch: bool) -> None:
    kw = {"model_source": "s3://bucket/model/", "model_sha256": "b" * 64, "egress_cidrs": ("52.216.0.0/15",)} if fetch else {}
    docs = _docs(**kw)
    assert check_documents(docs, level="restricted", hardening=True) == []
    for d in docs:
        kv.validate(d, "1.32.0", strict=True)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("NetworkPolicy") == (3 if fetch else 2)


def _deploy(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


WEAKENINGS = {
    "root user": (lambda s: s["containers"][0]["securityContext"].update(runAsUser=0),
                  "spec.template.spec.containers[0].securityContext.runAsUser"),
    "writable root": (lambda s: s["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
                      "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem"),
    "added capability": (lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
                         "spec.template.spec.containers[0].securityContext.capabilities.add"),
    "missing seccomp": (lambda s: (s["securityContext"].pop("seccompProfile"),
                                   s["containers"][0]["securityContext"].pop("seccompProfile")),
                        "spec.template.spec.containers[0].securityContext.seccompProfile.type"),
    "tag instead of digest": (lambda s: s["containers"][0].update(image="registry.example/serve:latest"),
                              "spec.template.spec.containers[0].image"),
}


@pytest.mark.parametrize("name", sorted(WEAKENINGS))
def test_each_weakening_is_reported_with_its_field(name: str) -> None:
    docs = copy.deepcopy(_docs())
    weaken, field = WEAKENINGS[name]
    weaken(_deploy(docs))
    fields = [f.violation.field for f in check_documents(docs, hardening=True)]
    assert field in fields, fields


def test_missing_egress_deny_is_reported() -> None:
    docs = [d for d in _docs() if d["metadata"]["name"] != "default-deny"]
    fields = [f.violation.field for f in check_documents(docs, hardening=True)]
    assert "NetworkPolicy.spec.policyTypes[Egress]" in fields


def test_tag_image_refused_by_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "manifests", "local://fraud@3", "--image", "registry.example/serve:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("FAIL: --image: expected IMAGE@sha256") and "Traceback" not in err


def test_model_source_needs_pinned_digest() -> None:
    with pytest.raises(InputError, match="--model-sha256"):
        _docs(model_source="s3://b/m/", egress_cidrs=("10.0.0.0/8",))


def test_cli_check_roundtrip(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.yaml"
    assert main(["k8s", "manifests", "local://fraud@3", "--image", IMAGE, "-o", str(out)]) == 0
    assert main(["k8s", "check", "--hardening", str(out)]) == 0
    assert "PASS" in capsys.readouterr().out
