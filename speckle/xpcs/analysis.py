"""The XPCS quick check end to end: one call from a dataset and a partition to a verdict.

``analyze`` streams the frames once through the correlator and the frame statistics, builds
the two-time maps, fits every g2 curve and judges the result. The command line and the
dashboards call exactly this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .. import __version__
from ..errors import InvalidInputError
from .alllags import alllags_g2
from .fitting import fit_all, fit_relaxation_rate
from .multitau import multitau_g2
from .partitions import Partition
from .passes import as_dataset, check_partition, frame_weights, stream_frames
from .result import XpcsResult
from .statistics import FrameStatistics, bad_pixel_mask, saturation_level
from .twotime import choose_bin_frames, twotime_maps
from .verdict import Rules, judge

__all__ = ["XpcsOptions", "analyze"]


@dataclass(frozen=True)
class XpcsOptions:
    """Options of an XPCS analysis (all have working defaults).

    Attributes
    ----------
    mode : {"multitau", "alllags"}
        Multi-tau lags, or every lag up to half the series (FFT).
    buffers : int
        Multi-tau lags per level.
    normalize_frames : bool
        Divide each frame by its mean first.
    exclude_frames : tuple of int
        Frames left out.
    twotime : bool
        Compute two-time maps (needed for the stationarity rule).
    twotime_max_size : int
        Largest two-time map side (frames are averaged to fit).
    fit_model : {"single", "stretched", "double"}
    fit_fixed : dict
        Parameters held fixed in the fits, e.g. ``{"baseline": 1.0}``.
    chunk_frames : int or None
        Frames per chunk read from the dataset.
    device : {"auto", "cpu", "gpu"}
    saturation : float or None
        Count at which the detector saturates; default the integer dtype's maximum.
    mask_bad_pixels : bool
        Leave out dead and hot pixels found in the data (see
        :func:`speckle.xpcs.statistics.bad_pixel_mask`).
    """

    mode: str = "multitau"
    buffers: int = 8
    normalize_frames: bool = False
    exclude_frames: tuple = ()
    twotime: bool = True
    twotime_max_size: int = 512
    fit_model: str = "single"
    fit_fixed: dict | None = None
    chunk_frames: int | None = None
    device: str = "auto"
    saturation: float | None = None
    mask_bad_pixels: bool = True

    def __post_init__(self):
        choices = {"mode": ("multitau", "alllags"), "fit_model": ("single", "stretched", "double"),
                   "device": ("auto", "cpu", "gpu")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}, "
                                        f"not {getattr(self, name)!r}")
        if int(self.buffers) < 2 or int(self.twotime_max_size) < 2:
            raise InvalidInputError("buffers and twotime_max_size must be at least 2")


def analyze(data, partition: Partition, options: XpcsOptions | None = None, *,
            rules: Rules | None = None, progress: Callable | None = None,
            cancel: Callable | None = None) -> XpcsResult:
    """Analyse an XPCS series: g2, two-time, fits and the quality verdict.

    Parameters
    ----------
    data : Dataset or ndarray
        Frames; the dataset's metadata (frame time...) goes into the result.
    partition : Partition
    options : XpcsOptions, optional
    rules : Rules, optional
        Verdict thresholds.
    progress : callable, optional
        ``progress(fraction, stage)`` with fraction in [0, 1] and a short stage name.
    cancel : callable, optional
        Polled between chunks; returning True stops with ``speckle.errors.Cancelled``.

    Returns
    -------
    XpcsResult
    """
    opts = options or XpcsOptions()
    ds = as_dataset(data)
    check_partition(partition, ds)
    t0 = time.perf_counter()
    report = progress or (lambda fraction, stage: None)
    weights = frame_weights(ds.n_frames, list(opts.exclude_frames) or None)
    saturation = opts.saturation if opts.saturation is not None else saturation_level(ds.dtype)
    stats = FrameStatistics(ds.n_frames, ds.frame_shape, saturation, used=partition.mask)
    pixels = np.flatnonzero(partition.mask.ravel())
    share = 0.6 if opts.twotime else 0.9

    exclude = list(opts.exclude_frames) or None
    on_progress = lambda done, total: report(share * done / total, "correlating")  # noqa: E731
    n_used = int((weights > 0).sum())
    masked = {"good": None, "dead": 0, "hot": 0}

    def keep_pixels():
        if opts.mask_bad_pixels:
            masked["good"], counts = bad_pixel_mask(stats.mean_image, partition, n_used)
            masked.update(counts)
        return masked["good"] if masked["good"] is not None else partition.mask

    if opts.mode == "multitau":
        g2 = multitau_g2(ds, partition, buffers=opts.buffers, chunk_frames=opts.chunk_frames,
                         exclude_frames=exclude, normalize_frames=opts.normalize_frames,
                         device=opts.device, progress=on_progress, cancel=cancel,
                         consumers=(stats,), keep_pixels=keep_pixels)
        partition = _masked(partition, masked["good"])
    else:
        for _ in stream_frames(ds, pixels, weights, chunk_frames=opts.chunk_frames,
                               consumers=(stats,), cancel=cancel, rows=True):
            pass
        partition = _masked(partition, keep_pixels())
        g2 = alllags_g2(ds, partition, exclude_frames=exclude,
                        normalize_frames=opts.normalize_frames, device=opts.device,
                        cancel=cancel, progress=on_progress)

    twotime, bin_frames = {}, 1
    if opts.twotime:
        bin_frames = choose_bin_frames(ds.n_frames, opts.twotime_max_size)
        if ds.n_frames // bin_frames >= 2:
            twotime = twotime_maps(
                ds, partition, bin_frames=bin_frames, chunk_frames=opts.chunk_frames,
                device=opts.device, cancel=cancel,
                progress=lambda done, total: report(0.6 + 0.3 * done / total, "two-time"))
    report(0.92, "fitting")
    md = ds.metadata
    frame_time = md.frame_time or 1.0
    fits = fit_all(g2.tau_frames * frame_time, g2.g2, g2.g2_err, opts.fit_model,
                   fixed=opts.fit_fixed)
    parameters = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()}
    parameters.update(source=str(ds.source), format=ds.format, n_frames=ds.n_frames,
                      frame_shape=list(ds.frame_shape), speckle_version=__version__,
                      frame_time_assumed=md.frame_time is None,
                      twotime_bin_frames=bin_frames,
                      masked_pixels={"dead": masked["dead"], "hot": masked["hot"]},
                      elapsed_s=round(time.perf_counter() - t0, 3))
    result = XpcsResult(g2=g2, partition=partition, metadata=md,
                        intensity_vs_time=stats.intensity, mean_image=stats.mean_image,
                        static_intensity=stats.static_intensity(partition), twotime=twotime,
                        twotime_bin_frames=bin_frames, fits=fits, parameters=parameters)
    result.relaxation = _relaxation(partition, fits)
    result.verdict = judge(result, rules, weights=weights,
                           saturated=stats.saturated if saturation is not None else None)
    report(1.0, "done")
    return result


def _relaxation(partition: Partition, fits):
    """Γ(q) power law over the q-bins with a successful fit, or None."""
    q = np.asarray(partition.dynamic_q, float)
    ok = [i for i, f in enumerate(fits)
          if f is not None and f.success and np.isfinite(q[i]) and q[i] > 0]
    if len(ok) < 3:
        return None
    tau = [fits[i].params["tau"] for i in ok]
    err = [fits[i].errors.get("tau", np.nan) for i in ok]
    return fit_relaxation_rate(q[ok], tau, err if np.all(np.isfinite(err)) else None)


def _masked(partition: Partition, good) -> Partition:
    """The partition without the pixels ``good`` rejects (the same one when none is)."""
    if good is None or good[partition.mask].all():
        return partition
    return partition.with_mask(good)
