"""Frame statistics gathered during the correlator's pass: intensity vs time, time-averaged
image, I(q) per static bin, empty and saturated frames."""

from __future__ import annotations

import numpy as np

from .partitions import Partition

__all__ = ["FrameStatistics", "saturation_level"]


def saturation_level(dtype) -> float | None:
    """Count at which an integer detector saturates (the dtype's maximum); None for floats."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else None


class FrameStatistics:
    """Accumulate per-frame and time-averaged statistics; a consumer of ``stream_frames``.

    Parameters
    ----------
    n_frames : int
    frame_shape : (rows, cols)
    saturation : float, optional
        Counts at or above this value are saturated (default: none checked).
    """

    def __init__(self, n_frames: int, frame_shape, saturation: float | None = None):
        self.intensity = np.zeros(n_frames)
        self.saturated = np.zeros(n_frames, np.int64)
        self.frame_max = np.zeros(n_frames)
        self.sum_image = np.zeros(frame_shape)
        self.saturation = saturation
        self.n_frames = n_frames

    def __call__(self, start, chunk, flat, means):
        n = len(chunk)
        self.intensity[start:start + n] = means
        self.frame_max[start:start + n] = flat.max(axis=1)
        if self.saturation is not None:
            self.saturated[start:start + n] = (flat >= self.saturation).sum(axis=1)
        self.sum_image += chunk.sum(axis=0, dtype=np.float64)

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
