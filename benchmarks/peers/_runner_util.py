"""Helpers shared by the benchmark runners (pure numpy + h5py: imported in both venvs).

The runners read a frames file (``.npy``, memory-mapped) and an APS q-map (``.h5`` with
``/qmap/dynamic_roi_map``, ``/qmap/static_roi_map``, ``/qmap/mask``; bins are 1-based, 0 unused)
and write ``OUT.json`` (timings, memory, options) plus ``OUT.npz`` (arrays).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

__all__ = ["FrameReader", "H5Reader", "Timer", "open_frames", "load_frames", "machine_info", "peak_rss_mib",
           "current_rss_mib", "read_aps_qmap",
           "ring_qmap", "write_aps_qmap", "write_result"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (``getrusage``: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    """Current resident memory, MiB (psutil when available, else /proc/self/statm)."""
    try:
        import psutil  # noqa: PLC0415
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Timer:
    """Accumulating wall-clock timer: ``with t: ...`` adds the elapsed seconds to ``t.total``."""

    def __init__(self):
        self.total = 0.0
        self._t0 = None

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.total += time.perf_counter() - self._t0


def load_frames(path) -> np.ndarray:
    """Memory-map a ``.npy`` stack of frames (n, rows, cols)."""
    frames = np.load(path, mmap_mode="r")
    if frames.ndim != 3:
        raise ValueError(f"{path}: expected (n, rows, cols) frames, got shape {frames.shape}")
    return frames


def read_aps_qmap(path) -> dict:
    """Read the three maps of an APS q-map file as int32 / bool arrays."""
    import h5py  # noqa: PLC0415
    with h5py.File(path, "r") as f:
        out = {
            "dynamic_map": np.asarray(f["/qmap/dynamic_roi_map"][()], np.int32),
            "static_map": np.asarray(f["/qmap/static_roi_map"][()], np.int32),
            "mask": np.asarray(f["/qmap/mask"][()]).astype(bool),
        }
        for key in ("dynamic_q", "static_q"):
            if f"/qmap/{key}" in f:
                out[key] = np.asarray(f[f"/qmap/{key}"][()], float)
    return out


def ring_qmap(shape, n_dynamic, n_static_per_dynamic, r_min=0.0, r_max=None, center=None):
    """Concentric rings: ``n_dynamic`` equal-width rings, each cut into finer static rings.

    Parameters
    ----------
    shape : (rows, cols)
    n_dynamic, n_static_per_dynamic : int
    r_min : float
        Pixels closer to the centre than this are unused (a beam stop), pixels.
    r_max : float, optional
        Outer radius; default: the distance to the farthest corner (whole detector used).
    center : (row, col), optional
        Default: the middle of the detector.

    Returns
    -------
    dict
        ``dynamic_map``, ``static_map`` (int32, 1-based, 0 unused), ``mask`` (bool),
        ``radius`` (float, pixels), ``dynamic_r`` / ``static_r`` (ring centres, pixels).
    """
    rows, cols = shape
    if center is None:
        center = ((rows - 1) / 2.0, cols / 2.0 - 0.25)  # slightly off-centre: no exact ties
    rr, cc = np.mgrid[0:rows, 0:cols]
    radius = np.hypot(rr - center[0], cc - center[1])
    if r_max is None:
        r_max = float(radius.max()) * (1 + 1e-9)
    n_static = n_dynamic * n_static_per_dynamic
    edges = np.linspace(r_min, r_max, n_static + 1)
    used = (radius >= r_min) & (radius < r_max)
    sbin = np.clip(np.searchsorted(edges, radius, side="right"), 1, n_static)
    static_map = np.where(used, sbin, 0).astype(np.int32)
    dynamic_map = np.where(used, (sbin - 1) // n_static_per_dynamic + 1, 0).astype(np.int32)
    static_r = 0.5 * (edges[:-1] + edges[1:])
    dyn_edges = edges[::n_static_per_dynamic]
    dynamic_r = 0.5 * (dyn_edges[:-1] + dyn_edges[1:])
    return {"dynamic_map": dynamic_map, "static_map": static_map, "mask": used,
            "radius": radius, "dynamic_r": dynamic_r, "static_r": static_r}


def write_aps_qmap(path, dynamic_map, static_map, mask, dynamic_q=None, static_q=None):
    """Write the maps in the APS layout that boost_corr's ``XpcsQPartitionMap`` reads."""
    import h5py  # noqa: PLC0415
    with h5py.File(path, "w") as f:
        g = f.create_group("qmap")
        g["dynamic_roi_map"] = np.asarray(dynamic_map, np.uint32)
        g["static_roi_map"] = np.asarray(static_map, np.uint32)
        g["mask"] = np.asarray(mask, np.int32)
        if dynamic_q is not None:
            g["dynamic_q"] = np.asarray(dynamic_q, float)
            g["dynamic_v_list_dim0"] = np.asarray(dynamic_q, float)
        if static_q is not None:
            g["static_q"] = np.asarray(static_q, float)
            g["static_v_list_dim0"] = np.asarray(static_q, float)


