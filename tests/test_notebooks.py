"""Every example notebook and dashboard runs top to bottom in a fresh kernel without an error.

The kernel is this interpreter's (its folder goes first on PATH, as the ``python3`` kernelspec
runs ``python``), with HOME in a scratch folder so that results land there.
"""

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("examples/*.ipynb")) + sorted(
    (ROOT / "notebooks").glob("dashboards/*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_the_expected_notebooks_exist():
    names = {p.relative_to(ROOT / "notebooks").as_posix() for p in NOTEBOOKS}
    assert {"examples/01_reading_data.ipynb", "examples/02_xpcs_end_to_end.ipynb",
            "examples/03_using_the_gpu.ipynb", "dashboards/xpcs_quick_check.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_runs(path, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    monkeypatch.delenv("SPECKLE_RESULTS_DIR", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: commit notebooks without outputs"
    client = NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            if out["output_type"] == "stream" and out["name"] == "stderr":
                assert "Traceback" not in out["text"] and "Error" not in out["text"], out["text"]
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    if "dashboards" in path.parts:
        assert any(WIDGET_VIEW in o.get("data", {}) for o in outputs), "no widget displayed"
    if "examples" in path.parts and path.name != "03_using_the_gpu.ipynb":
        assert any("image/png" in o.get("data", {}) for o in outputs), "no figure shown"
    if path.name == "02_xpcs_end_to_end.ipynb":
        written = home / "speckle-results" / "example-02"
        assert {"result.h5", "g2.csv", "fits.csv", "g2.png"} <= {p.name for p in written.iterdir()}
    if path.name == "03_using_the_gpu.ipynb":
        text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
        assert "computing on:" in text and ("CPU" in text or "GPU" in text)
