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


def test_cli_check_validates_against_the_kubernetes_schemas(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import yaml

    out = tmp_path / "m.yaml"
    assert main(["k8s", "manifests", "local://fraud@3", "--image", IMAGE, "-o", str(out)]) == 0
    assert main(["k8s", "check", "--hardening", "--schemas", "1.32.0", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"PASS {out} (restricted, latest, schemas 1.32.0)")
    # A field Kubernetes does not know (a typo that the API server would drop or refuse) fails, naming the path.
    docs = list(yaml.safe_load_all(out.read_text()))
    deployment = next(i for i, d in enumerate(docs) if d["kind"] == "Deployment")
    docs[deployment]["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    assert main(["k8s", "check", "--schemas", "1.32.0", "--format", "json", str(bad)]) == 1
    [violation] = json.loads(capsys.readouterr().out)["files"][0]["violations"]
    assert violation["document"] == deployment and violation["check"] == "schema 1.32.0"
    assert violation["field"] == "spec.template.spec.containers.0"
    assert "'securityContex' was unexpected" in violation["found"]
    # Without --schemas the project's own check does not look at unknown fields.
    assert main(["k8s", "check", str(bad)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("version, message", [
    ("v1.32", "--schemas 'v1.32': expected a Kubernetes version such as 1.32.0"),
    ("9.99.0", "--schemas 9.99.0: kubernetes-validate has no schemas for this version"),
])
def test_cli_check_refuses_a_schema_version_it_cannot_use(tmp_path, capsys, version: str, message: str) -> None:
    out = tmp_path / "m.yaml"
    assert main(["k8s", "manifests", "local://fraud@3", "--image", IMAGE, "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["k8s", "check", "--schemas", version, str(out)]) == 2
    assert message in capsys.readouterr().err


def test_cli_check_names_a_kind_without_a_schema(tmp_path, capsys) -> None:
    doc = tmp_path / "x.yaml"
    doc.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    assert main(["k8s", "check", "--schemas", "1.32.0", str(doc)]) == 1
    assert "kind: no schema for example.com/v1/Widget in Kubernetes 1.32.0" in capsys.readouterr().out
