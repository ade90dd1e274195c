"""The validated, lazily read stack of frames that every analysis consumes.

A :class:`Dataset` exposes its shape, dtype and :class:`Metadata` without reading frames, and
hands out frames in chunks (:meth:`Dataset.iter_chunks`), so that correlators stream data that
does not fit in memory. Readers (``speckle.io.read_*``) subclass it; :class:`ArrayDataset`
wraps an array already in memory (tests, simulations, uploads already decoded).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError
from ..memory import fresh_empty
from .frame_rows import FrameRows

__all__ = ["ArrayDataset", "Dataset", "Metadata", "DEFAULT_CHUNK_BYTES"]

#: Target size of one chunk of frames handed to a correlator (bytes of the stored dtype): big
#: enough that per-chunk overheads vanish, small enough that the few buffers a stream reuses
#: stay in memory already touched (fresh memory costs 0.5-2 s per GB on some machines).
DEFAULT_CHUNK_BYTES = 16 * 2**20

HC_EV_M = 1.239841984e-6  # Planck constant × speed of light, eV·m


@dataclass(frozen=True)
class Metadata:
    """Acquisition metadata, in SI units (seconds, eV, metres, pixels).

    Every field may be None when the file does not say; analyses that need a missing value raise
    an :class:`~speckle.errors.InvalidInputError` naming the option that supplies it.

    Attributes
    ----------
    frame_time : float or None
        Time between the starts of consecutive frames, s.
    count_time : float or None
        Exposure time of one frame, s.
    energy : float or None
        Photon energy, eV.
    distance : float or None
        Sample to detector distance, m.
    pixel_size : tuple of float or None
        Pixel pitch (row, column), m.
    beam_center : tuple of float or None
        Direct beam position (row, column), pixels, 0-based.
    extra : dict
        Other key/value pairs the reader found (strings or numbers), for provenance.
    """

    frame_time: float | None = None
    count_time: float | None = None
    energy: float | None = None
    distance: float | None = None
    pixel_size: tuple[float, float] | None = None
    beam_center: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def wavelength(self) -> float | None:
        """Wavelength in metres, from :attr:`energy`."""
        return None if not self.energy else HC_EV_M / self.energy

    def updated(self, **overrides) -> "Metadata":
        """Return a copy with the given fields replaced; None values are ignored.

        ``extra`` entries are merged into the existing ones.

        Raises
        ------
        InvalidInputError
            For an unknown field or a non-positive physical value.
        """
        names = {f.name for f in dataclasses.fields(self)}
        clean = {}
        for key, value in overrides.items():
            if key not in names:
                raise InvalidInputError(f"unknown metadata field {key!r}; known: {sorted(names)}")
            if value is None:
                continue
            if key in ("pixel_size", "beam_center"):
                value = tuple(float(v) for v in np.broadcast_to(np.asarray(value, float), (2,)))
                if key == "pixel_size" and min(value) <= 0:
                    raise InvalidInputError(f"pixel size must be positive, got {value}")
            elif key == "extra":
                value = {**self.extra, **dict(value)}  # add to the file's provenance
            else:
                value = float(value)
                if not np.isfinite(value) or value <= 0:
                    raise InvalidInputError(f"{key.replace('_', ' ')} must be positive, got {value}")
            clean[key] = value
        return dataclasses.replace(self, **clean)


class Dataset(ABC):
    """A stack of 2D frames read lazily from a validated source.

    Subclasses set ``shape`` (n_frames, rows, cols), ``dtype``, ``metadata``, ``source`` (a path
    or a description) and ``format`` (a short name such as ``"hdf5"``), and implement
    :meth:`_read`.
    """

    shape: tuple[int, int, int]
    dtype: np.dtype
    metadata: Metadata
    source: str
    format: str

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(rows, cols) of one frame."""
        return (int(self.shape[1]), int(self.shape[2]))

    @abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray:
        """Return frames ``start:stop`` as a (stop-start, rows, cols) numpy array."""

    def read_frames(self, start: int = 0, stop: int | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
        """Read frames ``start:stop`` (clipped to the dataset) as a numpy array.

        Parameters
        ----------
        start, stop : int
        out : ndarray, optional
            A C-contiguous buffer of at least ``stop - start`` frames of the dataset's dtype:
            readers that read in place fill its first frames and return them, the others
            return their own array (always use the returned array).
        """
        stop = self.n_frames if stop is None else min(int(stop), self.n_frames)
        start = max(0, int(start))
        if stop <= start:
            return np.empty((0, *self.frame_shape), self.dtype)
        if out is not None and self._read_into(start, stop, out[:stop - start]):
            return out[:stop - start]
        return self._read(start, stop)

    def _read_into(self, start: int, stop: int, out: np.ndarray) -> bool:
        """Fill ``out`` with frames ``start:stop`` where this reader can do so without a copy,
        and return whether it did (by default it cannot)."""
        return False

    @property
    def reads_in_place(self) -> bool:
        """Whether a stream of chunks (:meth:`iter_chunks` with ``reuse``) reads them into
        buffers, which new memory makes slow to fill the first time; readers that map the
        source or hand out their own arrays or views do not."""
        return False

    def _map(self, start: int, stop: int):
        """Frames ``start:stop`` as a read-only view of the source's bytes where this reader
        can map them (no copy), for streams that drop their chunks before long: an array, or
        :class:`~speckle.io.frame_rows.FrameRows` where they are not evenly spaced; None
        otherwise (the default)."""
        return None

    def frame(self, index: int) -> np.ndarray:
        """Read one frame (negative indices count from the end)."""
        if index < 0:
            index += self.n_frames
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range for {self.n_frames} frames")
        return self._read(index, index + 1)[0]

    def default_chunk_frames(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
        """Number of frames per chunk that keeps one chunk near ``chunk_bytes``."""
        per_frame = self.frame_shape[0] * self.frame_shape[1] * np.dtype(self.dtype).itemsize
        return int(max(1, min(self.n_frames, chunk_bytes // max(per_frame, 1))))

    def iter_chunks(self, chunk_frames: int | None = None, start: int = 0,
                    stop: int | None = None, *, prefetch: bool = False,
                    prepare: Callable | None = None, reuse: bool = False,
                    ramp: bool = False, rows: bool = False) -> Iterator[tuple[int, object]]:
        """Yield ``(first_frame_index, frames)`` chunks covering ``start:stop`` in order.

        With ``prefetch``, a reader thread reads the next chunk while the caller works on this
        one (at most two chunks ahead); its errors are raised here, in order. With ``prepare``,
        ``(first, prepare(first, frames))`` is yielded instead, ``prepare`` running where the
        chunk is read (in the reader thread with ``prefetch``, one chunk after another), so
        that work on a chunk overlaps the caller's work on the previous one. With ``reuse``,
        the caller keeps nothing of a chunk once it asks for the next one: readers that map
        their source hand out mapped chunks, the others read into a few buffers used in turn
        (new memory costs 0.3-2 s per GB to touch first on some machines), which the next
        chunks overwrite; with ``rows`` too, mapped frames that are not evenly spaced come as
        :class:`~speckle.io.frame_rows.FrameRows` (else they are copied into the buffers).
        With ``ramp``, the first chunks are an eighth, a quarter and a half of
        ``chunk_frames`` (in whole chunks of the source), so that the caller starts sooner.
        """
        chunk = int(chunk_frames or self.default_chunk_frames())
        if chunk < 1:
            raise InvalidInputError(f"chunk size must be at least one frame, got {chunk}")
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        granule = self.default_chunk_frames(1)
        sizes = [s // granule * granule for s in (chunk // 8, chunk // 4, chunk // 2)
                 if s >= granule] if ramp else []
        firsts, first = [], start
        while first < stop:
            firsts.append(first)
            first += sizes.pop(0) if sizes else chunk
        # the caller's chunk, the one queued and the one being read (see _read_ahead)
        buffers = [None] * (3 if prefetch else 1)

        def buffer(i):
            slot = i % len(buffers)
            if buffers[slot] is None:
                buffers[slot] = fresh_empty((min(chunk, stop - start), *self.frame_shape),
                                            self.dtype)
            return buffers[slot]

        def read_chunk(i):
            first, last = firsts[i], min(firsts[i + 1] if i + 1 < len(firsts) else stop, stop)
            frames = self._map(first, last) if reuse else None
            if isinstance(frames, FrameRows) and not rows:
                out = buffer(i)
                for at, run in frames.runs():
                    out[at:at + len(run)] = run
                frames = out[:last - first]
            elif frames is None:
                out = buffer(i) if reuse and self.reads_in_place else None
                frames = self.read_frames(first, last, out=out)
            return frames if prepare is None else prepare(first, frames)

        reads = ((first, lambda i=i: read_chunk(i)) for i, first in enumerate(firsts))
        if not prefetch or len(firsts) < 2:
            for first, read in reads:
                yield first, read()
            return
        yield from _read_ahead(reads)

    def with_metadata(self, **overrides) -> "Dataset":
        """This dataset seen with some metadata replaced (see :meth:`Metadata.updated`).

        The view shares the open file (closing either closes both); only its metadata differ,
        so one analysis can use typed values without changing what others see.
        """
        if not overrides:
            return self
        view = copy.copy(self)
        view.metadata = self.metadata.updated(**overrides)
        return view

    def close(self) -> None:
        """Release open file handles (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.format} {self.shape} {np.dtype(self.dtype).name} "
                f"from {self.source}>")


def _read_ahead(reads, depth: int = 1):
    """Run ``read()`` of each ``(first, read)`` in a reader thread, ``depth`` chunks ahead of
    the consumer; yield ``(first, frames)`` in order. Stops the thread when the consumer does."""
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader():
        # chunks handed out are let go here once the consumer is past them: the last
        # reference to a mapped chunk unmaps it (1-4 ms), which the consumer would wait for
        recent = collections.deque()
        for first, read in reads:
            try:
                item = (first, read(), None)
            except BaseException as exc:  # handed to the consumer, raised there
                item = (first, None, exc)
            recent.append(item)
            if stop.is_set() or not offer(item) or item[2] is not None:
                return
            while len(recent) > depth + 1:  # queued, and the one the consumer holds
                recent.popleft()
        offer((None, None, None))

    thread = threading.Thread(target=reader, name="speckle-reader", daemon=True)
    thread.start()
    try:
        while True:
            first, frames, exc = results.get()
            if exc is not None:
                raise exc
            if first is None:
                return
            yield first, frames
    finally:
        stop.set()
        thread.join()


class ArrayDataset(Dataset):
    """A dataset over an array already in memory.

    Parameters
    ----------
    frames : array_like
        (n_frames, rows, cols) or one (rows, cols) image.
    metadata : Metadata, optional
    source : str
        A description shown in messages and written to results.
    """

    def __init__(self, frames, metadata: Metadata | None = None, source: str = "<array>",
                 format: str = "array"):
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3 or 0 in frames.shape:
            raise InvalidInputError(
                f"expected a stack of 2D frames, got an array of shape {frames.shape}")
        if not (np.issubdtype(frames.dtype, np.number) and not np.iscomplexobj(frames)):
            raise InvalidInputError(f"frames must be real numbers, got dtype {frames.dtype}")
        self._frames = frames
        self.shape = tuple(int(s) for s in frames.shape)
        self.dtype = frames.dtype
        self.metadata = metadata or Metadata()
        self.source = source
        self.format = format

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._frames[start:stop]
