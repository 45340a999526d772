"""Every notebook runs top to bottom (short settings), and its committed copy holds the outputs it shows."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
nbformat = pytest.importorskip("nbformat")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_holds_its_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code), f"{path.name}: run it and commit it with its outputs"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with an error output"
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    machine_paths = [p for p in (str(REPO_ROOT), "site-packages") if p in text]
    assert not machine_paths, f"{path.name} shows paths of the machine it ran on: {machine_paths}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch, request):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if nb.metadata.get("octzoo", {}).get("needs_real_data"):  # reads the CIFAR-10 JPEG copy
        monkeypatch.setenv("OCTZOO_REAL_DATA", str(request.getfixturevalue("real_data")))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    monkeypatch.setenv("OCTZOO_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("OCTZOO_NOTEBOOK_OUT", str(tmp_path))  # where a notebook writes files
    monkeypatch.setenv("WANDB_MODE", "offline")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    assert all(c.outputs for c in nb.cells if c.cell_type == "code")
