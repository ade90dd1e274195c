"""The beamtime monitor's analyses on a real Slurm cluster: dask-jobqueue's SLURMCluster submits
the Dask workers as Slurm jobs to the single-node cluster the suite starts
(tests/hub/slurm_cluster.py), and the results equal those of one process.

Needs root (the Slurm daemons): skipped otherwise; missing Slurm packages fail the test
(`make setup-test` installs them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hubtools import IS_ROOT
from slurm_cluster import SlurmCluster, missing_programs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor_helpers import config, write_stack  # noqa: E402
from speckle.monitor import Monitor  # noqa: E402
from speckle.monitor.index import read_index  # noqa: E402


@pytest.fixture(scope="module")
def slurm():
    if not IS_ROOT:
        pytest.skip("needs root: the Slurm daemons")
    missing = missing_programs()
    if missing:
        pytest.fail(f"Slurm is not installed ({', '.join(missing)}): run `make setup-test`")
    cluster = SlurmCluster(partition="monitor")
    try:
        cluster.start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(cluster.conf))  # sbatch, squeue, scancel find it
            yield cluster
    finally:
        cluster.stop()


def test_analyses_on_slurm_workers_equal_one_process(slurm, tmp_path):
    data = tmp_path / "beamline"
    data.mkdir()
    for i in range(3):
        write_stack(data / f"scan_{i}.h5", seed=30 + i, n=160)
    Monitor(config(data, tmp_path / "one")).run_once(timeout=120)
    cluster = {"type": "slurm", "queue": "monitor", "workers": 1, "cores": 1, "memory": "2GB",
               "walltime": "00:10:00", "interface": "lo"}
    lines = []
    Monitor(config(data, tmp_path / "slurm", cluster=cluster), report=lines.append).run_once(timeout=240)
    entries = read_index(tmp_path / "slurm" / "index.jsonl")
    assert len(entries) == 3 and all("error" not in e for e in entries), entries
    for i in range(3):
        rel = Path("beamline") / f"scan_{i}_h5" / "result.h5"
        with h5py.File(tmp_path / "one" / rel) as a, h5py.File(tmp_path / "slurm" / rel) as b:
            assert np.array_equal(a["xpcs/multitau/normalized_g2"][()],
                                  b["xpcs/multitau/normalized_g2"][()])
    # the work really ran in a Slurm job (and the one-process run did not)
    import json

    for root, in_slurm in (("slurm", True), ("one", False)):
        summary = json.loads((tmp_path / root / "beamline" / "scan_0_h5" / "summary.json").read_text())
        assert bool(summary["ran_on"]["slurm_job"]) is in_slurm, summary["ran_on"]
