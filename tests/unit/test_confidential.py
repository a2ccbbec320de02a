"""Confidential GKE nodes: compiled selectors and tolerations, the Vertex refusal, and the
evidence a step can read."""

from __future__ import annotations

import pytest
import yaml
from chainproof.confidential import (
    CONFIDENTIAL_NODE_LABEL,
    ConfidentialUnsupported,
    NotConfidential,
    check_confidential_template,
    compile_confidential,
    read_confidential_evidence,
)


def _pipelines():
    from tests.unit._kfp_tasks import confidential_pipelines

    return confidential_pipelines()


def test_a_gke_compile_pins_every_task_to_confidential_nodes(tmp_path):
    training, _, _ = _pipelines()
    out = compile_confidential(training, tmp_path / "gke.yaml", target="gke")
    docs = list(yaml.safe_load_all(out.read_text()))
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == sorted(docs[0]["deploymentSpec"]["executors"]) and len(executors) == 3
    for spec in executors.values():
        assert spec["nodeSelector"]["labels"] == {CONFIDENTIAL_NODE_LABEL: "true"}
        assert spec["tolerations"] == [{"key": CONFIDENTIAL_NODE_LABEL, "operator": "Equal", "value": "true",
                                        "effect": "NoSchedule"}]
    assert check_confidential_template(out) == sorted(executors)


def test_an_unpinned_nested_pipeline_is_refused_for_gke_and_nothing_is_written(tmp_path):
    _, mixed, plain = _pipelines()
    with pytest.raises(NotConfidential, match=r"expected every task on confidential nodes .* found 1 without: exec-echo-2") as err:
        compile_confidential(mixed, tmp_path / "mixed.yaml", target="gke")
    assert err.value.executors == ["exec-echo-2"]
    assert list(tmp_path.iterdir()) == []
    compile_confidential(plain, tmp_path / "plain.yaml", target="gke", require=False)
    with pytest.raises(NotConfidential):
        check_confidential_template(tmp_path / "plain.yaml")


def test_vertex_refuses_the_requirement_with_one_line(tmp_path):
    training, _, plain = _pipelines()
    for kwargs in ({"require": True}, {"require": False}):
        with pytest.raises(ConfidentialUnsupported) as err:
            compile_confidential(training, tmp_path / "vertex.yaml", target="vertex", **kwargs)
        message = err.value.diagnostics()
        assert message.startswith("confidential-training: confidential nodes are required, but Vertex AI Pipelines")
        assert "\n" not in message and err.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []
    # Without the requirement, an ordinary pipeline compiles for Vertex.
    assert compile_confidential(plain, tmp_path / "plain.yaml", target="vertex", require=False).is_file()


@pytest.mark.parametrize(
    ("flags", "devices", "technology"),
    [
        ("fpu vme sev sev_es sev_snp", [], "sev-snp"),
        ("fpu vme sev", [], "sev"),
        ("fpu vme sev sev_es", [], "sev-es"),
        ("fpu tdx_guest", [], "tdx"),
        ("fpu vme", ["dev/sev-guest"], "sev-snp"),
        ("fpu vme sse2", [], "none"),
    ],
)
def test_evidence_reads_cpu_flags_and_guest_devices(tmp_path, flags, devices, technology):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    for device in [*devices, "dev/tpm0"]:
        (tmp_path / device).parent.mkdir(exist_ok=True)
        (tmp_path / device).write_text("")
    record = read_confidential_evidence(root=tmp_path, metadata_host=None)
    assert record["technology"] == technology and record["attested"] is False
    assert "tpm" in record["devices"] and set(record["cpu_flags"]) <= {"sev", "sev_es", "sev_snp", "tdx_guest"}
