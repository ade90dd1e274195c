"""Shared fixtures: where the shared reference data lives, and a scratch HOME for dashboards."""

import os
from pathlib import Path

# memory that the pool hands out again reads as 0xFF bytes (NaN) where code asks for memory it
# writes before reading: a read of what was never written shows in the results (see
# speckle.memory); set before speckle is imported, inherited by the hub's and kernels' processes
os.environ.setdefault("SPECKLE_MEMORY_POISON", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference datasets in ``../shared/data`` (present in CI and for developers)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared reference data is missing: expected {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A scratch HOME for the dashboards: results go to ~/speckle-results; no hub variables
    but the service prefix (``/user/ana/``), so download links are the server's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("SPECKLE_RESULTS_DIR", "SPECKLE_SERVER_ROOT", "SPECKLE_BASE_URL",
                 "SPECKLE_DATA_DIRS", "SPECKLE_GPU_NAME", "SPECKLE_MONITOR_URL",
                 "SPECKLE_MONITOR_RESULTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ana/")
    return tmp_path
