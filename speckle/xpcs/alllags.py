"""g2 at every lag up to half the series, by FFT (the original ALS server's mode).

Same per-pixel definitions and normalisation as the multi-tau correlator (see
:mod:`speckle.xpcs.multitau`), evaluated at lags ``1 .. n_frames // 2`` without binning. With
frame weights ``w`` (0 for excluded frames) and ``I' = w I``::

    G_k  = sum_j I'_j I'_{j+k},   IP_k = sum_j I'_j w_{j+k},   IF_k = sum_j w_j I'_{j+k},
    N_k  = sum_j w_j w_{j+k}

are correlations, computed with zero-padded FFTs along time. The used pixels' whole time series
is needed, so the data are processed in blocks of pixels held in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..backend import array_module, asnumpy, get_xp
from ..errors import AnalysisError, Cancelled
from .multitau import normalize_symmetric
from .passes import as_dataset, check_partition, frame_weights
from .partitions import Partition
from .result import MultiTauG2

__all__ = ["alllags_g2", "correlate_fft"]


def _fft_size(n: int) -> int:
    """Power of two of at least ``2 n``: the zero padding that makes the correlation linear."""
    return 1 << int(np.ceil(np.log2(2 * n)))


def correlate_fft(a, b, max_lag: int):
    """``c[k] = sum_j a[j] b[j + k]`` along axis 0 for ``k = 1..max_lag`` (FFT, zero padded).

    Parameters
    ----------
    a, b : array, (T, ...) or (T,)
        Real series of the same shape, numpy or cupy.
    max_lag : int

    Returns
    -------
    array, (max_lag, ...)
    """
    xp = array_module(a)
    size = _fft_size(a.shape[0])
    fa = xp.fft.rfft(a, size, axis=0)
    fb = fa if b is a else xp.fft.rfft(b, size, axis=0)
    return xp.fft.irfft(xp.conj(fa) * fb, size, axis=0)[1:max_lag + 1]


def alllags_g2(data, partition: Partition, *, max_lag: int | None = None,
               exclude_frames=None, normalize_frames: bool = False,
               pixel_block: int = 4096, device: str = "auto",
               progress: Callable | None = None,
               cancel: Callable | None = None) -> MultiTauG2:
    """g2 at every lag ``1..max_lag`` frames (default half the series).

    Parameters
    ----------
    data : Dataset or ndarray
    partition : Partition
    max_lag : int, optional
    exclude_frames, normalize_frames, device, progress, cancel
        As in :func:`speckle.xpcs.multitau.multitau_g2`.
    pixel_block : int
        Pixels transformed at once (bounds the FFT's memory).

    Returns
    -------
    MultiTauG2
        With ``tau_frames = 1..max_lag``.
    """
    ds = as_dataset(data)
    xp = get_xp(device)
    check_partition(partition, ds)
    T = ds.n_frames
    max_lag = T // 2 if max_lag is None else int(max_lag)
    if not 1 <= max_lag < T:
        raise AnalysisError(f"the largest lag must be between 1 and {T - 1} frames, got {max_lag}")
    w = frame_weights(T, exclude_frames)
    pixels = np.flatnonzero(partition.mask.ravel())
    series = np.empty((T, len(pixels)), np.float32)
    for start, chunk in ds.iter_chunks(prefetch=True, reuse=True):
        if cancel is not None and cancel():
            raise Cancelled("the analysis was cancelled")
        series[start:start + len(chunk)] = np.take(chunk.reshape(len(chunk), -1), pixels, axis=1)
    if normalize_frames:
        means = series.mean(axis=1, dtype=np.float64)
        w[means <= 0] = 0
        series *= np.where(means > 0, 1 / np.where(means > 0, means, 1), 0)[:, None].astype(
            np.float32)
    series *= w[:, None]
    wd = xp.asarray(w.astype(np.float64))
    n_pairs = np.rint(asnumpy(correlate_fft(wd, wd, max_lag))).astype(np.int64)
    if (n_pairs == 0).any():
        raise AnalysisError("some lags have no pair of usable frames: exclude fewer frames")
    G = np.empty((max_lag, len(pixels)))
    IP = np.empty_like(G)
    IF = np.empty_like(G)
    size = _fft_size(T)
    fw = xp.fft.rfft(wd, size)[:, None]
    for p0 in range(0, len(pixels), pixel_block):
        if cancel is not None and cancel():
            raise Cancelled("the analysis was cancelled")
        cols = slice(p0, p0 + pixel_block)
        fx = xp.fft.rfft(xp.asarray(series[:, cols], dtype=np.float64), size, axis=0)
        cfx = xp.conj(fx)
        lags = slice(1, max_lag + 1)
        G[:, cols] = asnumpy(xp.fft.irfft(cfx * fx, size, axis=0)[lags])
        IP[:, cols] = asnumpy(xp.fft.irfft(cfx * fw, size, axis=0)[lags])
        IF[:, cols] = asnumpy(xp.fft.irfft(xp.conj(fw) * fx, size, axis=0)[lags])
        if progress is not None:
            progress(min(p0 + pixel_block, len(pixels)), len(pixels))
    g2, err = normalize_symmetric(G, IP, IF, n_pairs, partition.static_map.ravel()[pixels],
                                  partition.static_to_dynamic())
    return MultiTauG2(np.arange(1, max_lag + 1), g2, err, n_pairs)
