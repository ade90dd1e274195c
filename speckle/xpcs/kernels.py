"""Compiled CPU kernels of the XPCS correlators (numba).

Each kernel computes exactly what the numpy code it replaces computes (the reference, kept in
the correlator's module and used where numba is missing or ``SPECKLE_CPU_KERNELS=numpy``); the
tests run both on every code path. Kernels release the GIL, so the correlators' thread pools
run them on every core.

They are compiled once per install into a cache every user reads (:mod:`.kernel_cache`);
``python -m speckle.xpcs.engine`` (run by ``make setup``) fills it. Importing this module
loads them (numba's start-up, about 0.3-0.5 s); :mod:`.engine` decides whether they are used
and can load them in a background thread while the caller opens its data.
"""

from __future__ import annotations

import numba
import numpy as np

from .kernel_cache import compiled

__all__ = ["bin_sums", "frame_sums", "lag_products"]

#: Pixels handled together: a few rows of this many float32 stay in the L1 cache.
_TILE = 512
#: Pixels whose per-pixel sums stay in the L1 cache while frame_sums adds a chunk's frames.
_SUM_TILE = 2048
#: Frame dtypes frame_sums is compiled for, with the type its sums are kept in (exact for
#: integers); other dtypes use the numpy reference.
FRAME_SUM_TYPES = {"uint8": "int64", "uint16": "int64", "uint32": "int64", "int16": "int64",
                   "int32": "int64", "float32": "float64", "float64": "float64"}
_OPTIONS = dict(nogil=True, boundscheck=False, fastmath={"contract"}, error_model="numpy")


@numba.njit(**_OPTIONS)
def _lag_group(ext, h, stop, k, p0, p1, acc, G):
    """Lags ``k .. k + len(acc) - 1`` (at most 4) for the pixels ``p0:p1``: see lag_products."""
    m = acc.shape[0]
    w = p1 - p0
    acc[:, :w] = 0
    # entries too close to the start of the series for every lag of the group
    fast = min(max(h, k + m - 1), stop)
    for t in range(h, fast):
        x = ext[t, p0:p1]
        for i in range(m):
            if t - k - i >= 0:
                y = ext[t - k - i, p0:p1]
                a = acc[i]
                for q in range(w):
                    a[q] += x[q] * y[q]
    t = fast
    if m == 4:
        # two entries at a time; lags k..k+3 of entries t and t+1 read the rows t+1-k..t-k-3
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        while t + 1 < stop:
            u, v = ext[t, p0:p1], ext[t + 1, p0:p1]
            r0, r1, r2 = ext[t + 1 - k, p0:p1], ext[t - k, p0:p1], ext[t - k - 1, p0:p1]
            r3, r4 = ext[t - k - 2, p0:p1], ext[t - k - 3, p0:p1]
            for q in range(w):
                uq, vq, s1, s2, s3 = u[q], v[q], r1[q], r2[q], r3[q]
                a0[q] += uq * s1 + vq * r0[q]
                a1[q] += uq * s2 + vq * s1
                a2[q] += uq * s3 + vq * s2
                a3[q] += uq * r4[q] + vq * s3
            t += 2
    for t in range(t, stop):
        x = ext[t, p0:p1]
        for i in range(m):
            y = ext[t - k - i, p0:p1]
            a = acc[i]
            for q in range(w):
                a[q] += x[q] * y[q]
    for i in range(m):
        g = G[i, p0:p1]
        a = acc[i]
        for q in range(w):
            g[q] += a[q]


@compiled("void(float32[:, ::1], int64, int64, int64, float64[:, ::1], int64, float32[:, ::1])",
          _OPTIONS)
