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
from llvmlite import ir
from numba import types as nt
from numba.extending import intrinsic

from .kernel_cache import OPTIONS, compiled
from .kernel_interface import (CASCADE_FRAME_TYPES, FRAME_SUM_TYPES,  # noqa: F401 - kernels.*
                               PLAN_COLUMNS)

__all__ = ["bin_sums", "frame_sums", "multitau_levels"]

#: Pixels whose per-pixel sums stay in the L1 cache while frame_sums adds a chunk's frames.
_SUM_TILE = 2048


def _frames(dtype: str, ndim: int = 2):
    """The numba type of a chunk of frames of ``dtype`` ((frames, pixels), or with ``ndim`` 1
    the buffer frames lie in): C-contiguous, read only (which writable arrays also match:
    chunks of a read-only memory map are taken too)."""
    return nt.Array(getattr(nt, dtype), ndim, "C", readonly=True)


#: Pixels handled together by multitau_levels: each tile of this many pixels of every entry
#: is put into a contiguous scratch, so that the rows of a tile are a constant distance
#: apart (the compiler then vectorises the register-blocked loops without a runtime check per
#: row) and stay in the L1/L2 cache whatever the caller's row stride (a power-of-two stride put
#: every row of a tile in the same cache sets).
_TILE = 256


@numba.njit(**OPTIONS)
def _row(s, t, w):
    """Row ``t`` (``w`` pixels) of a tile scratch ``s`` (flat, rows of _TILE)."""
    return s[t * _TILE:t * _TILE + w]


@numba.njit(**OPTIONS)
def _eight_by_eight(vx, vz, w, acc):
    """Lags ``k .. k + 7`` of entries ``t .. t + 7`` of a tile: ``vx`` starts at row ``t``,
    ``vz`` at row ``t - k - 7``; lag ``k + i`` adds ``x_j z_(j + 7 - i)`` over ``j`` to
    ``acc`` row ``i``. Each value loaded is used by eight products (register blocking)."""
    T = _TILE
    for q in range(w):
        x0, x1, x2, x3 = vx[q], vx[T + q], vx[2 * T + q], vx[3 * T + q]
        x4, x5, x6, x7 = vx[4 * T + q], vx[5 * T + q], vx[6 * T + q], vx[7 * T + q]
        z0, z1, z2, z3 = vz[q], vz[T + q], vz[2 * T + q], vz[3 * T + q]
        z4, z5, z6, z7 = vz[4 * T + q], vz[5 * T + q], vz[6 * T + q], vz[7 * T + q]
        z8, z9, z10, z11 = vz[8 * T + q], vz[9 * T + q], vz[10 * T + q], vz[11 * T + q]
        z12, z13, z14 = vz[12 * T + q], vz[13 * T + q], vz[14 * T + q]
        acc[q] += x0 * z7 + x1 * z8 + x2 * z9 + x3 * z10 + x4 * z11 + x5 * z12 + x6 * z13 + x7 * z14
        acc[T + q] += x0 * z6 + x1 * z7 + x2 * z8 + x3 * z9 + x4 * z10 + x5 * z11 + x6 * z12 + x7 * z13
        acc[2 * T + q] += x0 * z5 + x1 * z6 + x2 * z7 + x3 * z8 + x4 * z9 + x5 * z10 + x6 * z11 + x7 * z12
        acc[3 * T + q] += x0 * z4 + x1 * z5 + x2 * z6 + x3 * z7 + x4 * z8 + x5 * z9 + x6 * z10 + x7 * z11
        acc[4 * T + q] += x0 * z3 + x1 * z4 + x2 * z5 + x3 * z6 + x4 * z7 + x5 * z8 + x6 * z9 + x7 * z10
        acc[5 * T + q] += x0 * z2 + x1 * z3 + x2 * z4 + x3 * z5 + x4 * z6 + x5 * z7 + x6 * z8 + x7 * z9
        acc[6 * T + q] += x0 * z1 + x1 * z2 + x2 * z3 + x3 * z4 + x4 * z5 + x5 * z6 + x6 * z7 + x7 * z8
        acc[7 * T + q] += x0 * z0 + x1 * z1 + x2 * z2 + x3 * z3 + x4 * z4 + x5 * z5 + x6 * z6 + x7 * z7


