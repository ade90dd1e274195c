"""Two-time correlation per dynamic bin, and g2 from it (for ageing or damaged samples).

For the pixels ``p`` of one dynamic bin and frames (or groups of ``bin_frames`` frames) t1, t2::

    C(t1, t2) = <I_p(t1) I_p(t2)>_p / (<I_p(t1)>_p <I_p(t2)>_p)

computed as one symmetric matrix product per bin. The time series of the used pixels is held in
memory when it fits ``memory_limit``; otherwise the map is built block by block, reading each
pair of time blocks from the dataset again, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..backend import asnumpy, get_xp
from ..errors import Cancelled, InvalidInputError
from .passes import as_dataset, check_partition
from .partitions import Partition

__all__ = ["choose_bin_frames", "g2_from_twotime", "twotime_maps"]

#: Largest two-time map side used when ``bin_frames`` is chosen automatically.
DEFAULT_MAX_SIZE = 2048


def choose_bin_frames(n_frames: int, max_size: int = DEFAULT_MAX_SIZE) -> int:
    """Smallest number of frames to average so that the map has at most ``max_size`` steps."""
    return max(1, -(-n_frames // max_size))


def _storage_dtype(dtype, bin_frames: int) -> np.dtype:
    """Integers of up to 16 bits are held as they are when frames are not averaged (exact in
    float32 later, half the memory); anything else as float32."""
    dtype = np.dtype(dtype)
    if bin_frames == 1 and dtype.kind in "ui" and dtype.itemsize <= 2:
        return dtype
    return np.dtype(np.float32)


def _binned_pixels(ds, pixels, start, stop, bin_frames, chunk_frames, cancel):
    """Frames ``start:stop`` averaged in groups of ``bin_frames``, restricted to ``pixels``:
    one (steps, len(pixels)) array in :func:`_storage_dtype`."""
    n_out = (stop - start) // bin_frames
    out = np.empty((n_out, len(pixels)), _storage_dtype(ds.dtype, bin_frames))
    stop = start + n_out * bin_frames
    chunk_frames = chunk_frames or ds.default_chunk_frames()
    chunk_frames = max(bin_frames, chunk_frames // bin_frames * bin_frames)
    whole_frame = np.array_equal(pixels, np.arange(ds.frame_shape[0] * ds.frame_shape[1]))
    for first, chunk in ds.iter_chunks(chunk_frames, start, stop, prefetch=True, reuse=True):
        if cancel is not None and cancel():
            raise Cancelled("the analysis was cancelled")
        flat = chunk.reshape(len(chunk), -1)
        rows = len(flat) // bin_frames
        i0 = (first - start) // bin_frames
        target = out[i0:i0 + rows]
        if bin_frames > 1:
            part = flat if whole_frame else np.take(flat, pixels, axis=1)
            target[:] = part.reshape(rows, bin_frames, -1).mean(axis=1, dtype=np.float32)
        elif whole_frame:
            target[:] = flat
        elif flat.dtype == out.dtype:
            np.take(flat, pixels, axis=1, out=target)  # far faster than flat[:, pixels]
        else:
            target[:] = np.take(flat, pixels, axis=1)
    return out


class _Scratch:
    """Float32 work memory reused from bin to bin on the CPU (fresh memory costs 0.5-2 s per
    GB to touch first on some machines; each bin would otherwise take its own)."""

    def __init__(self):
        self._flat = {}

    def get(self, name, shape):
        """A C-contiguous float32 array of ``shape`` over the memory kept under ``name``."""
        size = int(np.prod(shape))
        if len(self._flat.get(name, ())) < size:
            self._flat[name] = np.empty(size, np.float32)
        return self._flat[name][:size].reshape(shape)


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


def twotime_maps(data, partition: Partition, bins=None, *, bin_frames: int | None = None,
                 max_size: int = DEFAULT_MAX_SIZE, chunk_frames: int | None = None,
                 memory_limit: float = 2e9, device: str = "auto",
                 progress: Callable | None = None,
                 cancel: Callable | None = None) -> dict[int, np.ndarray]:
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
    dyn = partition.dynamic_map.ravel()
    wanted = np.isin(dyn, bins)
    pixels = np.flatnonzero(wanted)
    # pixels sorted by bin, so that each bin is a contiguous run of columns (a view, no copy)
    pixels = pixels[np.argsort(dyn[pixels], kind="stable")]
    labels = dyn[pixels]
    columns = {b: slice(*np.searchsorted(labels, [b, b + 1])) for b in bins}
    maps = {}

    itemsize = _storage_dtype(ds.dtype, bin_frames).itemsize
    block = steps if steps * len(pixels) * itemsize <= memory_limit else max(
        1, int(memory_limit / 2 / (itemsize * len(pixels))))
    edges = list(range(0, steps, block)) + [steps]
    n_tasks = (len(edges) - 1) * len(edges) // 2
    done = 0
    scratch = _Scratch()
    for i in range(len(edges) - 1):
        a = _binned_pixels(ds, pixels, edges[i] * bin_frames, edges[i + 1] * bin_frames,
                           bin_frames, chunk_frames, cancel)
        for j in range(i, len(edges) - 1):
            same = i == j
            b = a if same else _binned_pixels(ds, pixels, edges[j] * bin_frames,
                                              edges[j + 1] * bin_frames, bin_frames,
                                              chunk_frames, cancel)
            for k, cols in columns.items():
                c = _normalised_product(xp, a[:, cols], b[:, cols], same, scratch)
                if len(edges) == 2:  # one block: the whole (symmetric) map at once
                    maps[k] = c
                    continue
                m = maps.setdefault(k, np.empty((steps, steps), np.float32))
                m[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = c
                m[edges[j]:edges[j + 1], edges[i]:edges[i + 1]] = c.T
            done += 1
            if progress is not None:
                progress(done, n_tasks)
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
