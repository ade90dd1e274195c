"""Streaming multi-tau correlator with the APS ("symmetric") normalisation.

Definitions (XPCS-Eigen / boost_corr, see FIELD-NOTES). Level ``l`` holds the series binned by
``2**l`` (pairs of level ``l-1`` entries averaged, starting at frame 0; an odd last entry does not
reach the next level). For a lag of ``k`` level-``l`` entries and the ``N = T_l - k`` pairs of the
series (fewer when frames are excluded), per pixel ``p``::

    G_p  = sum_j I_p(j) I_p(j+k) / N
    IP_p = sum_j I_p(j)          / N     (the first members of the pairs)
    IF_p = sum_j I_p(j+k)        / N     (the second members)

Per static bin ``s``: ``g2_s = <G>_s / (<IP>_s <IF>_s)``; per dynamic bin the unweighted mean of
its static bins; the error is the sample standard deviation over the bin's pixels of
``G_p / (IP_p IF_p)`` divided by the square root of their number (pixels without counts, where
``IP_p IF_p = 0``, are left out of it).

Lag grid with ``B`` buffers (``B`` even): lags ``1..B`` frames, then ``(B/2+1..B) * 2**l`` for
``l = 1, 2, ...`` while the lag is shorter than the level's series. ``B = 8`` is boost_corr's grid.

Frames are consumed chunk by chunk; the state is ``B`` entries of history per level plus the
accumulators, so memory does not grow with the number of frames and results do not depend on
the chunk size. Excluded frames are given weight 0: every pair that contains one is dropped
(binned entries that contain one are excluded at the higher levels too).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..backend import asnumpy, get_xp
from ..errors import AnalysisError, InvalidInputError
from .passes import as_dataset, check_partition, frame_weights, stream_frames
from .partitions import Partition
from .result import MultiTauG2

__all__ = ["LagGrid", "MultiTauCorrelator", "lag_grid", "multitau_g2", "normalize_symmetric"]

#: Pixels handled by one task of the thread pool (CPU); keeps a task's working set in cache.
_PIXEL_BLOCK = 8192
#: Frames correlated at once on the CPU (larger chunks are split).
_SUB_FRAMES = 128


@dataclass(frozen=True)
class LagGrid:
    """The multi-tau lags.

    Attributes
    ----------
    tau_frames : ndarray of int, (n_tau,)
        Lags in frames, increasing.
    level : ndarray of int, (n_tau,)
        Level of each lag (the series is binned by ``2**level`` there).
    per_level : tuple of ndarray
        For each level, the lags in units of that level's entries.
    buffers : int
    """

    tau_frames: np.ndarray
    level: np.ndarray
    per_level: tuple
    buffers: int


def lag_grid(n_frames: int, buffers: int = 8) -> LagGrid:
    """Return the multi-tau lag grid for a series of ``n_frames`` frames.

    Parameters
    ----------
    n_frames : int
        Number of frames in the series (at least 2).
    buffers : int
        Lags per level at level 0; an even number >= 4. Higher levels add ``buffers / 2`` lags.

    Returns
    -------
    LagGrid
    """
    if buffers < 4 or buffers % 2:
        raise InvalidInputError(f"buffers per level must be an even number >= 4, got {buffers}")
    if n_frames < 2:
        raise AnalysisError(f"a correlation needs at least 2 frames, the data has {n_frames}")
    taus, levels, per_level = [], [], []
    level = 0
    while True:
        n_level = n_frames >> level
        first = 1 if level == 0 else buffers // 2 + 1
        lags = [k for k in range(first, buffers + 1) if k < n_level]
        if not lags:
            break
        per_level.append(np.array(lags, np.int64))
        taus.extend(k << level for k in lags)
        levels.extend([level] * len(lags))
        level += 1
    return LagGrid(np.array(taus, np.int64), np.array(levels, np.int64), tuple(per_level),
                   buffers)


class _Level:
    """State of one level of the correlator for one block of pixels.

    ``buf`` holds, in time order, up to ``buffers`` entries of history followed by the entries
    queued for the next :meth:`process`. Producers write straight into :meth:`slot` (level 0:
    the converted frames; higher levels: the pair sums of the level below), so no chunk is
    copied twice. Level ``l`` stores *sums* of ``2**l`` frames: g2 = G / (IP IF) does not
    depend on that scale, and :meth:`finish` divides it out.
    """

    def __init__(self, level, lags, buffers, n_pixels, xp, capacity=0):
        self.level = level
        self.lags = lags
        self.buffers = buffers
        self.xp = xp
        n_lags = len(lags)
        self.G = xp.zeros((n_lags, n_pixels), np.float64)
        self.ip_drop = self.if_drop = None  # allocated at the first excluded frame
        self.n_pairs = np.zeros(n_lags, np.int64)
        self.total = xp.zeros(n_pixels, np.float64)
        self.head = xp.zeros((0, n_pixels), np.float64)
        self.buf = xp.empty((buffers + capacity, n_pixels), np.float32)
        self.wbuf = np.empty(buffers + capacity, np.float32)
        self.h = 0  # history rows at the start of buf
        self.q = 0  # queued rows after them
        self.unpaired = 0  # trailing rows not yet summed into the next level (0 or 1)

    def slot(self, n):
        """Room for ``n`` more queued entries: (values, weights) views to fill."""
        end = self.h + self.q + n
        if end > len(self.buf):
            size = max(end, 2 * len(self.buf))
            buf = self.xp.empty((size, self.buf.shape[1]), np.float32)
            buf[:self.h + self.q] = self.buf[:self.h + self.q]
            wbuf = np.empty(size, np.float32)
            wbuf[:self.h + self.q] = self.wbuf[:self.h + self.q]
            self.buf, self.wbuf = buf, wbuf
        start = self.h + self.q
        self.q += n
        return self.buf[start:end], self.wbuf[start:end]

    def process(self, upper):
        """Correlate the queued entries, pass pair sums to ``upper`` (a _Level or None)."""
        xp = self.xp
        h, n = self.h, self.q
        if n == 0:
            return
        ext, ew = self.buf[:h + n], self.wbuf[:h + n]
        x = ext[h:]
        bad = ew == 0
        any_bad = bool(bad.any())
        for i, k in enumerate(self.lags):
            lo, hi = max(h - k, 0), h + n - k
            if hi <= lo:
                continue
            a, b = ext[lo:hi], ext[lo + k:hi + k]
            self.G[i] += xp.einsum("tp,tp->p", a, b)
            if not any_bad:
                self.n_pairs[i] += hi - lo
                continue
            wa, wb = ew[lo:hi], ew[lo + k:hi + k]
            self.n_pairs[i] += int(np.count_nonzero(wa * wb))
            if bad[lo:hi + k].any():
                # pairs whose partner is excluded must not count in IP / IF
                if self.ip_drop is None:
                    self.ip_drop, self.if_drop = xp.zeros_like(self.G), xp.zeros_like(self.G)
                drop_first, drop_second = np.flatnonzero(wb == 0), np.flatnonzero(wa == 0)
                if len(drop_first):
                    self.ip_drop[i] += a[drop_first].sum(0, dtype=np.float64)
                if len(drop_second):
                    self.if_drop[i] += b[drop_second].sum(0, dtype=np.float64)
        self.total += x.sum(0)
        if len(self.head) < self.buffers:
            self.head = xp.concatenate([self.head, x[:self.buffers - len(self.head)]
                                        .astype(np.float64)])
        # pair sums for the next level, from the first entry not yet paired
        first = h - self.unpaired
        pairs = (h + n - first) // 2
        if upper is not None and pairs:
            vals, wts = upper.slot(pairs)
            xp.add(ext[first:first + 2 * pairs:2], ext[first + 1:first + 2 * pairs:2], out=vals)
            np.multiply(ew[first:first + 2 * pairs:2], ew[first + 1:first + 2 * pairs:2], out=wts)
            if (wts == 0).any():
                vals *= xp.asarray(wts)[:, None]
        self.unpaired = (h + n - first) - 2 * pairs
        keep = min(self.buffers, h + n)
        self.buf[:keep] = ext[h + n - keep:]
        self.wbuf[:keep] = ew[h + n - keep:]
        self.h, self.q = keep, 0

    def finish(self, G, IP, IF):
        """Write G, IP, IF (lags, P) summed over pairs, in frame units, into the given rows;
        return the pair counts."""
        xp = self.xp
        scale = float(2 ** self.level)  # entries are sums of 2**level frames
        hist = self.buf[:self.h].astype(np.float64)
        for i, k in enumerate(self.lags):
            IP[i] = self.total - hist[self.h - k:].sum(0)
            IF[i] = self.total - self.head[:k].sum(0)
        if self.ip_drop is not None:
            IP -= self.ip_drop
            IF -= self.if_drop
        xp.multiply(self.G, 1 / scale**2, out=G)
        IP *= 1 / scale
        IF *= 1 / scale
        return self.n_pairs


class _Block:
    """All levels of the correlator for one contiguous block of pixels.

    Levels above 0 wait until ``min_batch`` entries are queued, so that the per-call overhead of
    the short binned series stays small; the order of entries, and so the result, is unchanged.
    """

    def __init__(self, grid, n_pixels, xp, min_batch=16):
        # room for one fed piece at level 0 and a full queue above, so buffers never grow
        self.levels = [_Level(i, lags, grid.buffers, n_pixels, xp,
                              capacity=_SUB_FRAMES if i == 0 else
                              min_batch + (_SUB_FRAMES >> i) + 2)
                       for i, lags in enumerate(grid.per_level)]
        self.min_batch = min_batch

    def process(self, flush=False):
        """Run every level whose queue is long enough (all of them with ``flush``)."""
        for i, level in enumerate(self.levels):
            if i > 0 and level.q < self.min_batch and not flush:
                return
            upper = self.levels[i + 1] if i + 1 < len(self.levels) else None
            level.process(upper)


class MultiTauCorrelator:
    """Streaming multi-tau correlator over a fixed set of pixels.

    Parameters
    ----------
    n_frames : int
        Number of frames that will be fed (fixes the lag grid).
    n_pixels : int
        Number of pixels per frame (columns of the arrays fed).
    buffers : int
        Lags per level (see :func:`lag_grid`).
    xp : module
        numpy or cupy.
    threads : int, optional
        Worker threads on the CPU (numpy releases the GIL in its loops); default: all cores.
    """

    def __init__(self, n_frames, n_pixels, buffers=8, xp=np, threads=None):
        self.grid = lag_grid(n_frames, buffers)
        self.n_frames = n_frames
        self.xp = xp
        self.fed = 0
        if xp is np:
            n_blocks = max(1, -(-n_pixels // _PIXEL_BLOCK))
            self.threads = max(1, min(threads or os.cpu_count() or 1, n_blocks))
        else:
            n_blocks, self.threads = 1, 1
        edges = np.linspace(0, n_pixels, n_blocks + 1).astype(int)
        self.slices = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
        self.blocks = [_Block(self.grid, s.stop - s.start, xp) for s in self.slices]
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def feed(self, frames, weights=None):
        """Correlate the next frames.

        Parameters
        ----------
        frames : array, (n, n_pixels)
            Next frames in time order (any real dtype; converted to float32 per block).
        weights : ndarray, (n,), optional
            1 for frames to use, 0 for excluded frames (their values are ignored).
        """
        n = len(frames)
        if self.fed + n > self.n_frames:
            raise AnalysisError("more frames were fed than the correlator was made for")
        w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
        if n > _SUB_FRAMES and self.xp is np:
            # smaller pieces keep each block's working set in the CPU cache
            for start in range(0, n, _SUB_FRAMES):
                self.feed(frames[start:start + _SUB_FRAMES], w[start:start + _SUB_FRAMES])
            return
        zero = w == 0

        def run(i):
            block = self.blocks[i]
            vals, wts = block.levels[0].slot(n)
            src = frames[:, self.slices[i]]
            if self.xp is np:
                np.copyto(vals, src, casting="unsafe")
            else:
                vals[...] = self.xp.asarray(np.ascontiguousarray(src))
            wts[...] = w
            if zero.any():
                vals[self.xp.asarray(np.flatnonzero(zero))] = 0
            block.process()

        self._run(run)
        self.fed += n

    def _run(self, task):
        """Run ``task(block_index)`` for every pixel block, on the thread pool when there is one."""
        if self._pool is None:
            for i in range(len(self.blocks)):
                task(i)
        else:
            list(self._pool.map(task, range(len(self.blocks))))

    def result(self):
        """Return per-pixel sums ``G, IP, IF`` (n_tau, n_pixels) and pair counts (n_tau,).

        Divide each by the pair count for the means of the module docstring.
        """
        if self.fed != self.n_frames:
            raise AnalysisError(
                f"the correlator expected {self.n_frames} frames and received {self.fed}")
        self._run(lambda i: self.blocks[i].process(flush=True))
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        xp = self.xp
        n_tau, n_pixels = len(self.grid.tau_frames), self.slices[-1].stop
        G, IP, IF = (xp.empty((n_tau, n_pixels), np.float64) for _ in range(3))
        for block, cols in zip(self.blocks, self.slices):
            row = 0
            counts = []
            for level in block.levels:
                rows = slice(row, row + len(level.lags))
                counts.append(level.finish(G[rows, cols], IP[rows, cols], IF[rows, cols]))
                row = rows.stop
        return G, IP, IF, np.concatenate(counts)


def normalize_symmetric(G, IP, IF, n_pairs, static_labels, static_to_dynamic):
    """Turn per-pixel sums into g2 per dynamic bin (APS symmetric normalisation).

    Parameters
    ----------
    G, IP, IF : array, (n_tau, n_pixels)
        Per-pixel sums over pairs (see :meth:`MultiTauCorrelator.result`).
    n_pairs : ndarray, (n_tau,)
        Number of pairs per lag.
    static_labels : ndarray of int, (n_pixels,)
        Static bin (1-based) of each pixel.
    static_to_dynamic : ndarray of int, (n_static,)
        Dynamic bin (1-based) of each static bin; 0 for empty static bins.

    Returns
    -------
    g2, g2_err : ndarray, (n_tau, n_dynamic)
        NaN where a lag has no pair or a bin has no counts.
    """
    G, IP, IF = (asnumpy(a) for a in (G, IP, IF))
    n = np.asarray(n_pairs, np.float64)[:, None]
    s = np.asarray(static_labels, np.int64)
    s2d = np.asarray(static_to_dynamic, np.int64)
    n_dyn = int(s2d.max())
    n_tau = G.shape[0]
    g2 = np.full((n_tau, n_dyn), np.nan)
    err = np.full((n_tau, n_dyn), np.nan)
    if s.size == 0:
        return g2, err
    d_of_pixel = s2d[s - 1]
    # one order that makes every static bin, and every dynamic bin, a contiguous run of columns
    order = np.lexsort((s, d_of_pixel))
    if not np.array_equal(order, np.arange(s.size)):
        G, IP, IF, s, d_of_pixel = G[:, order], IP[:, order], IF[:, order], s[order], \
            d_of_pixel[order]
    s_starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    d_starts = np.flatnonzero(np.r_[True, d_of_pixel[1:] != d_of_pixel[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        # static bins: <G>_s / (<IP>_s <IF>_s) with the means over the pairs (factor n)
        count = np.diff(np.r_[s_starts, s.size])[None, :].astype(np.float64)
        g_static = (n * count * np.add.reduceat(G, s_starts, axis=1)
                    / (np.add.reduceat(IP, s_starts, axis=1)
                       * np.add.reduceat(IF, s_starts, axis=1)))
        dyn_of_static = d_of_pixel[s_starts]
        # dynamic bins: unweighted mean of their static bins' g2
        ok = np.isfinite(g_static)
        d_runs = np.flatnonzero(np.r_[True, dyn_of_static[1:] != dyn_of_static[:-1]])
        num = np.add.reduceat(np.where(ok, g_static, 0.0), d_runs, axis=1)
        den = np.add.reduceat(ok.astype(np.float64), d_runs, axis=1)
        g2[:, dyn_of_static[d_runs] - 1] = np.where(den > 0, num / np.maximum(den, 1), np.nan)
        # error: sample standard deviation of the per-pixel g2 over the bin / sqrt(pixels)
        pixels_in = np.diff(np.r_[d_starts, s.size]).astype(np.float64)
        gp = G / (IP * IF)
        gp *= n
        fin = np.isfinite(gp)
        gp[~fin] = 0.0
        k = np.add.reduceat(fin.astype(np.float64), d_starts, axis=1)
        m1 = np.add.reduceat(gp, d_starts, axis=1) / np.maximum(k, 1)
        gp *= gp
        m2 = np.add.reduceat(gp, d_starts, axis=1) / np.maximum(k, 1)
        std = np.sqrt(np.maximum(m2 - m1**2, 0) * k / np.maximum(k - 1, 1))  # ddof=1
        err[:, d_of_pixel[d_starts] - 1] = np.where(k > 0, std / np.sqrt(pixels_in), np.nan)
    return g2, err


def multitau_g2(data, partition: Partition, *, buffers: int = 8, chunk_frames: int | None = None,
                exclude_frames=None, normalize_frames: bool = False, device: str = "auto",
                threads: int | None = None, progress: Callable | None = None,
                cancel: Callable | None = None, consumers: tuple = (),
                keep_pixels: Callable | None = None) -> MultiTauG2:
    """Multi-tau g2 per dynamic bin, streaming the frames chunk by chunk.

    Parameters
    ----------
    data : Dataset or ndarray
        Frames (n_frames, rows, cols).
    partition : Partition
        The bins; unused pixels (0) are not correlated.
    buffers : int
        Lags per level (8 gives boost_corr's grid).
    chunk_frames : int, optional
        Frames read per chunk (results do not depend on it).
    exclude_frames : sequence of int or bool mask, optional
        Frames to leave out (every pair containing one is dropped).
    normalize_frames : bool
        Divide each frame by its mean over the used pixels first (removes beam-intensity
        fluctuations; frames with no counts are excluded).
    device : {"auto", "cpu", "gpu"}
    threads : int, optional
        CPU worker threads (default: all cores).
    progress : callable, optional
        Called as ``progress(frames_done, n_frames)`` after each chunk.
    cancel : callable, optional
        Polled after each chunk; when it returns True the analysis stops with
        :class:`~speckle.errors.Cancelled`.
    consumers : tuple of callables
        Also fed every chunk (see :func:`speckle.xpcs.passes.stream_frames`), so that other
        statistics come from the same pass.
    keep_pixels : callable, optional
        Called after the pass; returns a boolean (rows, cols) map of the pixels to keep in the
        normalisation (for masks that depend on the pass's statistics, such as dead pixels).

    Returns
    -------
    MultiTauG2
    """
    ds = as_dataset(data)
    xp = get_xp(device)
    weights = frame_weights(ds.n_frames, exclude_frames)
    mask = partition.mask
    check_partition(partition, ds)
    pixels = np.flatnonzero(mask.ravel())
    corr = MultiTauCorrelator(ds.n_frames, len(pixels), buffers, xp=xp, threads=threads)
    for start, flat, w in stream_frames(ds, pixels, weights, chunk_frames=chunk_frames,
                                        normalize=normalize_frames, progress=progress,
                                        cancel=cancel, consumers=consumers):
        corr.feed(flat, w)
    G, IP, IF, n_pairs = corr.result()
    static = partition.static_map.ravel()[pixels]
    if keep_pixels is not None:
        keep = np.asarray(keep_pixels(), bool).ravel()[pixels]
        if not keep.all():
            G, IP, IF, static = G[:, keep], IP[:, keep], IF[:, keep], static[keep]
    g2, err = normalize_symmetric(G, IP, IF, n_pairs, static, partition.static_to_dynamic())
    return MultiTauG2(corr.grid.tau_frames.copy(), g2, err, n_pairs)