def write_result(out, info: dict, arrays: dict) -> None:
    """Write ``OUT.json`` (info + host/process facts) and ``OUT.npz`` (arrays)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = dict(info)
    info.setdefault("python", platform.python_version())
    info.setdefault("numpy", np.__version__)
    info["peak_rss_mib"] = round(peak_rss_mib(), 1)
    np.savez(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(info, indent=2, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class FrameReader:
    """Read frames ``a:b`` of a memory-mapped ``.npy`` as an in-memory copy.

    After each copy the mapped pages of the frames read are released from this process
    (``madvise(MADV_DONTNEED)``; the kernel's page cache keeps them), so the peak resident memory
    an engine reports is its own working memory, not the part of the file it has read: every
    engine reads the same file the same way.
    """

    def __init__(self, path):
        self.frames = load_frames(path)
        self.shape = self.frames.shape
        self.dtype = self.frames.dtype
        self.frame_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._mm = getattr(self.frames, "_mmap", None)
        offset = int(getattr(self.frames, "offset", 0))
        import mmap  # noqa: PLC0415
        self._base = offset % mmap.ALLOCATIONGRANULARITY  # where frame 0 starts in the mapping
        self._page = mmap.PAGESIZE
        self._dontneed = getattr(mmap, "MADV_DONTNEED", None)

    def __len__(self):
        return int(self.shape[0])

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.array(self.frames[a:b])
        self.release(a, b)
        return out

    def release(self, a: int, b: int) -> None:
        if self._mm is None or self._dontneed is None or b <= a:
            return
        lo = self._base + a * self.frame_bytes
        hi = self._base + b * self.frame_bytes
        lo -= lo % self._page
        hi = min(hi + (-hi) % self._page, len(self._mm))
        if hi > lo:
            self._mm.madvise(self._dontneed, lo, hi - lo)


class H5Reader:
    """Read frames ``a:b`` of ``/entry/data/data`` in an HDF5 file with h5py (hdf5plugin's
    filters), as boost_corr's own HDF reader does: the same interface as :class:`FrameReader`."""

    def __init__(self, path, dataset="/entry/data/data"):
        import h5py  # noqa: PLC0415
        import hdf5plugin  # noqa: F401,PLC0415 - registers the detector filters

        self._file = h5py.File(path, "r")
        self.frames = self._file[dataset]
        self.shape = self.frames.shape
        self.dtype = self.frames.dtype

    def __len__(self):
        return int(self.shape[0])

    def read(self, a: int, b: int) -> np.ndarray:
        return self.frames[a:b]

    def release(self, a: int, b: int) -> None:
        """Nothing mapped: nothing to release."""


def open_frames(path):
    """A reader of the frames in ``path``: an HDF5 file (``.h5``/``.hdf5``) or a ``.npy``."""
    if Path(path).suffix in (".h5", ".hdf5", ".hdf"):
        return H5Reader(path)
    return FrameReader(path)


def machine_info() -> dict:
    """CPU model, cores and memory of this host (from /proc)."""
    info = {"hostname": platform.node(), "platform": platform.platform(),
            "cpu_count": os.cpu_count()}
    try:
        info["cpus_allowed"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return info
