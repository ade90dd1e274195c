"""Real files for the monitor's tests: simulated XPCS stacks written whole, slowly, or broken,
and a monitor running in the background while a test writes them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np

from speckle.monitor import Monitor, MonitorConfig
from speckle.monitor.index import read_index
from speckle.xpcs.simulate import ou_speckle

#: A small series: quick to analyse, with a known correlation time.
FRAMES, SHAPE, TAU_FRAMES, BETA = 240, (32, 32), 6.0, 0.25
#: What the tests' template says: the whole detector, 1 ms frames, no two-time (quicker).
TEMPLATE = {"kind": "xpcs",
            "xpcs": {"partition": {"kind": "whole"}, "metadata": {"frame_time": "1ms"},
                     "options": {"twotime": False}}}


def frames(seed: int = 0, n: int = FRAMES) -> np.ndarray:
    """Simulated speckle, uint16, with g2 = 1 + BETA exp(-2 t / TAU_FRAMES)."""
    ds = ou_speckle(n, SHAPE, TAU_FRAMES, beta=BETA, mean_counts=4.0, seed=seed)
    return np.asarray(ds.read_frames(0, n))


def write_stack(path: Path, seed: int = 0, n: int = FRAMES) -> Path:
    """A complete NeXus-style HDF5 stack (``/entry/data/data``), written under a hidden name
    and renamed into place, as a careful detector does."""
    tmp = path.with_name(f".{path.name}.part")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("entry/data/data", data=frames(seed, n), chunks=(16, *SHAPE))
    os.replace(tmp, path)
    return path


SLOW_WRITER = textwrap.dedent("""
    import sys, time, h5py, numpy as np
    path, seed, n, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    from speckle.xpcs.simulate import ou_speckle
    data = np.asarray(ou_speckle(n, (32, 32), 6.0, beta=0.25, mean_counts=4.0, seed=seed).read_frames(0, n))
    with h5py.File(path, "w") as f:
        d = f.create_dataset("entry/data/data", shape=(0, 32, 32), maxshape=(None, 32, 32),
                             chunks=(16, 32, 32), dtype=data.dtype)
        for start in range(0, n, 16):
            d.resize(min(start + 16, n), axis=0)
            d[start:start + 16] = data[start:start + 16]
            f.flush()
            time.sleep(pause)
    print(time.time(), flush=True)
""")


def start_slow_writer(path: Path, seed: int = 0, n: int = FRAMES, pause: float = 0.3):
    """A process that appends frames to an open HDF5 file in blocks of 16, flushing after each
    and pausing ``pause`` s; it prints the time it closed the file and exits."""
    return subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(path), str(seed), str(n),
                             str(pause)], stdout=subprocess.PIPE, text=True)


def config(data: Path, results: Path, **kw) -> MonitorConfig:
    """A monitor configuration for tests: quick settling, the tests' template, no Dask."""
    values = {"folders": [str(data)], "results": str(results), "template": TEMPLATE,
              "settle_seconds": 1.0, "give_up_seconds": 3.0, "rescan_seconds": 30.0,
              "cluster": {"type": "process"}}
    values.update(kw)
    return MonitorConfig.from_dict(values)


@contextlib.contextmanager
def running(cfg: MonitorConfig, **kw):
    """A monitor watching in the background; yields it with a list of its printed lines."""
    lines: list[str] = []
    monitor = Monitor(cfg, report=lines.append, **kw)
    monitor.start()
    try:
        yield monitor, lines
    finally:
        monitor.stop()


def wait_for_index(results: Path, n: int, timeout: float = 60.0) -> list[dict]:
    """Wait until ``results/index.jsonl`` has at least ``n`` entries; return them."""
    end = time.monotonic() + timeout
    entries: list[dict] = []
    while time.monotonic() < end:
        entries = read_index(results / "index.jsonl")
        if len(entries) >= n:
            return entries
        time.sleep(0.1)
    raise AssertionError(f"{len(entries)} index entries after {timeout} s, expected {n}: {entries}")
