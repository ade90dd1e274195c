"""Frame statistics gathered during the correlator's pass: intensity vs time, time-averaged
image, I(q) per static bin, empty and saturated frames."""

from __future__ import annotations

import numpy as np

from .engine import DeferredKernels, use_compiled
from .kernel_interface import FRAME_SUM_TYPES
from .medians import group_medians
from .partitions import Partition

__all__ = ["FrameStatistics", "saturation_level"]


def saturation_level(dtype) -> float | None:
    """Count at which an integer detector saturates (the dtype's maximum); None for floats."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else None


class FrameStatistics:
    """Accumulate per-frame and time-averaged statistics; a consumer of ``stream_frames``.

    On the CPU one compiled pass over each chunk (:func:`speckle.xpcs.kernels.frame_sums`)
    gathers them all, where the frames' dtype has a compiled kernel; the numpy code here is its
    reference.

    Parameters
    ----------
    n_frames : int
    frame_shape : (rows, cols)
    saturation : float, optional
        Counts at or above this value are saturated (default: none checked).
    used : ndarray of bool, (rows, cols), optional
        The pixels that the per-frame values (intensity, saturated pixels) are over; default
        all. The time-averaged image covers every pixel.
    kernels : {"auto", "numba", "numpy"}, optional
        CPU kernels (see :mod:`speckle.xpcs.engine`).

    Attributes
    ----------
    intensity : ndarray, (n_frames,)
        Mean count per used pixel of each frame.
    saturated : ndarray of int, (n_frames,)
        Used pixels at or above ``saturation`` in each frame (0 when none is checked).
    sum_image : ndarray, (rows, cols)
        Sum of every frame.
    """

    def __init__(self, n_frames: int, frame_shape, saturation: float | None = None,
                 used=None, kernels: str | None = None):
        self.intensity = np.zeros(n_frames)
        self.saturated = np.zeros(n_frames, np.int64)
        self.sum_image = np.zeros(frame_shape)
        self.saturation = saturation
        self.n_frames = n_frames
        used = np.ones(frame_shape, bool) if used is None else np.asarray(used, bool)
        self._used = np.ascontiguousarray(used.ravel())
        self._pixels = None if self._used.all() else np.flatnonzero(self._used)
        self._n_used = int(self._used.sum())
        # loaded at the first chunk: a reader thread reads it while numba starts
        self._kernels = DeferredKernels(kernels) if use_compiled(kernels) else None

    def __call__(self, start: int, chunk: np.ndarray) -> None:
        """Add the frames ``chunk`` (n, rows, cols), the first of which is frame ``start``."""
        n = len(chunk)
        flat = chunk.reshape(n, -1)
        acc = None if self._kernels is None else FRAME_SUM_TYPES.get(flat.dtype.name)
        if acc is not None and flat.flags.c_contiguous and flat.dtype.isnative:
            sums, saturated = np.zeros(n, acc), np.zeros(n, np.int64)
            self._kernels.frame_sums(flat, self._used, self.level, np.dtype(acc).type(0), sums,
                                     saturated, self.sum_image.reshape(-1))
            self.add_sums(start, sums, saturated)
            return
        used = flat if self._pixels is None else np.take(flat, self._pixels, axis=1)
        self.intensity[start:start + n] = used.mean(axis=1, dtype=np.float64)
        if self.saturation is not None:
            self.saturated[start:start + n] = (used >= self.saturation).sum(axis=1)
        self.sum_image += chunk.sum(axis=0, dtype=np.float64)

    @property
    def used(self) -> np.ndarray:
        """The pixels the per-frame values are over, flat (rows * cols,) bool."""
        return self._used

    @property
    def level(self) -> float:
        """The count at which a used pixel is saturated (inf when none is checked)."""
        return np.inf if self.saturation is None else float(self.saturation)

    def add_sums(self, start: int, sums: np.ndarray, saturated: np.ndarray) -> None:
        """Take frames ``start ..``'s sums over the used pixels and saturated counts gathered
        elsewhere (the compiled correlator gathers them as it reads the frames: see
        :meth:`speckle.xpcs.multitau.MultiTauCorrelator.gather_statistics`, which adds the
        pixels' sums to :attr:`sum_image` itself)."""
        n = len(sums)
        self.intensity[start:start + n] = sums / self._n_used
        self.saturated[start:start + n] = saturated

    @property
    def mean_image(self) -> np.ndarray:
        """Time-averaged frame, counts per pixel per frame."""
        return self.sum_image / self.n_frames

    def static_intensity(self, partition: Partition) -> np.ndarray:
        """Mean counts per pixel per frame in each static bin, (n_static,); NaN if empty."""
        sel = partition.mask
        s = partition.static_map[sel]
        n = np.bincount(s, minlength=partition.n_static + 1)[1:]
        tot = np.bincount(s, self.mean_image[sel], partition.n_static + 1)[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, tot / np.maximum(n, 1), np.nan)

    def dynamic_intensity(self, partition: Partition) -> np.ndarray:
        """Mean counts per pixel per frame in each dynamic bin, (n_dynamic,)."""
        sel = partition.mask
        d = partition.dynamic_map[sel]
        n = np.bincount(d, minlength=partition.n_dynamic + 1)[1:]
        tot = np.bincount(d, self.mean_image[sel], partition.n_dynamic + 1)[1:]
        return tot / np.maximum(n, 1)


def bad_pixel_mask(mean_image: np.ndarray, partition: Partition, n_frames: int,
                   hot_factor: float = 10.0, dead_expected: float = 20.0):
    """Find dead and hot pixels inside a partition from the time-averaged image.

    Within each static bin the typical level ``m`` is the median mean count of its *live*
    pixels (those with at least one count), so that a bin half covered by the beamstop still
    has the level of its illuminated half. Over ``T`` frames a pixel then expects ``e = m T``
    counts:

    - *dead* (beamstop, gaps, dead pixels): no count at all where ``e >= dead_expected``
      (a Poisson chance below ``exp(-20)``, so no real pixel is lost);
    - *hot* (hot pixels, a bright streak): more than ``hot_factor`` times the typical level and
      more than ``e + 10 sqrt(e) + 20`` counts (a frozen speckle exceeds 10 times its mean with
      probability ``exp(-10)``).

    Pixels are never removed where that would empty a dynamic bin.

    Parameters
    ----------
    mean_image : ndarray, (rows, cols)
        Mean counts per pixel per frame.
    partition : Partition
    n_frames : int
        Frames that went into the mean.
    hot_factor, dead_expected : float

    Returns
    -------
    good : ndarray of bool, (rows, cols)
        False for dead and hot pixels inside the partition.
    counts : dict
        ``{"dead": n, "hot": n}``.
    """
    good = np.ones(partition.shape, bool)
    sel = partition.mask
    s = partition.static_map[sel]
    mean = mean_image[sel]
    total = mean * n_frames
    live = total > 0
    order = np.argsort(s[live], kind="stable")
    live_s, live_mean = s[live][order], mean[live][order]
    bounds = np.searchsorted(live_s, np.arange(1, partition.n_static + 2))
    typical = np.r_[0.0, group_medians(live_mean, bounds)]
    m = typical[s]
    e = m * n_frames
    dead = (total == 0) & (e >= dead_expected)
    hot = (mean > hot_factor * m) & (total > e + 10 * np.sqrt(e) + 20)
    bad = dead | hot
    d = partition.dynamic_map[sel]
    kept = np.bincount(d[~bad], minlength=partition.n_dynamic + 1)[1:]
    emptied = np.flatnonzero(kept == 0) + 1
    if len(emptied):
        bad &= ~np.isin(d, emptied)
    good[sel] = ~bad
    return good, {"dead": int((dead & bad).sum()), "hot": int((hot & bad).sum())}