@numba.njit(**OPTIONS)
def _eight_by_four(vx, vz, w, acc):
    """Lags ``k .. k + 3`` of entries ``t .. t + 7``: as _eight_by_eight, ``vz`` starting at
    row ``t - k - 3``, lag ``k + i`` adding ``x_j z_(j + 3 - i)``."""
    T = _TILE
    for q in range(w):
        x0, x1, x2, x3 = vx[q], vx[T + q], vx[2 * T + q], vx[3 * T + q]
        x4, x5, x6, x7 = vx[4 * T + q], vx[5 * T + q], vx[6 * T + q], vx[7 * T + q]
        z0, z1, z2, z3 = vz[q], vz[T + q], vz[2 * T + q], vz[3 * T + q]
        z4, z5, z6, z7 = vz[4 * T + q], vz[5 * T + q], vz[6 * T + q], vz[7 * T + q]
        z8, z9, z10 = vz[8 * T + q], vz[9 * T + q], vz[10 * T + q]
        acc[q] += x0 * z3 + x1 * z4 + x2 * z5 + x3 * z6 + x4 * z7 + x5 * z8 + x6 * z9 + x7 * z10
        acc[T + q] += x0 * z2 + x1 * z3 + x2 * z4 + x3 * z5 + x4 * z6 + x5 * z7 + x6 * z8 + x7 * z9
        acc[2 * T + q] += x0 * z1 + x1 * z2 + x2 * z3 + x3 * z4 + x4 * z5 + x5 * z6 + x6 * z7 + x7 * z8
        acc[3 * T + q] += x0 * z0 + x1 * z1 + x2 * z2 + x3 * z3 + x4 * z4 + x5 * z5 + x6 * z6 + x7 * z7


@numba.njit(**OPTIONS)
def _lag_group(s, h, stop, k, m, w, acc):
    """Lags ``k .. k + m - 1`` of the new entries of a tile scratch ``s`` into ``acc`` (rows
    of _TILE): eight entries at a time where all their partners exist (``m`` of 8 or 4), one
    at a time elsewhere (the start of the series, the last entries, other ``m``)."""
    acc[:m * _TILE] = 0
    fast = max(h, k + m - 1)  # from here on, every partner of every lag exists
    t = h
    while t < stop:
        if t >= fast and t + 8 <= stop and m == 8:
            _eight_by_eight(s[t * _TILE:], s[(t - k - 7) * _TILE:], w, acc)
            t += 8
        elif t >= fast and t + 8 <= stop and m == 4:
            _eight_by_four(s[t * _TILE:], s[(t - k - 3) * _TILE:], w, acc)
            t += 8
        else:
            x = _row(s, t, w)
            for i in range(m):
                if t - k - i >= 0:
                    y, a = _row(s, t - k - i, w), _row(acc, i, w)
                    for q in range(w):
                        a[q] += x[q] * y[q]
            t += 1


_RUN, _H, _Q, _N_IN, _FIRST, _PAIRS, _N_HEAD, _ROW, _FIRST_LAG, _N_LAGS, _LAG_ROW = range(
    len(PLAN_COLUMNS))


