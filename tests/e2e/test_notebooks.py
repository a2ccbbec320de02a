"""The notebooks under notebooks/ run top to bottom, each in a fresh working directory, and show what they say.

Each notebook is executed with nbclient in a kernel of this very interpreter (a kernelspec made
in a temporary folder) from a temporary folder outside the repository, with the trust store in a
temporary folder (notebook 03 imports the loopback Vertex AI and Cloud Storage services from the
installed ``chainproof.testing``) and no ``CHAINPROOF_PROJECT`` (so nothing reaches a real cloud service).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_data_scientist", "02_auditor", "03_mlops"]
CELL_TIMEOUT = 240  # seconds; a whole notebook takes a few seconds to a minute

# What each notebook must show (in its text, stream and HTML outputs).
EXPECTED = {
    "01_data_scientist": [
        "secure_ingest -> preprocess -> train -> sign_and_attest -> verify_chain -> register_model",
        "registered: local://my-model@1",
        "OK: local://my-model@1: model sha256",
        "train_model consumed what preprocess produced",
        "(10) attestations/model.sig verifies over the model",
        "refused: train: features/features (attested by preprocess): expected sha256:",
        "every step pinned; nothing installed at run time",
    ],
    "02_auditor": [
        "registered: local://breast-cancer-classifier@1",
        "(0) local://breast-cancer-classifier@1: bundle",
        "(14) required attestations present and verified: oms, slsa, vsa",
        "FAIL (PolicyViolation): step secure_ingest: signed with a development key",
        "VERIFIED",
        "FAIL (DigestMismatch): model/model.joblib (attested by train_model): expected sha256:",
        "VERIFICATION FAILED",
        "FAIL (ChainError): step train_model: no link found",
        "(registered bundle): expected sha256:",
    ],
    "03_mlops": [
        "gcpkms://projects/my-ml-project/locations/europe-west4/keyRings/chainproof/cryptoKeys/train-model",
        "unknown backend 'vault'",
        "'kind': 'local-user'",
        "refused: refusing service-account key file",
        "'override': 'allow_service_account_key'",
        "not pinned by digest",
        "the default compute service account is shared",
        "target: loopback test services (CHAINPROOF_PROJECT is not set)",
        "submitted to the LOOPBACK test services: projects/my-ml-project/locations/europe-west4/pipelineJobs/",
        "staged layout matches its pinned digest; no private key in the job",
        "layout derived from the template: secure_ingest -> train_model -> evaluate_robustness -> sign_and_attest"
        " -> verify_chain -> register_model",
        "loopback services stopped",
    ],
}


def _outputs(nb: nbformat.NotebookNode) -> list[str]:
    """The text of every code cell's outputs, one string per cell."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.extend(str(out.data.get(kind, "")) for kind in ("text/plain", "text/html"))
            elif out.output_type == "error":
                parts.append(f"{out.ename}: {out.evalue}")
        cells.append("".join(parts))
    return cells


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nbformat.NotebookNode, Path, BaseException | None]]:
    """Run the three notebooks at once (three kernels, one event loop); return each with its folder and error."""
    import asyncio
    import os

    from ipykernel.kernelspec import install

    # A kernelspec for this interpreter, in a temporary folder (nothing installed for the user).
    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="chainproof-test", display_name="chainproof test", prefix=str(prefix))
    base = {k: v for k, v in os.environ.items() if k not in (
        "CHAINPROOF_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST",
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "CHAINPROOF_VERTEX_ENDPOINT")}
    # No path to the repository: every notebook runs from a temporary folder on the installed package.
    base.update(JUPYTER_PATH=str(prefix / "share" / "jupyter"))
    old_jupyter_path = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = base["JUPYTER_PATH"]  # where nbclient looks the kernelspec up

    runs: dict[str, tuple[nbformat.NotebookNode, Path, BaseException | None]] = {}

    async def run(name: str) -> None:
        tmp = tmp_path_factory.mktemp(f"nb-{name}")
        work, trust = tmp / "work", tmp / "trust"
        work.mkdir()
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        client = NotebookClient(nb, kernel_name="chainproof-test", timeout=CELL_TIMEOUT,
                                resources={"metadata": {"path": str(work)}})
        error: BaseException | None = None
        try:
            # Each kernel gets its own environment: its own trust store, no project.
            await client.async_execute(env={**base, "CHAINPROOF_TRUST_DIR": str(trust)})
        except Exception as exc:  # reported by the test of that notebook, naming the cell
            error = exc
        runs[name] = (nb, work, error)

    async def run_all() -> None:
        await asyncio.gather(*(run(name) for name in NAMES))

    try:
        asyncio.run(run_all())
    finally:
        if old_jupyter_path is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old_jupyter_path
    return runs


@pytest.mark.e2e
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, executed):
    nb, work, error = executed[name]
    if error is not None:
        pytest.fail(f"{name}: {error}")  # CellExecutionError shows the cell and its traceback

    cells = _outputs(nb)
    text = "\n".join(cells)
    assert "Traceback" not in text
    for expected in EXPECTED[name]:
        assert expected in text, f"{name}: {expected!r} not in the outputs"
    if name == "02_auditor":
        # The first verification, from the registry reference, passed; so did the ones after each restore.
        first = next(c for c in cells if "(0) local://" in c)
        assert "OK: local://breast-cancer-classifier@1" in first
        assert text.count("OK: local://breast-cancer-classifier@1") >= 3
        # The owner key went to the kernel's own temporary trust store, not the user's.
        assert list((work.parent / "trust").glob("*.pub"))
    # The notebook worked in its own fresh folder.
    assert any(work.iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {index} has outputs; strip them before committing"
            assert cell.execution_count is None, f"{name}: cell {index} has an execution count"
        assert not cell.get("attachments"), f"{name}: cell {index} has attachments"
    # Only chainproof's public API (03 adds the loopback services of chainproof.testing), never the
    # repository's own files.
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "tests." not in sources and "sys.path" not in sources and "CHAINPROOF_REPO" not in sources


def test_every_notebook_is_tested():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
