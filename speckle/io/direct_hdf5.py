"""Frames read straight from an HDF5 file's bytes, without the HDF5 library.

h5py holds Python's GIL while HDF5 reads, so a reader thread could not overlap the
correlators. For uncompressed data (contiguous, or chunks of whole frames), speckle reads the
frames itself with ``preadv`` (which releases the GIL) at the addresses HDF5 reports when the
file is opened. Any other layout (compression, chunks that split frames, chunks never written,
big-endian data, virtual or external data) is read through h5py as before; bitshuffle/LZ4
stays with HDF5's own decoder, which is about twice as fast as a compiled one here. What
HDF5Dataset validates at open is validated either way.

Where the frames lie in order in the file with little between them (contiguous storage, or
chunks written in order with nodes of HDF5's chunk index among them), a stream of chunks maps
them instead (:meth:`DirectFrames.map`): the pages the system already holds become the chunk,
read only, without a copy (13-16 ms per 375 MB here, where ``preadv`` copies them in 63 ms
into reused buffers and 106 ms into new ones).
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from ..pages import AVAILABLE as PAGES_AVAILABLE
from ..pages import map_file_range
from .frame_rows import FrameRows
from .limits import damaged

__all__ = ["DirectFrames"]


class DirectFrames:
    """Frames ``start:stop`` of a 3D dataset read from the file's bytes.

    Use :meth:`of`, which returns None where the layout is not one of those above.
    """

    def __init__(self, path, source, shape, dtype, frames_per_chunk, offsets, sizes):
        self._fd = os.open(path, os.O_RDONLY)
        self.source = source
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.frames_per_chunk = frames_per_chunk
        self.offsets, self.sizes = offsets, sizes
        self.frame_bytes = shape[1] * shape[2] * self.dtype.itemsize
        end = int((offsets + sizes).max()) if len(offsets) else 0
        if end > os.fstat(self._fd).st_size:
            os.close(self._fd)
            raise damaged(source, "chunks beyond the end of the file", "HDF5 file")
        #: Whether :meth:`map` hands out frames: they lie in order in the file, aligned to
        #: their type, with little between them (HDF5's chunk index)
        self.maps = bool(PAGES_AVAILABLE and len(offsets) and
                         np.all(sizes == frames_per_chunk * self.frame_bytes) and
                         np.all(offsets[1:] >= offsets[:-1] + sizes[:-1]) and
                         not np.any(offsets % self.dtype.itemsize) and
                         end - offsets[0] <= sizes.sum() * 9 // 8 + 2**20)

    @classmethod
    def of(cls, ds: h5py.Dataset, path, source, dtype) -> "DirectFrames | None":
        """A direct reader for ``ds``, or None when its layout is read through h5py.

        Parameters
        ----------
        ds : h5py.Dataset
            The (validated) frame dataset.
        path : path-like
            The file, opened again here for ``preadv``.
        source : str
            The file's name in messages.
        dtype : numpy dtype
            The native dtype frames are handed out in.

        Raises
        ------
        InvalidInputError
            When chunks lie beyond the end of the file (a truncated file).
        """
        dtype = np.dtype(dtype)
        # the stored type must be the native one handed out: the bytes are then the values
        if ds.ndim != 3 or ds.is_virtual or ds.dtype != dtype or dtype.kind not in "uif":
            return None
        plist = ds.id.get_create_plist()
        if plist.get_external_count() or plist.get_nfilters():
            return None
        n, rows, cols = ds.shape
        if ds.chunks is None:
            offset = ds.id.get_offset()
            if offset is None:  # never written: all fill value
                return None
            frame_bytes = rows * cols * dtype.itemsize
            offsets = np.arange(n, dtype=np.int64) * frame_bytes + offset
            return cls(path, source, ds.shape, dtype, 1, offsets,
                       np.full(n, frame_bytes, np.int64))
        per_chunk = ds.chunks[0]
        if ds.chunks[1:] != (rows, cols):
            return None
        n_chunks = -(-n // per_chunk)
        found = {}

        def visit(info):
            found[info.chunk_offset[0] // per_chunk] = (info.byte_offset, info.size)
        ds.id.chunk_iter(visit)
        if len(found) != n_chunks:
            return None  # chunks never written: HDF5 gives their fill value
        table = np.array([found[i] for i in range(n_chunks)], np.int64).reshape(-1, 2)
        return cls(path, source, ds.shape, dtype, per_chunk, table[:, 0], table[:, 1])

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``start:stop`` as a (stop - start, rows, cols) array: ``out`` (C-contiguous,
        of that shape and the dtype) filled, or a new array.

        Raises
        ------
        InvalidInputError
            When the file ends before the frames do.
        """
        if out is None:
            out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        flat = out.reshape(stop - start, -1).view(np.uint8)
        per, fb = self.frames_per_chunk, self.frame_bytes
        frame = start
        while frame < stop:
            chunk, first = divmod(frame, per)
            take = min(stop - frame, per - first)
            rows = flat[frame - start:frame - start + take].reshape(-1)
            got = os.preadv(self._fd, [rows], int(self.offsets[chunk]) + first * fb)
            if got != len(rows):
                raise damaged(self.source, "a chunk ends past the end of the file", "HDF5 file")
            frame += take
        return out

    def map(self, start: int, stop: int) -> np.ndarray | FrameRows | None:
        """Frames ``start:stop`` over the file's pages, read only, all mapped at once (where
        :attr:`maps`): a (stop - start, rows, cols) array where they lie one after another,
        else :class:`~speckle.io.frame_rows.FrameRows`; None where the system refuses the
        mapping (read them instead).

        The mapping ends when the frames are dropped (meant for streams that keep a few chunks
        at a time; it outlives closing the dataset). A file cut shorter by
        another program while its pages are mapped here would end this process (SIGBUS), as
        for any memory-mapped file; frames past the file's end when they are mapped are an
        error instead.

        Raises
        ------
        InvalidInputError
            When the file ends before the frames do.
        """
        frames = np.arange(start, stop, dtype=np.int64)
        chunks = frames // self.frames_per_chunk
        where = (self.offsets[chunks] + (frames - chunks * self.frames_per_chunk)
                 * self.frame_bytes)
        begin, end = int(where[0]), int(where[-1]) + self.frame_bytes
        if end > os.fstat(self._fd).st_size:
            raise damaged(self.source, "the frames end past the end of the file", "HDF5 file")
        try:
            values = map_file_range(self._fd, begin, end).view(self.dtype)
        except OSError:
            self.maps = False  # (a file system without mappings): read from now on
            return None
        size = self.dtype.itemsize
        starts = (where - begin) // size
        if np.all(np.diff(starts) == self.frame_bytes // size):
            return values.reshape(stop - start, *self.shape[1:])
        return FrameRows(values, starts, self.shape[1:])

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