#: Frames ahead whose tile row multitau_levels asks the memory for: the rows of a tile are a
#: frame apart (a page or more), which the hardware does not fetch ahead by itself (the first
#: pass over a piece of frames mapped from a file: 30 ms per 1024 x 65536 uint16 on one core
#: here without, 22 ms with 2-8 frames ahead).
_AHEAD = 4


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask for the cache line of ``array[index]`` (a hint: LLVM's ``llvm.prefetch``, read, into
    every cache level)."""
    sig = nt.void(array, index)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        address = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(inline="always", **OPTIONS)
def _frame_stats(src, used, level, zero, tile_sums, sums, saturated, t):
    """Frame ``t``'s values ``src`` on one tile: added to the tile's per-pixel sums, their sum
    over the ``used`` pixels to ``sums[t]`` and the used ones at or above ``level`` counted in
    ``saturated[t]`` (the arithmetic of :func:`frame_sums`, ``zero`` of its sums' type)."""
    s = zero
    c = 0
    for q in range(len(src)):  # without branches: vectorised
        v = zero + src[q]
        tile_sums[q] += v
        u = used[q]
        s += v * u
        c += (v >= level) & u
    sums[t] += s
    saturated[t] += c


@compiled([nt.void(_frames(frame, 1), nt.int64[::1], nt.float32[::1], nt.int64[:, ::1],
                   nt.float32[:, ::1], nt.float32[:, ::1], nt.float64[:, ::1],
                   nt.float32[:, :, ::1], nt.float64[::1], nt.float64[:, ::1],
                   nt.float64[:, ::1], nt.float64[:, ::1], nt.boolean[::1], nt.float64,
                   getattr(nt, FRAME_SUM_TYPES[frame]), getattr(nt, FRAME_SUM_TYPES[frame])[::1],
                   nt.int64[::1], getattr(nt, FRAME_SUM_TYPES[frame])[::1])
           for frame in CASCADE_FRAME_TYPES], OPTIONS)
def multitau_levels(frames, starts, frame_w, plan, weights, bufs, G, heads, total, dropped,
                    ip_drop, if_drop, used, level, zero, sums, saturated, image):
    """One piece of frames through every level of a multi-tau block, tile by tile.

    The compiled form of :meth:`speckle.xpcs.multitau._Level.process` called level after
    level (the reference): for each tile of _TILE pixels, the new frames are converted into a
    scratch behind level 0's history, correlated, and their pair sums written behind level
    1's history and queue, which is correlated in turn when ``plan`` says it runs, and so on,
    while the tile is in the cache (the reference makes a pass over the whole block per level).

    The block's pixels of frame ``t`` are ``frames[starts[t]:starts[t] + pixels]`` (the fed
    chunk's frames read where they are: the rows of an array, or frames mapped from a file
    with gaps between them). ``plan[l]`` (columns :data:`PLAN_COLUMNS`): whether level ``l`` runs, its history rows
    ``h`` and queued rows ``q`` (in ``bufs`` from row ``row``), the ``n_in`` entries it gets
    (level 0: ``frames``; above: the pair sums of the level below when that one runs), the
    first entry not yet paired, the pair sums it passes up, how many first entries it has kept
    in ``heads[l]``, its lags ``first_lag ..`` (``n_lags``, rows ``lag_row ..`` of ``G``,
    ``ip_drop``, ``if_drop``). ``weights[l]`` holds the weights of its entries (history, queue,
    new); ``frame_w`` those of ``frames`` (excluded frames read as 0). A level that does not run
    only stores its new entries behind its queue. The last level is the top one: it adds its
    new entries to ``total``. ``dropped`` (levels, pixels), ``ip_drop`` and ``if_drop`` have no
    rows while no entry is excluded.

    Where ``used`` (the block's pixels) is not empty, the frame statistics of
    :func:`frame_sums` are gathered on the way, every frame's values read once: each frame's
    sum over the used pixels into ``sums`` and its used pixels at or above ``level`` into
    ``saturated`` (both per frame of the piece, excluded ones too), every pixel's sum into
    ``image``; ``zero`` sets their arithmetic.
    """
    n_levels = plan.shape[0]
    n_pixels = bufs.shape[1]
    rows = 0
    for lv in range(n_levels):
        rows = max(rows, plan[lv, _H] + plan[lv, _Q] + plan[lv, _N_IN])
    scratch = np.empty((2, rows * _TILE), np.float32)
    acc = np.empty(8 * _TILE, np.float32)
    drops = dropped.shape[0] > 0
    stats = used.shape[0] > 0
    tile_sums = np.empty(_TILE, image.dtype)
    for p0 in range(0, n_pixels, _TILE):
        p1 = min(p0 + _TILE, n_pixels)
        w = p1 - p0
        # level 0's new entries: the frames, converted, excluded ones as 0
        s = scratch[0]
        base = plan[0, _H] + plan[0, _Q]
        tile_sums[:w] = zero
        n_in = plan[0, _N_IN]
        line = 64 // frames.itemsize  # values per cache line
        for t in range(n_in):
            if t + _AHEAD < n_in:
                for k in range(starts[t + _AHEAD] + p0, starts[t + _AHEAD] + p1, line):
                    _prefetch(frames, k)
            dst = _row(s, base + t, w)
            src = frames[starts[t] + p0:starts[t] + p1]
            if stats:
                _frame_stats(src, used[p0:p1], level, zero, tile_sums, sums, saturated, t)
            if frame_w[t] == 0:
                dst[:] = 0
            else:
                for q in range(w):
                    dst[q] = src[q]
        if stats:
            out = image[p0:p1]
            for q in range(w):
                out[q] += tile_sums[q]
        for lv in range(n_levels):
            h, q_old, n_in = plan[lv, _H], plan[lv, _Q], plan[lv, _N_IN]
            row = plan[lv, _ROW]
            s = scratch[lv % 2]
            if not plan[lv, _RUN]:
                for t in range(h + q_old, h + q_old + n_in):  # queue the new entries
                    src, dst = _row(s, t, w), bufs[row + t, p0:p1]
                    for q in range(w):
                        dst[q] = src[q]
                continue
            n = q_old + n_in
            if n == 0:
                continue
            stop = h + n
            for t in range(h + q_old):  # history and queue, before the new entries
                src, dst = bufs[row + t, p0:p1], _row(s, t, w)
                for q in range(w):
                    dst[q] = src[q]
            wts = weights[lv]
            first_lag, n_lags, lag_row = plan[lv, _FIRST_LAG], plan[lv, _N_LAGS], plan[lv, _LAG_ROW]
            i = 0
            while i < n_lags:
                m = 8 if n_lags - i >= 8 else min(4, n_lags - i)
                _lag_group(s, h, stop, first_lag + i, m, w, acc)
                for j in range(m):
                    g, a = G[lag_row + i + j, p0:p1], _row(acc, j, w)
                    for q in range(w):
                        g[q] += a[q]
                i += m
            if drops:  # pairs with an excluded member: its partner leaves IP / IF
                for i in range(n_lags):
                    k = first_lag + i
                    ipd, ifd = ip_drop[lag_row + i, p0:p1], if_drop[lag_row + i, p0:p1]
                    for t in range(max(h, k), stop):
                        if wts[t] == 0:
                            a = _row(s, t - k, w)
                            for q in range(w):
                                ipd[q] += np.float64(a[q])
                        if wts[t - k] == 0:
                            b = _row(s, t, w)
                            for q in range(w):
                                ifd[q] += np.float64(b[q])
            if lv == n_levels - 1:
                tot = total[p0:p1]
                for t in range(h, stop):
                    x = _row(s, t, w)
                    for q in range(w):
                        tot[q] += np.float64(x[q])
            n_head = plan[lv, _N_HEAD]
            hd = heads[lv]
            for j in range(min(hd.shape[0] - n_head, n)):
                src, dst = _row(s, h + j, w), hd[n_head + j, p0:p1]
                for q in range(w):
                    dst[q] = src[q]
            pairs = plan[lv, _PAIRS]
            if pairs:
                up = scratch[(lv + 1) % 2]
                base = plan[lv + 1, _H] + plan[lv + 1, _Q]
                first = plan[lv, _FIRST]
                for j in range(pairs):
                    a, b = _row(s, first + 2 * j, w), _row(s, first + 2 * j + 1, w)
                    out = _row(up, base + j, w)
                    if wts[first + 2 * j] * wts[first + 2 * j + 1] == 0:
                        d = dropped[lv, p0:p1]
                        for q in range(w):
                            d[q] += np.float64(a[q] + b[q])
                        out[:] = 0
                    else:
                        for q in range(w):
                            out[q] = a[q] + b[q]
            keep = min(heads.shape[1], stop)  # the last entries become the history
            for t in range(keep):
                src, dst = _row(s, stop - keep + t, w), bufs[row + t, p0:p1]
                for q in range(w):
                    dst[q] = src[q]


@numba.njit(**OPTIONS)
def _add3(table, i, label, x, y, z):
    """``table[:, i, label] += (x, y, z)``."""
    table[0, i, label] += x
    table[1, i, label] += y
    table[2, i, label] += z


@compiled("void(float64[:, ::1], float64[::1], float32[:, ::1], float32[:, ::1], int64[::1], "
          "float64[:, ::1], float64[:, ::1], float64[::1], int64[::1], int64[::1], "
          "float64[:, :, ::1], float64[:, :, ::1])", OPTIONS)
def bin_sums(G, total, hist, head, lags, ip_drop, if_drop, n, static, dynamic, per_static,
             per_dynamic):
    """Per-bin sums of the per-pixel sums of one level, in one pass, IP and IF made on the way.

    For each pixel ``p`` and lag ``i`` (``k = lags[i]``, increasing, at most the rows of
    ``hist`` and ``head``): ``IP = total - (sum of the last k entries of hist) - ip_drop[i]``
    and ``IF = total - (sum of the first k entries of head) - if_drop[i]`` (no drops when
    ``ip_drop`` has no rows), summed in float64 in the order :meth:`_Level.pair_sums` sums
    them; ``per_static[:, i, static[p]]`` adds ``G``, ``IP``, ``IF``; where ``g = n[i] G /
    (IP IF)`` is finite, ``per_dynamic[:, i, dynamic[p]]`` adds 1, ``g`` and ``g**2`` (a run of
    pixels with the same bin is summed in registers first). The reference: ``_Level.pair_sums``
    then ``_BinSums.of`` in :mod:`speckle.xpcs.multitau`, without their two float64 (lags,
    pixels) arrays.
    """
    n_lags, n_pixels = G.shape
    h = hist.shape[0]
    drops = ip_drop.shape[0] > 0
    last = np.zeros(n_pixels)  # per pixel, the sum of the last / first k entries
    first = np.zeros(n_pixels)
    summed = 0
    for i in range(n_lags):
        k = lags[i]
        for j in range(summed, k):
            row_h, row_f = hist[h - 1 - j], head[j]
            for p in range(n_pixels):
                last[p] += np.float64(row_h[p])
                first[p] += np.float64(row_f[p])
        summed = k
        ni = n[i]
        # labels come in runs along the pixels: sum a run in registers, then add it
        s_run, d_run = static[0] if n_pixels else 0, dynamic[0] if n_pixels else 0
        sg = sa = sb = 0.0
        sc = s1 = s2 = 0.0
        for p in range(n_pixels):
            s, d = static[p], dynamic[p]
            if s != s_run:
                _add3(per_static, i, s_run, sg, sa, sb)
                sg = sa = sb = 0.0
                s_run = s
            if d != d_run:
                _add3(per_dynamic, i, d_run, sc, s1, s2)
                sc = s1 = s2 = 0.0
                d_run = d
            a = total[p] - last[p]
            b = total[p] - first[p]
            if drops:
                a -= ip_drop[i, p]
                b -= if_drop[i, p]
            g = G[i, p]
            sg += g
            sa += a
            sb += b
            gp = g / (a * b) * ni
            if np.isfinite(gp):
                sc += 1.0
                s1 += gp
                s2 += gp * gp
        _add3(per_static, i, s_run, sg, sa, sb)
        _add3(per_dynamic, i, d_run, sc, s1, s2)


@compiled([nt.void(_frames(frame), nt.boolean[::1], nt.float64, getattr(nt, acc),
                   getattr(nt, acc)[::1], nt.int64[::1], nt.float64[::1])
           for frame, acc in FRAME_SUM_TYPES.items()],
          dict(OPTIONS, fastmath={"contract", "reassoc"}))
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

