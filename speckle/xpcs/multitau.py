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

On the CPU the levels run as compiled kernels (:mod:`speckle.xpcs.kernels`, chosen by
:mod:`speckle.xpcs.engine`): one call per piece of frames takes each tile of pixels through
every level while it is in the cache (:class:`_CompiledBlock`), and the per-pixel normalisation
is binned in one pass; the numpy code here (:class:`_Level`, :class:`_Block`) is their
reference, their fallback and the GPU's code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np

from ..backend import asnumpy, get_xp
from ..errors import AnalysisError, InvalidInputError
from ..io.frame_rows import FrameRows
from ..memory import fresh_empty, fresh_zeros
from .engine import DeferredKernels, use_compiled
from .kernel_interface import CASCADE_FRAME_TYPES, FRAME_SUM_TYPES, PLAN_COLUMNS
from .passes import as_dataset, check_partition, frame_weights, stream_frames
from .partitions import Partition
from .result import MultiTauG2
from .statistics import FrameStatistics

__all__ = ["LagGrid", "MultiTauCorrelator", "lag_grid", "multitau_g2", "normalize_symmetric"]

#: Pixels handled by one task of the thread pool (CPU) at least; keeps a task's working set in
#: cache. Big detectors get bigger blocks (at most _MAX_BLOCKS), so that the per-call work of
#: the levels stays large next to Python's overhead.
_PIXEL_BLOCK = 8192
_MAX_BLOCKS = 128
#: Frames correlated at once on the CPU (larger chunks are split). 128 frames and batches of
#: up to 32 entries above took 20-25 % less CPU than 256 and 64 at 512^2 (the queues of a
#: block stay in the cache), and a fifth less memory.
_SUB_FRAMES = 128
#: Bytes that the queued entries may hold, half for level 0's pieces and half for the batches
#: of the levels above (at most _MAX_BATCH entries each): on big detectors both shrink, so
#: memory stays bounded (with the history and the sums: about 100 bytes per pixel per level).
_QUEUE_BYTES = 2**29
_MAX_BATCH = 32
#: Entries a level above 0 collects before the compiled correlator runs it, at most (no
#: Python runs between its levels, so small batches cost little; its queues take less memory).
_COMPILED_BATCH = 8
#: Blocks per worker thread, at most, of the compiled correlator: 16 blocks took 0.45-0.47 s
#: at 2000 x 512^2 on 2 cores where 32 took 0.54-0.58 s (fewer calls to dispatch and plan).
_COMPILED_BLOCKS_PER_THREAD = 8
#: The compiled correlator takes every pixel of the frames, the unused ones left out of the
#: bins, when at least this fraction is used (memory grows by at most 1 / this).
_GATHER_BELOW = 0.75
#: Frames per call of the compiled correlator, at most, and the bytes of float32 a piece may
#: hold. Each call moves every level's history and G of each tile of pixels through the cache
#: once, so long pieces pay less for that: one thread at 2000 x 256^2 took 0.146 s in pieces of
#: 128 frames, 0.099 s in 512, 0.076 s in 1024, 0.070 s in 2048.
_COMPILED_PIECE = 1024
_COMPILED_PIECE_BYTES = 2**28
#: Chunks of frames in memory (views, memory maps) hold a whole piece up to this size.
_PIECE_CHUNK_BYTES = 2**27
#: Frames a fed chunk needs to be correlated where it is, as a piece of its own (shorter
#: ones are collected into pieces first).
_IN_PLACE = 64
#: Frames per call, at most, when the frames are read into buffers (uncompressed HDF5): new
#: memory (1.5-2 us per 4 KiB page to touch first here) costs a process's first analysis more
#: than long pieces save. The whole ``speckle xpcs`` of 2000 x 512^2: 1.19-1.23 s in pieces of
#: 128 frames read as chunks of one piece, against 1.31-1.61 s in pieces of 256 collected from
#: chunks of 16 MB and 1.2-1.6 s with pieces of 1024 and chunks of 128 MB; 3000 x 256^2:
#: 0.52-0.53 s in pieces of 128 (one chunk each), 0.54-0.55 s in 256 or 64, 0.71-0.77 s in 1024
#: with 128 MB chunks. Frames in memory keep pieces of _COMPILED_PIECE.
_BUFFERED_PIECE = 128


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
    depend on that scale, which is divided out at the end (:meth:`_Block.finish`,
    :meth:`_BinSums.of`).

    The sum of all entries (for IP and IF) is not accumulated level by level: every entry of
    level ``l`` except a trailing unpaired one is in exactly one pair sum, so it is the sum of
    level ``l+1`` plus the pair sums that an excluded partner dropped (``dropped``) plus the
    unpaired entry; only the top level, which has a handful of entries, sums them itself.
    """

    def __init__(self, level, lags, buffers, n_pixels, xp, capacity=0, top=False, kernels=None,
                 views=None):
        self.level = level
        self.lags = lags
        self.buffers = buffers
        self.xp = xp
        self.top = top
        self.kernels = kernels
        n_lags = len(lags)
        if views is None:
            self.G = xp.zeros((n_lags, n_pixels), np.float64)
            self.head = xp.empty((buffers, n_pixels), np.float32)  # the first entries
            self.buf = xp.empty((buffers + capacity, n_pixels), np.float32)
        else:  # parts of a block's arrays (_CompiledBlock)
            self.G, self.head, self.buf = views
        # one process() call's products (the compiled path does not call process)
        self.acc = None if kernels else xp.empty((n_lags, n_pixels), np.float32)
        self.ip_drop = self.if_drop = None  # allocated at the first excluded frame
        self.dropped = None  # pair sums not passed up because of an excluded entry
        self.n_pairs = np.zeros(n_lags, np.int64)
        self.total = xp.zeros(n_pixels, np.float64) if top else None
        self.n_head = 0
        self.wbuf = np.empty(len(self.buf), np.float32)
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
        # pair sums for the next level, from the first entry not yet paired
        first = h - self.unpaired
        pairs = (h + n - first) // 2 if upper is not None else 0
        if pairs:
            vals, wts = upper.slot(pairs)
        acc = self.acc
        if pairs:
            xp.add(ext[first:first + 2 * pairs:2], ext[first + 1:first + 2 * pairs:2], out=vals)
        for i, k in enumerate(self.lags):
            lo, hi = max(h - k, 0), h + n - k
            if hi <= lo:
                acc[i] = 0
                continue
            a, b = ext[lo:hi], ext[lo + k:hi + k]
            _row_products(xp, a, b, acc[i])
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
        self.G += acc  # float32 products of up to a few hundred pairs, accumulated in float64
        if self.top:
            self.total += x.sum(0, dtype=np.float64)
        if self.n_head < self.buffers:
            add = min(self.buffers - self.n_head, n)
            self.head[self.n_head:self.n_head + add] = x[:add]
            self.n_head += add
        if pairs:
            np.multiply(ew[first:first + 2 * pairs:2], ew[first + 1:first + 2 * pairs:2], out=wts)
            zero = np.flatnonzero(wts == 0)
            if len(zero):
                zero = xp.asarray(zero)
                if self.dropped is None:
                    self.dropped = xp.zeros(vals.shape[1], np.float64)
                self.dropped += vals[zero].sum(0, dtype=np.float64)
                vals[zero] = 0
        self.unpaired = (h + n - first) - 2 * ((h + n - first) // 2)
        keep = min(self.buffers, h + n)
        self.buf[:keep] = ext[h + n - keep:]
        self.wbuf[:keep] = ew[h + n - keep:]
        self.h, self.q = keep, 0

    def entry_sum(self, upper_sum):
        """Sum of all entries of this level (float64), given that of the level above."""
        if self.top:
            return self.total
        total = upper_sum if self.dropped is None else upper_sum + self.dropped
        if self.unpaired:
            total = total + self.buf[self.h - 1]
        return total

    def pair_sums(self, total):
        """Return IP, IF (lags, P): per pixel, the sums of the first and of the second members
        of the pairs, in entry units; ``total`` is :meth:`entry_sum`."""
        xp = self.xp
        IP, IF = xp.empty(self.G.shape, np.float64), xp.empty(self.G.shape, np.float64)
        # a lag k has no pair for the last k entries as first members, nor the first k as second
        hist = self.buf[:self.h].astype(np.float64)
        last, first = xp.zeros_like(total), xp.zeros_like(total)  # of the last / first k entries
        summed = 0
        for i, k in enumerate(self.lags):
            for j in range(summed, k):
                last += hist[self.h - 1 - j]
                first += self.head[j]
            summed = k
            xp.subtract(total, last, out=IP[i])
            xp.subtract(total, first, out=IF[i])
        if self.ip_drop is not None:
            IP -= self.ip_drop
            IF -= self.if_drop
        return IP, IF


def _row_products(xp, a, b, out):
    """``out[p] = sum_t a[t, p] b[t, p]`` (float32): the lag products of the reference (and
    the GPU's) code."""
    if xp is np:
        np.einsum("tp,tp->p", a, b, out=out)
    else:
        out[...] = xp.einsum("tp,tp->p", a, b)


class _Block:
    """All levels of the correlator for one contiguous block of pixels.

    Level 0 waits until ``piece`` frames are queued (however few each fed chunk holds: big
    detectors' chunks hold a few frames), levels above until ``min_batch`` entries are, so that
    the per-call work stays large; the order of entries, and so the result, is unchanged.
    """

    def __init__(self, grid, n_pixels, xp, min_batch=16, piece=_SUB_FRAMES):
        # room for one fed piece at level 0 and a full queue above, so buffers never grow
        top = len(grid.per_level) - 1
        self.levels = [_Level(i, lags, grid.buffers, n_pixels, xp,
                              capacity=piece if i == 0 else min_batch + (piece >> i) + 2,
                              top=i == top)
                       for i, lags in enumerate(grid.per_level)]
        self.min_batch, self.piece = min_batch, piece

    def process(self, flush=False):
        """Run every level whose queue is long enough (all of them with ``flush``)."""
        for i, level in enumerate(self.levels):
            if level.q < (self.piece if i == 0 else self.min_batch) and not flush:
                return
            upper = self.levels[i + 1] if i + 1 < len(self.levels) else None
            level.process(upper)

    def finished_levels(self):
        """Flush the queues; yield ``(level, entry sum)`` (see :meth:`_Level.entry_sum`) for
        each level, from the top one down (each level's entry sum needs the next one's)."""
        self.process(flush=True)
        total = None
        for level in reversed(self.levels):
            total = level.entry_sum(total)
            yield level, total

    def finish(self):
        """Flush the queues; return G, IP, IF (n_tau, block pixels) in frame units."""
        parts = []
        for level, total in self.finished_levels():
            ip, if_ = level.pair_sums(total)
            scale = float(2 ** level.level)  # entries are sums of 2**level frames
            parts.append((level.G / scale**2, ip / scale, if_ / scale))
        return tuple(self.levels[0].xp.concatenate([p[j] for p in reversed(parts)])
                     for j in range(3))

    def bin_sums(self, bins):
        """Flush the queues; return the :class:`_BinSums` of this block's pixels ``bins``."""
        parts = [_BinSums.of_level(level, total, bins)
                 for level, total in self.finished_levels()]
        return _BinSums.stack(parts[::-1])


#: The statistics arguments of multitau_levels where none are gathered, by frame dtype.
_NO_STATISTICS = {name: (np.zeros(0, bool), 0.0, np.dtype(acc).type(0), np.zeros(0, acc),
                         np.zeros(0, np.int64), np.zeros(0, acc))
                  for name, acc in FRAME_SUM_TYPES.items() if name in CASCADE_FRAME_TYPES}


def _columns(frames, a: int, b: int, column: int, width: int) -> np.ndarray:
    """Columns ``column .. column + width`` of frames ``a:b`` of an array (a view) or of
    :class:`FrameRows` (a copy)."""
    if isinstance(frames, FrameRows):
        return frames[a:b].take(np.arange(column, column + width))
    return frames[a:b, column:column + width]


class _CompiledBlock(_Block):
    """The levels of one block of pixels run by one compiled call per piece of frames
    (:func:`speckle.xpcs.kernels.multitau_levels`), which takes each tile of pixels through
    every level while it is in the cache.

    The state is the reference's (:class:`_Level`: history, queues, sums, the first entries),
    so the same code finishes both and the per-pixel sums are the same: level 0 runs on every
    piece of at most ``piece`` frames (and on the frames that end the series), a level above
    when ``min_batch`` entries are queued, as in :class:`_Block`. What is the same for every
    pixel (which levels run, their history and queue lengths, pair counts, the weights of
    excluded entries) is worked out here and handed to the kernel as a plan. Frames are read
    where they are when a fed chunk holds a whole piece or at least :data:`_IN_PLACE` frames;
    shorter chunks are collected first (in their own dtype).
    """

    def __init__(self, grid, n_pixels, min_batch, piece, kernels):
        self.kernels = kernels
        self.min_batch, self.piece, self.n_pixels = min_batch, piece, n_pixels
        b = grid.buffers
        n_levels = len(grid.per_level)
        # level 0 keeps its history only: its new entries come from the frames; a level above
        # keeps fewer than min_batch entries queued behind it (it runs when it has more)
        rows = [b] + [b + min_batch] * (n_levels - 1)
        self.row = np.r_[0, np.cumsum(rows)[:-1]].astype(np.int64)
        lag_rows = np.r_[0, np.cumsum([len(lags) for lags in grid.per_level])].astype(np.int64)
        self._layout = (grid, rows, lag_rows)
        self.levels = None  # made with their memory by the block's first task (_allocate)
        self.plan = np.zeros((n_levels, len(PLAN_COLUMNS)), np.int64)
        columns = {name: j for j, name in enumerate(PLAN_COLUMNS)}
        self._col = columns
        self.plan[:, columns["row"]] = self.row
        self.plan[:, columns["first_lag"]] = [int(lags[0]) for lags in grid.per_level]
        self.plan[:, columns["n_lags"]] = [len(lags) for lags in grid.per_level]
        self.plan[:, columns["lag_row"]] = lag_rows[:-1]
        self.weights = np.zeros((n_levels, max(rows) + piece), np.float32)
        none = np.zeros((0, n_pixels))
        self.dropped, self.ip_drop, self.if_drop = none, none, none
        self.stage = self.stage_w = None
        self.staged = 0
        self.run_frames = 0  # frames the kernel has taken
        self.stats = None  # see gather_statistics

    def _allocate(self):
        """The levels and their memory (about 1 KB per pixel), made by the block's first task:
        the blocks map and clear theirs on every core at once."""
        if self.levels is not None:
            return
        grid, rows, lag_rows = self._layout
        b, n_levels, n_pixels = grid.buffers, len(grid.per_level), self.n_pixels
        # written before they are read (rows of queues never filled cost nothing)
        self.bufs = fresh_empty((sum(rows), n_pixels), np.float32, whole=False)
        self.heads = fresh_zeros((n_levels, b, n_pixels), np.float32, write=False)
        self.G = fresh_zeros((lag_rows[-1], n_pixels), np.float64)
        self.levels = [
            _Level(i, lags, b, n_pixels, np, top=i == n_levels - 1, kernels=self.kernels,
                   views=(self.G[lag_rows[i]:lag_rows[i + 1]], self.heads[i],
                          self.bufs[self.row[i]:self.row[i] + rows[i]]))
            for i, lags in enumerate(grid.per_level)]

    def feed(self, frames, column, w, last=False):
        """Correlate the next frames: columns ``column ..`` of ``frames`` (n, pixels), with
        weights ``w`` (n,), excluded frames' values ignored; ``last``: they end the series
        (read in place however few they are, instead of collected for a whole piece)."""
        self._allocate()
        n, start = len(frames), 0
        while start < n:
            if n - start >= min(self.piece, _IN_PLACE) or last:
                if self.staged:  # frames collected before: a shorter piece of their own
                    self._run(self.stage[:self.staged], self.stage_w[:self.staged])
                    self.staged = 0
                stop = min(start + self.piece, n)
                self._run(frames[start:stop], w[start:stop], column)
                start = stop
                continue
            take = min(self.piece - self.staged, n - start)
            self._stage(_columns(frames, start, start + take, column, self.n_pixels),
                        w[start:start + take])
            start += take
            if self.staged == self.piece:
                self._run(self.stage, self.stage_w)
                self.staged = 0

    def _read_directly(self, dtype):
        """Whether the kernel reads frames of ``dtype`` as they are (else: float32 first)."""
        return dtype.name in CASCADE_FRAME_TYPES and dtype.isnative

    def _stage(self, frames, w):
        """Keep frames until a piece is full (in their dtype while it stays the same)."""
        dtype = frames.dtype if self._read_directly(frames.dtype) else np.dtype(np.float32)
        if self.stage is None or (self.stage.dtype != dtype and self.staged == 0):
            self.stage = fresh_empty((self.piece, self.n_pixels), dtype)
            self.stage_w = np.empty(self.piece, np.float32)
        elif self.stage.dtype != dtype:  # mixed dtypes: keep them all as float32
            stage = fresh_empty((self.piece, self.n_pixels), np.float32)
            stage[:self.staged] = self.stage[:self.staged]
            self.stage = stage
        a, b = self.staged, self.staged + len(frames)
        np.copyto(self.stage[a:b], frames, casting="unsafe")
        self.stage_w[a:b] = w
        self.staged = b

    def process(self, flush=False):
        """Flush: run the frames collected and every level's queue."""
        self._allocate()
        if flush:
            self._run(self.stage[:self.staged] if self.staged else
                      np.zeros((0, self.n_pixels), np.float32),
                      self.stage_w[:self.staged] if self.staged else np.ones(0, np.float32),
                      flush=True)
            self.staged = 0

    def _run(self, frames, w, column=0, flush=False):
        """One call of the kernel for the columns ``column ..`` of ``frames`` (an array or
        :class:`FrameRows`), weights ``w``."""
        direct = self._read_directly(frames.dtype)
        if not direct or isinstance(frames, np.ndarray) and not frames.flags.c_contiguous:
            frames = np.ascontiguousarray(_columns(frames, 0, len(frames), column, self.n_pixels),
                                          frames.dtype if direct else np.float32)
            column = 0
        if isinstance(frames, FrameRows):
            buffer, starts = frames.buffer, frames.starts + column
        else:
            buffer = frames.reshape(-1)
            starts = np.arange(len(frames), dtype=np.int64) * frames.shape[1] + column
        w = np.ascontiguousarray(w, np.float32)
        if not w.all() and not len(self.dropped):  # the first excluded frame
            self.dropped = fresh_zeros((len(self.levels), self.n_pixels), np.float64)
            self.ip_drop = fresh_zeros(self.G.shape, np.float64)
            self.if_drop = fresh_zeros(self.G.shape, np.float64)
            lag_row = self.plan[:, self._col["lag_row"]]
            for i, level in enumerate(self.levels):
                rows = slice(lag_row[i], lag_row[i] + len(level.lags))
                level.dropped = self.dropped[i]
                level.ip_drop, level.if_drop = self.ip_drop[rows], self.if_drop[rows]
        self._plan(len(frames), w, flush)
        a, b = self.run_frames, self.run_frames + len(frames)
        if self.stats is not None and b > a:
            used, level, zero, sums, saturated, image = self.stats
            stats = (used, level, zero, sums[a:b], saturated[a:b], image)
        else:
            stats = _NO_STATISTICS[buffer.dtype.name]
        self.kernels.multitau_levels(buffer, starts, w, self.plan, self.weights, self.bufs,
                                     self.G, self.heads, self.levels[-1].total, self.dropped,
                                     self.ip_drop, self.if_drop, *stats)
        self.run_frames = b

    def _plan(self, n_in, w_in, flush):
        """Fill the plan and the entries' weights for one call of the kernel, and move the
        levels' state on as :meth:`_Level.process` does (the kernel reads only the plan)."""
        c, plan = self._col, self.plan
        for i, level in enumerate(self.levels):
            h, q = level.h, level.q
            n = q + n_in
            if h + n > self.weights.shape[1]:  # (the sizes above leave room: never so far)
                grown = np.zeros((len(self.levels), 2 * (h + n)), np.float32)
                grown[:, :self.weights.shape[1]] = self.weights
                self.weights = grown
            # level 0 runs on every call that brings frames (a piece, or the series' end)
            run = flush or (n_in > 0 if i == 0 else n >= self.min_batch)
            plan[i, c["run"]], plan[i, c["h"]], plan[i, c["q"]] = run, h, q
            plan[i, c["n_in"]], plan[i, c["pairs"]] = n_in, 0
            plan[i, c["n_head"]] = level.n_head
            ew = self.weights[i, :h + n]
            ew[:h + q] = level.wbuf[:h + q]
            ew[h + q:] = w_in
            if not run or n == 0:
                if n_in:  # queued behind the history: the level's rows hold min_batch more
                    level.wbuf[h + q:h + n] = w_in
                    level.q = n
                n_in, w_in = 0, w_in[:0]
                continue
            if ew.all():  # every pair (t - k, t) with t new counts
                level.n_pairs += np.maximum(h + n - level.lags - np.maximum(h - level.lags, 0), 0)
            else:
                for j, k in enumerate(level.lags):
                    lo, hi = max(h - k, 0), h + n - k
                    if hi > lo:
                        level.n_pairs[j] += int(np.count_nonzero(ew[lo:hi] * ew[lo + k:hi + k]))
            first = h - level.unpaired
            pairs = (h + n - first) // 2
            n_in = 0 if level.top else pairs
            plan[i, c["first"]], plan[i, c["pairs"]] = first, n_in
            w_in = ew[first:first + 2 * n_in:2] * ew[first + 1:first + 2 * n_in:2]
            level.n_head = min(level.buffers, level.n_head + n)
            level.unpaired = (h + n - first) - 2 * pairs
            keep = min(level.buffers, h + n)
            level.wbuf[:keep] = ew[h + n - keep:]
            level.h, level.q = keep, 0


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
        Worker threads on the CPU (numpy and the compiled kernels release the GIL); default:
        all cores.
    kernels : {"auto", "numba", "numpy"}, optional
        CPU kernels (see :mod:`speckle.xpcs.engine`); the GPU always runs the numpy code.
    max_piece : int
        Frames per call of the compiled kernels, at most (results do not depend on it).
    """

    def __init__(self, n_frames, n_pixels, buffers=8, xp=np, threads=None, kernels=None,
                 max_piece=_COMPILED_PIECE):
        self.grid = lag_grid(n_frames, buffers)
        self.n_frames = n_frames
        self.xp = xp
        self.fed = 0
        # the kernels load at their first call: the memory is allocated (and the caller's
        # reading starts) while numba starts
        compiled = DeferredKernels(kernels) if xp is np and use_compiled(kernels) else None
        if xp is np:
            wanted = threads or os.cpu_count() or 1
            n_blocks = max(1, min(-(-n_pixels // _PIXEL_BLOCK), _MAX_BLOCKS))
            if compiled is not None:  # one call takes a block through every level: fewer,
                n_blocks = min(n_blocks, _COMPILED_BLOCKS_PER_THREAD * wanted)  # bigger blocks
            self.threads = max(1, min(wanted, n_blocks))
        else:
            n_blocks, self.threads = 1, 1
        edges = np.linspace(0, n_pixels, n_blocks + 1).astype(int)
        self.slices = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
        row = 4 * max(n_pixels, 1)  # bytes of one float32 entry of every pixel
        self.piece = int(np.clip(_QUEUE_BYTES // 2 // row, 8, _SUB_FRAMES))
        min_batch = int(np.clip(_QUEUE_BYTES // 2 // (row * len(self.grid.per_level)), 2,
                                _MAX_BATCH))
        if compiled is not None:  # level 0 queues nothing: frames are read where they are
            self.piece = int(np.clip(_COMPILED_PIECE_BYTES // row, 8, max(8, max_piece)))
            batch = min(min_batch, _COMPILED_BATCH)
            self.blocks = [_CompiledBlock(self.grid, s.stop - s.start, batch, self.piece,
                                          compiled) for s in self.slices]
        else:
            piece = self.piece if xp is np else 1  # the GPU correlates each fed chunk at once
            self.blocks = [_Block(self.grid, s.stop - s.start, xp, min_batch, piece)
                           for s in self.slices]
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self._stats = None  # the FrameStatistics gathered (gather_statistics)

    def feed(self, frames, weights=None):
        """Correlate the next frames.

        Parameters
        ----------
        frames : array, (n, n_pixels), or FrameRows
            Next frames in time order (any real dtype; converted to float32 per block).
        weights : ndarray, (n,), optional
            1 for frames to use, 0 for excluded frames (their values are ignored).
        """
        n = len(frames)
        if isinstance(frames, FrameRows) and not isinstance(self.blocks[0], _CompiledBlock):
            frames = np.asarray(frames)  # the numpy code takes arrays
        if self.fed + n > self.n_frames:
            raise AnalysisError("more frames were fed than the correlator was made for")
        w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
        excluded = np.flatnonzero(w == 0)
        # on the CPU, pieces of a few frames keep a block's working set in the cache; each task
        # takes all pieces of its block, so that the block's state stays hot between them; a
        # piece may span several fed chunks
        step = self.piece if self.xp is np else max(n, 1)

        def run(i):
            block, cols = self.blocks[i], self.slices[i]
            if isinstance(block, _CompiledBlock):
                block.feed(frames, cols.start, w, last=self.fed + n == self.n_frames)
                return
            start = 0
            while start < n:
                stop = min(start + step - block.levels[0].q, n)  # fills a piece at most
                vals, wts = block.levels[0].slot(stop - start)
                src = frames[start:stop, cols]
                if self.xp is np:
                    np.copyto(vals, src, casting="unsafe")
                else:
                    vals[...] = self.xp.asarray(np.ascontiguousarray(src))
                wts[...] = w[start:stop]
                zero = excluded[(excluded >= start) & (excluded < stop)] - start
                if len(zero):
                    vals[self.xp.asarray(zero)] = 0
                block.process()
                start = stop

        self._run(run)
        self.fed += n

    def gather_statistics(self, stats: FrameStatistics, dtype) -> bool:
        """Gather ``stats`` while correlating, each frame's values read once, and return True;
        False (nothing changed: feed ``stats`` the frames yourself) unless the compiled kernels
        correlate every pixel of the frames, which come in a ``dtype`` they read as it is.

        Call :meth:`merge_statistics` once every frame is fed.
        """
        dtype = np.dtype(dtype)
        if not (isinstance(self.blocks[0], _CompiledBlock) and dtype.isnative
                and dtype.name in _NO_STATISTICS and stats.n_frames == self.n_frames
                and len(stats.used) == self.slices[-1].stop and self.fed == 0):
            return False
        acc = np.dtype(FRAME_SUM_TYPES[dtype.name])
        for block, cols in zip(self.blocks, self.slices, strict=True):
            block.stats = (np.ascontiguousarray(stats.used[cols]), stats.level, acc.type(0),
                           np.zeros(self.n_frames, acc), np.zeros(self.n_frames, np.int64),
                           np.zeros(cols.stop - cols.start, acc))
        self._stats = stats
        return True

    def merge_statistics(self) -> None:
        """Hand the statistics gathered (see :meth:`gather_statistics`) to their
        FrameStatistics: every frame's sums, every pixel's."""
        if self._stats is None:
            return
        parts = [block.stats for block in self.blocks]
        self._stats.add_sums(0, sum(p[3] for p in parts), sum(p[4] for p in parts))
        image = self._stats.sum_image.reshape(-1)
        for part, cols in zip(parts, self.slices, strict=True):
            image[cols] += part[5]
        self._stats = None

    def _run(self, task):
        """Run ``task(block_index)`` for every pixel block, on the thread pool when there is one;
        return the results in block order."""
        if self._pool is None:
            return [task(i) for i in range(len(self.blocks))]
        return list(self._pool.map(task, range(len(self.blocks))))

    def _finish(self, task):
        """Run ``task(block_index)`` once all frames are in, on every block; close the pool."""
        if self.fed != self.n_frames:
            raise AnalysisError(
                f"the correlator expected {self.n_frames} frames and received {self.fed}")
        try:
            return self._run(task)
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    def _pair_counts(self):
        return np.concatenate([level.n_pairs for level in self.blocks[0].levels])

    def result(self):
        """Return per-pixel sums ``G, IP, IF`` (n_tau, n_pixels) and pair counts (n_tau,).

        Divide each by the pair count for the means of the module docstring.
        """
        xp = self.xp
        n_tau, n_pixels = len(self.grid.tau_frames), self.slices[-1].stop
        G, IP, IF = (xp.empty((n_tau, n_pixels), np.float64) for _ in range(3))

        def place(i):
            cols = self.slices[i]
            G[:, cols], IP[:, cols], IF[:, cols] = self.blocks[i].finish()

        self._finish(place)
        return G, IP, IF, self._pair_counts()

    def g2(self, static_labels, static_to_dynamic):
        """Finish and return g2 per dynamic bin (see :func:`normalize_symmetric`).

        Each pixel block is binned where it was correlated (on the worker threads), level by
        level, so the per-pixel sums of all lags and pixels never exist at once.

        Parameters
        ----------
        static_labels : ndarray of int, (n_pixels,)
            Static bin (1-based) of each pixel; 0 leaves a pixel out.
        static_to_dynamic : ndarray of int, (n_static,)
            Dynamic bin (1-based) of each static bin.

        Returns
        -------
        g2, g2_err : ndarray, (n_tau, n_dynamic)
        n_pairs : ndarray, (n_tau,)
        """
        labels = np.asarray(static_labels, np.int64)
        parts = self._finish(lambda i: self.blocks[i].bin_sums(
            _Bins(labels[self.slices[i]], static_to_dynamic)))
        total = parts[0]
        for part in parts[1:]:
            total.add(part)
        n_pairs = self._pair_counts()
        g2, err = total.g2(n_pairs.astype(np.float64)[:, None], static_to_dynamic)
        return g2, err, n_pairs


class _Segments:
    """Sums of columns by label, without gathering the columns.

    Labels of real partitions come in runs along the pixel order (a ring crosses each detector
    row in one or two runs), so the columns are first summed run by run in place, and only the
    much smaller table of run sums is sorted by label.
    """

    def __init__(self, labels, n_labels):
        self.n_labels = n_labels
        labels = labels if len(labels) else np.zeros(1, np.int64)
        self.starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        run_labels = labels[self.starts]
        self.order = np.argsort(run_labels, kind="stable")
        sorted_labels = run_labels[self.order]
        self.label_starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        self.labels = sorted_labels[self.label_starts]

    def sum(self, a):
        """(rows, n_labels) sums of the columns of ``a`` (rows, n_pixels) with each label."""
        out = np.zeros((a.shape[0], self.n_labels))
        if a.shape[1]:
            runs = np.add.reduceat(a, self.starts, axis=1)
            out[:, self.labels] = np.add.reduceat(runs[:, self.order], self.label_starts, axis=1)
        return out


class _Bins:
    """Static and dynamic bin of each pixel of a set (0: left out), and their runs."""

    def __init__(self, static_labels, static_to_dynamic):
        s2d = np.r_[0, np.asarray(static_to_dynamic, np.int64)]
        s = np.asarray(static_labels, np.int64)
        self.dynamic = s2d[s]
        s = self.static = np.where(self.dynamic > 0, s, 0)
        n_d = int(s2d.max()) + 1
        self.by_static, self.by_dynamic = _Segments(s, len(s2d)), _Segments(self.dynamic, n_d)
        self.count_s = np.bincount(s, minlength=len(s2d)).astype(np.float64)
        self.count_d = np.bincount(self.dynamic, minlength=n_d).astype(np.float64)


@dataclass
class _BinSums:
    """Per-bin sums over a set of pixels; sums over disjoint sets add up.

    Per static bin: pixel count and the sums of G, IP, IF; per dynamic bin: pixel count, and
    the number, sum and sum of squares of the finite per-pixel ``g2_p = n G / (IP IF)``.
    Columns are bin numbers (column 0, the unused label, stays empty).
    """

    count_s: np.ndarray
    G: np.ndarray
    IP: np.ndarray
    IF: np.ndarray
    count_d: np.ndarray
    k: np.ndarray
    m1: np.ndarray
    m2: np.ndarray

    @classmethod
    def of_level(cls, level, total, bins):
        """The sums over the pixels ``bins`` of one finished :class:`_Level` whose entry sum is
        ``total``: by the compiled kernel, which makes IP and IF pixel by pixel as it bins
        them, where there are kernels and every lag has its entries; else by
        :meth:`_Level.pair_sums` and :meth:`of`."""
        scale = float(2 ** level.level)  # entries are sums of 2**level frames
        n = level.n_pairs.astype(np.float64)
        kernels = level.kernels
        if kernels is None or int(level.lags[-1]) > min(level.h, level.n_head):
            ip, if_ = level.pair_sums(total)
            return cls.of(asnumpy(level.G), asnumpy(ip), asnumpy(if_), n[:, None], bins, scale)
        per_s = np.zeros((3, len(level.G), len(bins.count_s)))
        per_d = np.zeros((3, len(level.G), len(bins.count_d)))
        none = np.zeros((0, 0))
        kernels.bin_sums(level.G, total, level.buf[:level.h], level.head,
                         np.ascontiguousarray(level.lags, np.int64),
                         none if level.ip_drop is None else level.ip_drop,
                         none if level.if_drop is None else level.if_drop,
                         n, bins.static, bins.dynamic, per_s, per_d)
        return cls(bins.count_s, per_s[0] / scale**2, per_s[1] / scale, per_s[2] / scale,
                   bins.count_d, per_d[0], per_d[1], per_d[2])

    @classmethod
    def of(cls, G, IP, IF, n, bins, scale=1.0):
        """Sums over the pixels (columns) of G, IP, IF (n_tau, n_pixels) whose bins are ``bins``
        (:class:`_Bins`); n: pairs (n_tau, 1). G, IP and IF may be in units of ``scale`` frames:
        the sums are returned in frame units (g2_p does not depend on the unit)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            gp = IP * IF
            np.divide(G, gp, out=gp)
        gp *= n
        lag, pixel = np.divmod(np.flatnonzero(~np.isfinite(gp)), gp.shape[1])  # no counts
        gp[lag, pixel] = 0.0
        n_d = len(bins.count_d)
        no_counts = np.bincount(lag * n_d + bins.dynamic[pixel], minlength=len(gp) * n_d)
        m1 = bins.by_dynamic.sum(gp)
        gp *= gp
        return cls(bins.count_s, bins.by_static.sum(G) / scale**2,
                   bins.by_static.sum(IP) / scale, bins.by_static.sum(IF) / scale,
                   bins.count_d, bins.count_d - no_counts.reshape(-1, n_d), m1,
                   bins.by_dynamic.sum(gp))

    @classmethod
    def stack(cls, parts):
        """Join the sums of consecutive lags over the same pixels."""
        per_lag = ("G", "IP", "IF", "k", "m1", "m2")
        joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in per_lag}
        return cls(count_s=parts[0].count_s.copy(), count_d=parts[0].count_d.copy(), **joined)

    def add(self, other):
        """Add the sums of a disjoint set of pixels."""
        for field in fields(self):
            mine = getattr(self, field.name)
            mine += getattr(other, field.name)

    def g2(self, n, static_to_dynamic):
        """g2 and its error per dynamic bin (1..n_dynamic), n: pairs per lag (n_tau, 1)."""
        s2d = np.r_[0, np.asarray(static_to_dynamic, np.int64)]
        n_d = len(self.count_d) - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            # static bins: <G>_s / (<IP>_s <IF>_s) with the means over the pairs (factor n)
            g_static = n * self.count_s * self.G / (self.IP * self.IF)
            ok = np.isfinite(g_static) & (self.count_s > 0) & (s2d > 0)
            # dynamic bins: unweighted mean of their static bins' g2
            by_d = _Segments(s2d, n_d + 1)
            num, den = by_d.sum(np.where(ok, g_static, 0.0)), by_d.sum(ok.astype(np.float64))
            g2 = np.where(den > 0, num / np.maximum(den, 1), np.nan)[:, 1:]
            # error: sample standard deviation of the per-pixel g2 over the bin / sqrt(pixels)
            k = self.k
            m1 = self.m1 / np.maximum(k, 1)
            m2 = self.m2 / np.maximum(k, 1)
            std = np.sqrt(np.maximum(m2 - m1**2, 0) * k / np.maximum(k - 1, 1))  # ddof=1
            err = np.where(k > 0, std / np.sqrt(self.count_d), np.nan)[:, 1:]
        return g2, err


