"""Frames that do not belong to the run: intensity spikes, detector glitches, beam losses.

Each frame's intensity (mean count per used pixel) is compared with the running median of its
neighbours (``2 half_window + 1`` frames, mirrored at the ends), which follows drifts, steps
and slow speckle fluctuations but not a burst of up to ``half_window`` frames. A frame is an
outlier when it departs from that median by more than ``sigma`` times the noise *and* by more
than ``relative`` of the median. The noise is the photon noise of the frame's counts, or the
typical frame-to-frame scatter of the run when larger (the robust median absolute deviation of
the departures, so that the outliers themselves do not inflate it); 10 counts are added so that
a run of a few counts per frame is not judged on Poisson tails. Frames below ``dump_fraction``
of the run's median intensity (and below it by more than its photon noise allows) are beam
losses however long they last. Frames with no count at
all are left to the verdict's ``empty_frames`` rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .medians import median

__all__ = ["OutlierFrames", "format_frames", "outlier_frames", "running_median"]


@dataclass
class OutlierFrames:
    """Outlier frames of a run (0-based frame numbers, ascending).

    Attributes
    ----------
    spikes : list of int
        Frames well above their neighbours (a flash, a glitch, a bright streak).
    drops : list of int
        Frames well below their neighbours or below ``dump_fraction`` of the run (beam loss,
        beam dump, a partly read frame).
    departure : dict of int to float
        Relative departure of each outlier from its neighbours' median (+0.35: 35 % above).
    """

    spikes: list[int] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)
    departure: dict[int, float] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        """Every outlier frame, ascending."""
        return sorted(self.spikes + self.drops)


def outlier_frames(intensity, n_pixels: int, weights=None, *, sigma: float = 8.0,
                   relative: float = 0.1, dump_fraction: float = 0.5,
                   half_window: int = 5) -> OutlierFrames:
    """Find the outlier frames of a run (see the module docstring).

    Parameters
    ----------
    intensity : ndarray, (n_frames,)
        Mean count per used pixel of each frame.
    n_pixels : int
        Pixels the mean is over (for the photon noise).
    weights : ndarray, (n_frames,), optional
        0 for frames already excluded (not judged).
    sigma, relative, dump_fraction : float
    half_window : int

    Returns
    -------
    OutlierFrames
    """
    y_all = np.asarray(intensity, float)
    keep = np.isfinite(y_all) & (y_all > 0)
    if weights is not None:
        keep &= np.asarray(weights) > 0
    frames = np.flatnonzero(keep)
    y = y_all[keep]
    out = OutlierFrames()
    k = min(half_window, (len(y) - 1) // 2)
    if k < 2:
        return out
    local = running_median(y, k)
    resid = y - local
    photon = np.sqrt(np.maximum(local, 0) / max(n_pixels, 1))
    scatter = 1.4826 * median(np.abs(resid - median(resid)))
    noise = np.maximum(photon, scatter)
    odd = (np.abs(resid) > sigma * noise + 10.0 / max(n_pixels, 1)) & (
        np.abs(resid) > relative * local)
    level = median(y)
    dump = (y < dump_fraction * level) & (
        level - y > sigma * np.sqrt(level / max(n_pixels, 1)) + 10.0 / max(n_pixels, 1))
    for i in np.flatnonzero(odd | dump):
        f = int(frames[i])
        (out.spikes if resid[i] > 0 and not dump[i] else out.drops).append(f)
        ref = level if dump[i] else local[i]
        out.departure[f] = float(y[i] / ref - 1)
    return out


def running_median(y: np.ndarray, half_window: int) -> np.ndarray:
    """Median of each ``2 half_window + 1`` consecutive values, mirrored at the ends.

    The series is extended by reflection about its first and last values (``c b | a b c``:
    scipy.ndimage's ``mode="mirror"``), so every value has a full window.

    Parameters
    ----------
    y : ndarray, (n,)
        Finite values; ``n > half_window``.
    half_window : int
        At least 0.

    Returns
    -------
    ndarray, (n,)
    """
    size = 2 * half_window + 1
    padded = np.pad(np.asarray(y, float), half_window, mode="reflect")
    return median(np.lib.stride_tricks.sliding_window_view(padded, size), axis=1)


def format_frames(frames) -> str:
    """Frames as the command line's ``--exclude-frames`` reads them: ``"3,10,100-129"``."""
    frames = sorted({int(f) for f in frames})
    parts, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            parts.append(str(f) if f == start else f"{start}-{f}")
            start = None
    return ",".join(parts)
