"""Two-time correlation per dynamic bin, and g2 from it (for ageing or damaged samples).

For the pixels ``p`` of one dynamic bin and frames (or groups of ``bin_frames`` frames) t1, t2::

    C(t1, t2) = <I_p(t1) I_p(t2)>_p / (<I_p(t1)>_p <I_p(t2)>_p)

computed as one symmetric matrix product per bin. The time series of the used pixels is held in
memory when it fits ``memory_limit``; otherwise the map is built block by block, reading each
pair of time blocks from the dataset again, so memory stays bounded.

Integer counts (frames of up to 16 bits, summed over ``bin_frames``: the map does not change
when every value is scaled, so sums serve as well as means) are multiplied exactly by a
compiled kernel on the CPU (:mod:`.pair_kernels`), bin by bin as their values allow: 0-127 as
bytes where the CPU has VNNI (four times float32's multiply-add rate), up to 8191 as int16
(twice); anything else, and the GPU, takes the float32 matrix product, the reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import asnumpy, get_xp
from ..errors import Cancelled, InvalidInputError
from ..memory import fresh_empty, fresh_zeros
from .engine import compiled_kernels
from .passes import as_dataset, check_partition
from .partitions import Partition

__all__ = ["EXACT_MAX_VALUE", "choose_bin_frames", "g2_from_twotime", "twotime_maps"]

#: Largest two-time map side used when ``bin_frames`` is chosen automatically.
DEFAULT_MAX_SIZE = 2048


def choose_bin_frames(n_frames: int, max_size: int = DEFAULT_MAX_SIZE) -> int:
    """Smallest number of frames to average so that the map has at most ``max_size`` steps."""
    return max(1, -(-n_frames // max_size))


#: Words (two int16 products each) that the exact kernel's int32 sums hold at least, at the
#: largest value it takes (fewer words per group would make it slow).
_MIN_PAIR_WORDS = 16
#: Largest magnitude of the values multiplied exactly (8191): larger ones take float32.
EXACT_MAX_VALUE = int(np.sqrt((2**31 - 1) / (2 * _MIN_PAIR_WORDS)))


def _storage_dtype(dtype, bin_frames: int) -> np.dtype:
    """Integers of up to 16 bits are held as they are when frames are not binned (half the
    memory), as int32 sums of ``bin_frames`` frames when they are (exact); anything else as
    float32 means."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui" and dtype.itemsize <= 2:
        return dtype if bin_frames == 1 else np.dtype(np.int32)
    return np.dtype(np.float32)


def _bin_columns(dyn: np.ndarray, bins) -> tuple[np.ndarray, dict[int, slice], np.ndarray]:
    """Where the pixels of each bin go in the arrays of :func:`_binned_pixels`.

    Each bin is a contiguous run of columns (a view, no copy) starting at an even column, with
    one spare column after it when it has an odd number of pixels (so that its values pair up
    as int16 in int32 words for :mod:`.pair_kernels`; the spare columns hold 0).

    Returns
    -------
    take : ndarray of int
        The pixel (flat index) read into each column (a spare column repeats the one before).
    columns : dict
        Bin -> slice of its pixels' columns.
    spare : ndarray of int
        The spare columns.
    """
    pixels = np.flatnonzero(np.isin(dyn, bins))
    pixels = pixels[np.argsort(dyn[pixels], kind="stable")]
    labels = dyn[pixels]
    take, columns, spare, at = [], {}, [], 0
    for b in dict.fromkeys(bins):
        own = pixels[slice(*np.searchsorted(labels, [b, b + 1]))]
        columns[b] = slice(at, at + len(own))
        take.append(own)
        at += len(own)
        if len(own) % 2:
            take.append(own[-1:])
            spare.append(at)
            at += 1
    take = np.concatenate(take) if take else np.zeros(0, np.intp)
    return take, columns, np.array(spare, np.intp)