def lag_products(ext, h, n, first_lag, G, first, pairs):
    """Add one batch's lag products to the per-pixel sums ``G`` (n_lags, pixels), and write the
    pair sums of the next level into ``pairs``, while the batch's rows are in the cache.

    ``ext`` (entries, pixels) holds ``h`` entries of history followed by ``n`` new ones; for
    the lags ``k = first_lag + i`` (consecutive, as on every multi-tau level), every pair
    ``(t - k, t)`` whose second member is new adds ``ext[t - k] * ext[t]``. The products of one
    batch are summed in float32 and added to ``G`` in float64, as the numpy reference does.
    ``pairs[j] = ext[first + 2 j] + ext[first + 2 j + 1]`` for each of its rows.
    """
    n_lags, n_pixels = G.shape
    stop = h + n
    acc = np.empty((4, _TILE), np.float32)
    for p0 in range(0, n_pixels, _TILE):
        p1 = min(p0 + _TILE, n_pixels)
        for i in range(0, n_lags, 4):
            m = min(4, n_lags - i)
            _lag_group(ext, h, stop, first_lag + i, p0, p1, acc[:m], G[i:i + m])
        for j in range(pairs.shape[0]):
            a, b, out = ext[first + 2 * j, p0:p1], ext[first + 2 * j + 1, p0:p1], pairs[j, p0:p1]
            for q in range(p1 - p0):
                out[q] = a[q] + b[q]


@compiled("void(float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[::1], int64[::1], "
          "int64[::1], float64[:, :, ::1], float64[:, :, ::1])", _OPTIONS)
def bin_sums(G, IP, IF, n, static, dynamic, per_static, per_dynamic):
    """Per-bin sums of the per-pixel sums of one level, in one pass.

    For each lag ``i`` and pixel ``p``: ``per_static[:, i, static[p]]`` adds ``G``, ``IP``,
    ``IF``; where ``g = n[i] G / (IP IF)`` is finite, ``per_dynamic[:, i, dynamic[p]]`` adds
    1, ``g`` and ``g**2`` (the reference: ``_BinSums.of`` in :mod:`speckle.xpcs.multitau`).
    """
    for i in range(G.shape[0]):
        gs, ips, ifs = per_static[0, i], per_static[1, i], per_static[2, i]
        k, m1, m2 = per_dynamic[0, i], per_dynamic[1, i], per_dynamic[2, i]
        ni = n[i]
        for p in range(G.shape[1]):
            g, a, b = G[i, p], IP[i, p], IF[i, p]
            s = static[p]
            gs[s] += g
            ips[s] += a
            ifs[s] += b
            gp = g / (a * b) * ni
            if np.isfinite(gp):
                d = dynamic[p]
                k[d] += 1.0
                m1[d] += gp
                m2[d] += gp * gp


@compiled([f"void({frame}[:, ::1], boolean[::1], float64, {acc}, {acc}[::1], int64[::1], "
           "float64[::1])" for frame, acc in FRAME_SUM_TYPES.items()],
          dict(_OPTIONS, fastmath={"contract", "reassoc"}))
def frame_sums(chunk, used, saturation, zero, sums, saturated, image):
    """Per-frame and per-pixel sums of a chunk of frames, in one pass over its memory.

    For each frame ``t`` of ``chunk`` (frames, pixels): ``sums[t]`` adds its values over the
    ``used`` pixels, ``saturated[t]`` counts the used pixels at or above ``saturation``;
    ``image`` adds every pixel's values over the frames. ``zero`` (0 of the type the sums are
    kept in: int64 for integers, exact; float64 for floats) sets the arithmetic. The reference: :class:`speckle.xpcs.statistics.FrameStatistics`'s
    numpy code (equal for integers; floats' per-frame sums are added in another order).
    """
    n, n_pixels = chunk.shape
    scratch = np.full(_SUM_TILE, zero)
    for p0 in range(0, n_pixels, _SUM_TILE):
        p1 = min(p0 + _SUM_TILE, n_pixels)
        w = p1 - p0
        acc, mask = scratch[:w], used[p0:p1]
        acc[:] = zero
        for t in range(n):
            row = chunk[t, p0:p1]
            s = zero
            c = 0
            for q in range(w):
                v = zero + row[q]
                acc[q] += v
                if mask[q]:
                    s += v
                    if v >= saturation:
                        c += 1
            sums[t] += s
            saturated[t] += c
        out = image[p0:p1]
        for q in range(w):
            out[q] += acc[q]
