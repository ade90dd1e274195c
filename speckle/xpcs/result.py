"""What an XPCS analysis returns: arrays, units and the parameters that made them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.dataset import Metadata
from .partitions import Partition

__all__ = ["MultiTauG2", "XpcsResult"]


@dataclass
class MultiTauG2:
    """Normalised g2 per dynamic bin.

    Attributes
    ----------
    tau_frames : ndarray of int, (n_tau,)
        Lags in frames (multiply by the frame time for seconds).
    g2 : ndarray of float, (n_tau, n_dynamic)
    g2_err : ndarray of float, (n_tau, n_dynamic)
        Standard error of g2 (APS definition: std over the bin's pixels of the per-pixel g2,
        divided by the square root of the number of pixels).
    n_pairs : ndarray of int, (n_tau,)
        Number of frame pairs that entered each lag (after excluded frames).
    """

    tau_frames: np.ndarray
    g2: np.ndarray
    g2_err: np.ndarray
    n_pairs: np.ndarray


@dataclass
class XpcsResult:
    """Everything one XPCS analysis produced.

    Attributes
    ----------
    g2 : MultiTauG2
        The correlation functions (multi-tau or all-lags).
    partition : Partition
        The bins the analysis used.
    metadata : Metadata
        Acquisition metadata (frame time in seconds, etc.).
    intensity_vs_time : ndarray, (n_frames,)
        Mean count per used pixel in each frame.
    mean_image : ndarray, (rows, cols)
        Time-averaged frame (all pixels, masked or not).
    static_intensity : ndarray, (n_static,)
        Mean count per pixel per frame in each static bin: I(q).
    twotime : dict of int to ndarray
        Two-time correlation map C(t1, t2) per dynamic bin (1-based key), in frames.
    twotime_bin_frames : int
        Number of raw frames averaged into one two-time step.
    fits : list
        One :class:`speckle.xpcs.fitting.FitResult` (or None) per dynamic bin.
    verdict : object or None
        :class:`speckle.xpcs.verdict.Verdict`.
    relaxation : object or None
        :class:`speckle.xpcs.fitting.PowerLawFit` of Γ(q) = 1/τ(q) over the q-bins whose fits
        succeeded (None for regions without q, or fewer than three fitted bins).
    parameters : dict
        The options that made this result (buffers, normalisation, excluded frames, source...).
    """

    g2: MultiTauG2
    partition: Partition
    metadata: Metadata
    intensity_vs_time: np.ndarray
    mean_image: np.ndarray
    static_intensity: np.ndarray
    twotime: dict = field(default_factory=dict)
    twotime_bin_frames: int = 1
    fits: list = field(default_factory=list)
    verdict: object | None = None
    relaxation: object | None = None
    parameters: dict = field(default_factory=dict)

    @property
    def frame_time(self) -> float:
        """Frame time in seconds (1.0 with a ``frame_time_assumed`` parameter when unknown)."""
        return float(self.metadata.frame_time or 1.0)

    @property
    def tau_seconds(self) -> np.ndarray:
        """Lags in seconds."""
        return self.g2.tau_frames * self.frame_time