def _bin_chunk(flat, target, take, bin_frames, whole_frame):
    """Frames ``flat`` (frames, pixels) binned into ``target`` at the pixels ``take``."""
    n = len(target)
    if bin_frames > 1:
        part = flat if whole_frame else np.take(flat, take, axis=1)
        binned = part.reshape(n, bin_frames, -1)
        if target.dtype.kind == "f":
            binned.mean(axis=1, dtype=np.float32, out=target)
        else:
            binned.sum(axis=1, dtype=target.dtype, out=target)
    elif whole_frame:
        target[:] = flat
    elif flat.dtype == target.dtype:
        np.take(flat, take, axis=1, out=target)  # far faster than flat[:, take]
    else:
        target[:] = np.take(flat, take, axis=1)


def _binned_pixels(ds, take, spare, start, stop, bin_frames, chunk_frames, cancel, rows=0,
                   pool=None, threads=1):
    """Frames ``start:stop`` binned in groups of ``bin_frames``, at the pixels ``take``: one
    (steps, len(take)) array in :func:`_storage_dtype` (means, or integer sums), ``spare``
    columns set to 0; it has at least ``rows`` rows, those past the steps also 0. With a
    ``pool`` each chunk is shared by ``threads`` threads (numpy's gathers release the GIL)."""
    n_out = (stop - start) // bin_frames
    out = fresh_zeros((max(n_out, rows), len(take)), _storage_dtype(ds.dtype, bin_frames),
                      write=False)
    stop = start + n_out * bin_frames
    chunk_frames = chunk_frames or ds.default_chunk_frames()
    chunk_frames = max(bin_frames, chunk_frames // bin_frames * bin_frames)
    whole_frame = np.array_equal(take, np.arange(ds.frame_shape[0] * ds.frame_shape[1]))
    for first, chunk in ds.iter_chunks(chunk_frames, start, stop, prefetch=True, reuse=True):
        if cancel is not None and cancel():
            raise Cancelled("the analysis was cancelled")
        flat = chunk.reshape(len(chunk), -1)
        n = len(flat) // bin_frames
        i0 = (first - start) // bin_frames
        parts = np.linspace(0, n, min(n, threads) + 1).astype(int) if pool else [0, n]
        tasks = [(flat[a * bin_frames:b * bin_frames], out[i0 + a:i0 + b], take, bin_frames,
                  whole_frame) for a, b in zip(parts[:-1], parts[1:], strict=True) if b > a]
        if len(tasks) > 1:
            for future in [pool.submit(_bin_chunk, *task) for task in tasks]:
                future.result()
        else:
            for task in tasks:
                _bin_chunk(*task)
    if len(spare):
        out[:, spare] = 0
    return out


def _column_ranges(values: np.ndarray) -> np.ndarray:
    """(2, columns) int64: the smallest and largest value of each column of an integer array
    (one pass row by row; 0 without rows)."""
    if len(values) == 0:
        return np.zeros((2, values.shape[1]), np.int64)
    high = values.max(axis=0)
    low = values.min(axis=0) if values.dtype.kind == "i" else np.zeros_like(high)
    return np.stack([low, high]).astype(np.int64)


class _Scratch:
    """Work memory reused from bin to bin on the CPU (fresh memory costs 0.5-2 s per GB to
    touch first on some machines; each bin would otherwise take its own)."""

    def __init__(self):
        self._flat = {}

    def get(self, name, shape, dtype=np.float32):
        """A C-contiguous array of ``shape`` and ``dtype`` over the memory kept under
        ``name``."""
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(self._flat.get(name, ())) < size:
            self._flat[name] = fresh_empty(size, np.uint8, whole=False)
        return self._flat[name][:size].view(dtype).reshape(shape)


def _as_float32(xp, block, out=None):
    """A contiguous float32 copy of a (strided) block on the compute device (into ``out`` on
    the CPU when given); the cast happens after the transfer, so integer frames cross the bus
    at their own size."""
    if xp is np:
        if out is None:
            return np.ascontiguousarray(block, dtype=np.float32)
        np.copyto(out, block, casting="unsafe")
        return out
    return xp.asarray(np.ascontiguousarray(block)).astype(xp.float32, copy=False)


def _normalised_product(xp, a, b, same, scratch=None):
    """``<a b>_p / (<a>_p <b>_p)`` for two (time, pixels) blocks of one bin, in float32
    (``scratch``: a :class:`_Scratch` for the CPU's work memory)."""
    work = (lambda name, shape: None) if scratch is None or xp is not np else scratch.get
    a = _as_float32(xp, a, work("a", a.shape))
    b = a if same else _as_float32(xp, b, work("b", b.shape))
    prod = a @ a.T if same else a @ b.T  # a @ a.T runs as a symmetric rank-k update
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    scale = work("scale", prod.shape)
    scale = xp.outer(ma, mb) if scale is None else np.multiply.outer(ma, mb, out=scale)
    scale *= a.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        prod /= scale
    return asnumpy(prod)


class _ExactProducts:
    """The two-time map of integer counts up to :data:`EXACT_MAX_VALUE` in magnitude with the
    compiled kernel (:func:`speckle.xpcs.pair_kernels.pair_products`) on every core: the same
    map as :func:`_normalised_product`'s, from exact sums. Counts of 0-127 are multiplied as
    bytes where the CPU has VNNI (copied to bytes first), others as int16 (16-bit values read
    where they lie in the arrays of :func:`_binned_pixels`, others copied first)."""

    #: Time steps per panel of the kernel (a multiple of its PAIR_COLUMNS).
    width = 128

    def __init__(self, pairs, pool: ThreadPoolExecutor | None, threads: int):
        self.pairs = pairs
        self.pool = pool
        self.threads = threads if pool else 1
        self.scratch = _Scratch()

    def reserve(self, rows: int, widest: int, same: bool):
        """Take the work memory of the largest bin at once (each bin would otherwise grow it
        and touch fresh memory again)."""
        rows = -(-rows // self.pairs.PAIR_ROWS) * self.pairs.PAIR_ROWS
        for name in ("a",) if same else ("a", "b"):
            self.scratch.get(name, (rows, widest + 3), np.int16)
        self.scratch.get("sums", (rows, -(-rows // self.width) * self.width), np.int32)

    def _words(self, name, values, cols, lanes):
        """The int32 words holding the values of columns ``cols`` of ``values`` (all its rows),
        ``lanes`` to a word (2: int16; 4: bytes), and the first of them."""
        if lanes == 2 and values.dtype.itemsize == 2 and cols.start % 2 == 0:
            return values.view(np.int32), cols.start // 2
        n = cols.stop - cols.start
        dtype = np.int16 if lanes == 2 else np.uint8
        held = self.scratch.get(name, (len(values), -(-n // lanes) * lanes), dtype)
        np.copyto(held[:, :n], values[:, cols], casting="unsafe")
        held[:, n:] = 0
        return held.view(np.int32), 0

    def _shares(self, n_panels: int, rows: int, same: bool) -> list[np.ndarray]:
        """The column panels of each thread, balanced by their work (with ``same`` a panel
        covers the rows up to its own end only)."""
        width = self.width
        work = [min((p + 1) * width, rows) if same else rows for p in range(n_panels)]
        shares = [[] for _ in range(self.threads)]
        load = [0] * self.threads
        for p in sorted(range(n_panels), key=work.__getitem__, reverse=True):
            t = load.index(min(load))
            shares[t].append(p)
            load[t] += work[p]
        return [np.array(sorted(s), np.int64) for s in shares if s]

    def _run(self, task, shares):
        if self.pool is None or len(shares) == 1:
            for share in shares:
                task(share)
        else:
            for future in [self.pool.submit(task, share) for share in shares]:
                future.result()

    def product(self, a, b, ta, tb, cols, same: bool, low: int, high: int) -> np.ndarray:
        """``<a b>_p / (<a>_p <b>_p)`` (float32, (ta, tb)) of the columns ``cols`` of the first
        ``ta`` / ``tb`` rows of two integer arrays of :func:`_binned_pixels` whose values lie
        in ``low .. high``; ``a`` has ``ta`` rounded up to PAIR_ROWS rows."""
        pairs = self.pairs
        n = cols.stop - cols.start
        lanes = 4 if pairs.BYTE_PRODUCTS and 0 <= low and high <= 127 else 2
        a32, w0 = self._words("a", a, cols, lanes)
        b32 = a32 if same else self._words("b", b, cols, lanes)[0]
        words = -(-n // lanes)
        sa, sb = np.empty(ta), np.empty(tb)
        pairs.row_sums(a32, w0, words, ta, lanes, sa)
        if same:
            sb = sa
        else:
            pairs.row_sums(b32, w0, words, tb, lanes, sb)
        largest = max(high, -low)
        n_panels = -(-tb // self.width)
        rows = -(-ta // pairs.PAIR_ROWS) * pairs.PAIR_ROWS
        sums = self.scratch.get("sums", (rows, n_panels * self.width), np.int32)
        group = max(1, (2**31 - 1) // max(1, lanes * largest * largest))
        total = (self.scratch.get("total", sums.shape, np.int64) if words > group
                 else np.zeros((1, 1), np.int64))
        out = fresh_empty((ta, tb), np.float32, whole=False)  # written by every thread
        self._run(lambda panels: pairs.pair_products(a32, b32, lanes, w0, words, ta, tb, same,
                                                     group, self.width, panels, sums, total,
                                                     sa, sb, float(n), out),
                  self._shares(n_panels, ta, same))
        return out


def twotime_maps(data, partition: Partition, bins=None, *, bin_frames: int | None = None,
                 max_size: int = DEFAULT_MAX_SIZE, chunk_frames: int | None = None,
                 memory_limit: float = 2e9, device: str = "auto",
                 progress: Callable | None = None, cancel: Callable | None = None,
                 kernels: str | None = None,
                 threads: int | None = None) -> dict[int, np.ndarray]:
    """Two-time correlation maps.

    Parameters
    ----------
    data : Dataset or ndarray
        Frames (n_frames, rows, cols).
    partition : Partition
    bins : sequence of int, optional
        Dynamic bins (1-based) to compute; default all.
    bin_frames : int, optional
        Frames averaged into one time step; default the smallest that keeps the map at most
        ``max_size`` steps wide.
    max_size : int
        See ``bin_frames``.
    chunk_frames : int, optional
        Frames read per chunk.
    memory_limit : float
        Bytes the used pixels' time series may occupy before the blocked (multi-pass) method is
        used (integer frames of up to 16 bits count at their own size when not averaged,
        anything else as float32).
    device : {"auto", "cpu", "gpu"}
    progress, cancel : callable, optional
        ``progress(done, total)`` and ``cancel() -> bool``, as in :func:`multitau_g2`.
    kernels : {"auto", "numba", "numpy"}, optional
        CPU kernels (see :mod:`speckle.xpcs.engine`): with the compiled ones, integer counts
        up to :data:`EXACT_MAX_VALUE` are multiplied exactly (as bytes or int16); otherwise
        (and on the GPU) in float32.
    threads : int, optional
        Threads reading and multiplying on the CPU; default: all cores.

    Returns
    -------
    dict
        Dynamic bin (1-based) -> (steps, steps) float32 map; C(t1, t2) with t in units of
        ``bin_frames`` frames. Returned maps carry no NaN unless a time step has no counts.
    """
    ds = as_dataset(data)
    xp = get_xp(device)
    check_partition(partition, ds)
    bins = list(range(1, partition.n_dynamic + 1)) if bins is None else [int(b) for b in bins]
    for b in bins:
        if not 1 <= b <= partition.n_dynamic:
            raise InvalidInputError(f"there is no dynamic bin {b} (1..{partition.n_dynamic})")
    bin_frames = bin_frames or choose_bin_frames(ds.n_frames, max_size)
    steps = ds.n_frames // bin_frames
    if steps < 2:
        raise InvalidInputError(
            f"two-time needs at least 2 time steps; {ds.n_frames} frames binned by {bin_frames}")
    take, columns, spare = _bin_columns(partition.dynamic_map.ravel(), bins)
    maps = {}

    storage = _storage_dtype(ds.dtype, bin_frames)
    block = steps if steps * len(take) * storage.itemsize <= memory_limit else max(
        1, int(memory_limit / 2 / (storage.itemsize * len(take))))
    edges = list(range(0, steps, block)) + [steps]
    n_tasks = (len(edges) - 1) * len(edges) // 2
    done = 0
    scratch = _Scratch()
    threads = threads or os.cpu_count() or 1
    pool = ThreadPoolExecutor(threads) if xp is np and threads > 1 else None
    pairs = (compiled_kernels(kernels, "pair_kernels")
             if xp is np and storage.kind in "ui" else None)
    exact = _ExactProducts(pairs, pool, threads) if pairs else None
    if exact is not None:
        widest = max(cols.stop - cols.start for cols in columns.values())
        exact.reserve(block, widest, same=len(edges) == 2)
    rows = 0 if exact is None else pairs.PAIR_ROWS  # spare rows for the kernel's row blocks

    def read(e):
        first, stop = edges[e] * bin_frames, edges[e + 1] * bin_frames
        n = edges[e + 1] - edges[e]
        return _binned_pixels(ds, take, spare, first, stop, bin_frames, chunk_frames, cancel,
                              rows=-(-n // rows) * rows if rows else 0, pool=pool,
                              threads=threads)

    try:
        for i in range(len(edges) - 1):
            a = read(i)
            ta = edges[i + 1] - edges[i]
            ranges_a = _column_ranges(a[:ta]) if exact else None
            for j in range(i, len(edges) - 1):
                same = i == j
                b = a if same else read(j)
                tb = edges[j + 1] - edges[j]
                ranges = ranges_a
                if exact and not same:
                    ranges_b = _column_ranges(b[:tb])
                    ranges = np.stack([np.minimum(ranges_a[0], ranges_b[0]),
                                       np.maximum(ranges_a[1], ranges_b[1])])
                for k, cols in columns.items():
                    # per bin: a hot pixel sends only its own bin to the float32 product
                    low, high = 0, 0
                    if exact and cols.stop > cols.start:
                        low, high = int(ranges[0, cols].min()), int(ranges[1, cols].max())
                    if exact and max(high, -low) <= EXACT_MAX_VALUE:
                        c = exact.product(a, b, ta, tb, cols, same, low, high)
                    else:
                        c = _normalised_product(xp, a[:ta, cols], b[:tb, cols], same, scratch)
                    if len(edges) == 2:  # one block: the whole (symmetric) map at once
                        maps[k] = c
                        continue
                    m = maps.setdefault(k, np.empty((steps, steps), np.float32))
                    m[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = c
                    m[edges[j]:edges[j + 1], edges[i]:edges[i + 1]] = c.T
                done += 1
                if progress is not None:
                    progress(done, n_tasks)
    finally:
        if pool is not None:
            pool.shutdown()
    return maps


def g2_from_twotime(c2: np.ndarray, t_range: tuple[int, int] | None = None):
    """Average a two-time map along its diagonals: g2 at lags 1..steps-1.

    Parameters
    ----------
    c2 : ndarray, (steps, steps)
    t_range : (start, stop), optional
        Only pairs whose earlier time lies in ``start:stop`` (age-resolved g2).

    Returns
    -------
    lags : ndarray of int
        In units of the map's time step.
    g2, g2_err : ndarray
        Mean and standard error of the diagonal.
    """
    steps = c2.shape[0]
    start, stop = (0, steps) if t_range is None else t_range
    lags = np.arange(1, steps)
    g2 = np.full(len(lags), np.nan)
    err = np.full(len(lags), np.nan)
    for i, k in enumerate(lags):
        d = np.diagonal(c2, k)[start:max(start, min(stop, steps - k))]
        d = d[np.isfinite(d)]
        if len(d):
            g2[i] = d.mean()
            err[i] = d.std() / np.sqrt(len(d)) if len(d) > 1 else np.nan
    return lags, g2, err
