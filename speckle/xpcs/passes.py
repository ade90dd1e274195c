"""One streaming pass over a dataset's frames, shared by every XPCS consumer.

:func:`stream_frames` reads chunks, keeps the used pixels, optionally divides each frame by its
mean, reports progress and honours cancellation; correlators and statistics consume what it
yields, so that an analysis reads the data once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..errors import AnalysisError, Cancelled, InvalidInputError
from ..io.dataset import ArrayDataset, Dataset
from ..io.frame_rows import FrameRows

__all__ = ["as_dataset", "check_partition", "frame_weights", "stream_frames"]


def as_dataset(data) -> Dataset:
    """Return ``data`` as a :class:`~speckle.io.dataset.Dataset` (arrays are wrapped)."""
    if isinstance(data, Dataset):
        return data
    return ArrayDataset(data)


def check_partition(partition, ds: Dataset) -> None:
    """Refuse a partition made for another detector shape than the dataset's frames."""
    if partition.shape != ds.frame_shape:
        raise InvalidInputError(
            f"the regions / q-map are for a {partition.shape[0]}×{partition.shape[1]} detector "
            f"but the frames are {ds.frame_shape[0]}×{ds.frame_shape[1]}")


def frame_weights(n_frames: int, exclude_frames=None) -> np.ndarray:
    """Return per-frame weights: 1 for used frames, 0 for excluded ones.

    Parameters
    ----------
    n_frames : int
    exclude_frames : sequence of int, or bool array of length n_frames, optional
        Frames to leave out; negative indices count from the end.
    """
    w = np.ones(n_frames, np.float32)
    if exclude_frames is None:
        return w
    ex = np.asarray(exclude_frames)
    if ex.dtype == bool:
        if ex.shape != (n_frames,):
            raise InvalidInputError(
                f"the excluded-frame mask has {ex.size} entries for {n_frames} frames")
        w[ex] = 0
    elif ex.size:
        if not np.issubdtype(ex.dtype, np.integer):
            raise InvalidInputError("excluded frames must be given as frame numbers")
        if ex.min() < -n_frames or ex.max() >= n_frames:
            raise InvalidInputError(
                f"excluded frame numbers must be between 0 and {n_frames - 1}")
        w[ex] = 0
    if not w.any():
        raise AnalysisError("every frame is excluded: nothing is left to correlate")
    return w


def stream_frames(ds: Dataset, pixels: np.ndarray, weights: np.ndarray, *,
                  chunk_frames: int | None = None, normalize: bool = False,
                  progress: Callable | None = None, cancel: Callable | None = None,
                  consumers: tuple = (), rows: bool = False
                  ) -> Iterator[tuple[int, np.ndarray | FrameRows, np.ndarray]]:
    """Yield ``(start, frames, weights)`` for consecutive chunks.

    Each chunk is read, handed to the consumers, restricted to the used pixels and normalised
    in the reader thread (:meth:`~speckle.io.dataset.Dataset.iter_chunks` with ``prepare``)
    while the caller works on the previous chunk, the first chunks shorter (``ramp``) so that
    the caller starts sooner. Chunks are mapped or read into reused buffers: the frames
    yielded may be overwritten once the caller asks for the next chunk.

    Parameters
    ----------
    ds : Dataset
    pixels : ndarray of int
        Flat indices of the used pixels.
    weights : ndarray, (n_frames,)
        Frame weights (see :func:`frame_weights`).
    chunk_frames : int, optional
    normalize : bool
        Divide each frame by its mean over the used pixels (float32 output); frames whose mean
        is zero get weight 0.
    progress, cancel : callable, optional
        ``progress(done, total)`` after each chunk; ``cancel()`` returning True stops the pass
        with :class:`Cancelled`.
    consumers : tuple of callables
        Each is called as ``consumer(start, chunk)`` with raw (n, rows, cols) frames, before
        any normalisation (for statistics such as intensity vs time), in order, in the reader
        thread (a chunk whose frames are mapped unevenly comes as its evenly spaced runs).
    rows : bool
        The caller takes :class:`~speckle.io.frame_rows.FrameRows`: where every pixel is used
        and nothing is normalised, mapped frames are then yielded where they lie, not copied.

    Yields
    ------
    start : int
    frames : ndarray, (n, len(pixels)), or FrameRows of n frames of len(pixels) (``rows``)
    weights : ndarray, (n,)
    """
    n_total = ds.n_frames
    all_pixels = len(pixels) == ds.frame_shape[0] * ds.frame_shape[1]

    def prepare(start, chunk):
        n = len(chunk)
        runs = list(chunk.runs()) if isinstance(chunk, FrameRows) else [(0, chunk)]
        for consumer in consumers:
            for at, run in runs:
                consumer(start + at, run)
        if isinstance(chunk, FrameRows):
            flat = chunk.take(pixels) if not all_pixels else (
                np.asarray(chunk).reshape(n, -1) if normalize else chunk.flat())
        else:
            flat = chunk.reshape(n, -1)
            if not all_pixels:
                flat = np.take(flat, pixels, axis=1)  # far faster than flat[:, pixels]
        w = weights[start:start + n].copy()
        if normalize:
            means = flat.mean(axis=1, dtype=np.float64)
            w[means <= 0] = 0
            scale = np.where(means > 0, 1.0 / np.where(means > 0, means, 1), 0.0)
            flat = flat.astype(np.float32) * scale.astype(np.float32)[:, None]
        return flat, w

    for start, (flat, w) in ds.iter_chunks(chunk_frames, prefetch=True, prepare=prepare,
                                           reuse=True, ramp=True, rows=rows):
        if cancel is not None and cancel():
            raise Cancelled("the analysis was cancelled")
        yield start, flat, w
        if progress is not None:
            progress(start + len(flat), n_total)
