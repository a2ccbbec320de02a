"""The confidentiality evidence asks the metadata server (with Metadata-Flavor) for the machine type."""

from __future__ import annotations

from chainproof.confidential import read_confidential_evidence


def test_evidence_records_machine_type_and_zone_from_the_metadata_server(metadata_server, tmp_path):
    metadata_server.instance.update({"machine-type": "projects/123/machineTypes/n2d-standard-4",
                                     "zone": "projects/123/zones/europe-west4-a"})
    record = read_confidential_evidence(root=tmp_path, metadata_host=metadata_server.address)
    assert record["metadata"] == {"machine_type": "n2d-standard-4", "zone": "europe-west4-a"}
    assert record["technology"] == "none" and metadata_server.refused == []
    metadata_server.stop()
    assert read_confidential_evidence(root=tmp_path, metadata_host=metadata_server.address, timeout=0.5)["metadata"] == {
        "error": "metadata server unreachable"}
    metadata_server.start()  # the fixture stops it again
