"""Shared fixtures: where the shared reference data lives, and a scratch folder."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference datasets in ``../shared/data`` (present in CI and for developers)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared reference data is missing: expected {SHARED_DATA}")
    return SHARED_DATA