def normalize_symmetric(G, IP, IF, n_pairs, static_labels, static_to_dynamic):
    """Turn per-pixel sums into g2 per dynamic bin (APS symmetric normalisation).

    Parameters
    ----------
    G, IP, IF : array, (n_tau, n_pixels)
        Per-pixel sums over pairs (see :meth:`MultiTauCorrelator.result`).
    n_pairs : ndarray, (n_tau,)
        Number of pairs per lag.
    static_labels : ndarray of int, (n_pixels,)
        Static bin (1-based) of each pixel; 0 leaves a pixel out.
    static_to_dynamic : ndarray of int, (n_static,)
        Dynamic bin (1-based) of each static bin; 0 for empty static bins.

    Returns
    -------
    g2, g2_err : ndarray, (n_tau, n_dynamic)
        NaN where a lag has no pair or a bin has no counts.
    """
    n = np.asarray(n_pairs, np.float64)[:, None]
    sums = _BinSums.of(asnumpy(G), asnumpy(IP), asnumpy(IF), n,
                       _Bins(static_labels, static_to_dynamic))
    return sums.g2(n, static_to_dynamic)


def multitau_g2(data, partition: Partition, *, buffers: int = 8, chunk_frames: int | None = None,
                exclude_frames=None, normalize_frames: bool = False, device: str = "auto",
                threads: int | None = None, progress: Callable | None = None,
                cancel: Callable | None = None, consumers: tuple = (),
                keep_pixels: Callable | None = None, kernels: str | None = None) -> MultiTauG2:
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
        statistics come from the same pass; the compiled kernels gather a
        :class:`~speckle.xpcs.statistics.FrameStatistics` among them themselves where they
        read the frames as they are (:meth:`MultiTauCorrelator.gather_statistics`).
    keep_pixels : callable, optional
        Called after the pass; returns a boolean (rows, cols) map of the pixels to keep in the
        normalisation (for masks that depend on the pass's statistics, such as dead pixels).
    kernels : {"auto", "numba", "numpy"}, optional
        CPU kernels (see :mod:`speckle.xpcs.engine`); results agree to float precision.

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
    if (xp is np and not normalize_frames and use_compiled(kernels)
            and len(pixels) >= _GATHER_BELOW * mask.size):
        # correlating the few unused pixels too (their bin is 0: left out) costs less than
        # gathering the used ones out of every chunk (np.take: 50 ms per 64 MB chunk)
        pixels = np.arange(mask.size)
    corr = MultiTauCorrelator(ds.n_frames, len(pixels), buffers, xp=xp, threads=threads,
                              kernels=kernels,
                              max_piece=_BUFFERED_PIECE if ds.reads_in_place else _COMPILED_PIECE)
    compiled = isinstance(corr.blocks[0], _CompiledBlock)
    gathered = next((c for c in consumers if isinstance(c, FrameStatistics) and
                     not normalize_frames and corr.gather_statistics(c, ds.dtype)), None)
    consumers = tuple(c for c in consumers if c is not gathered)
    if chunk_frames is None and compiled:
        # whole pieces are correlated where they were read; smaller chunks are collected first
        chunk_frames = max(ds.default_chunk_frames(),
                           min(corr.piece, ds.default_chunk_frames(_PIECE_CHUNK_BYTES)))
    for start, flat, w in stream_frames(ds, pixels, weights, chunk_frames=chunk_frames,
                                        normalize=normalize_frames, progress=progress,
                                        cancel=cancel, consumers=consumers, rows=compiled):
        corr.feed(flat, w)
    corr.merge_statistics()
    static = partition.static_map.ravel()[pixels]  # 0 on unused pixels
    if keep_pixels is not None:
        keep = np.asarray(keep_pixels(), bool).ravel()[pixels]
        static = np.where(keep, static, 0)
    g2, err, n_pairs = corr.g2(static, partition.static_to_dynamic())
    return MultiTauG2(corr.grid.tau_frames.copy(), g2, err, n_pairs)
