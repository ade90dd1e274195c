"""NumPy ``.npy`` files, ``.npz`` archives and ZIPs of ``.npy`` (the same container).

Nothing is allocated from a declaration before it is checked: the ``.npy`` header is parsed
here (never with pickles: object arrays are refused), and the size it declares must match the
bytes that follow it. A ``.npy`` file is memory-mapped. In a ZIP, a stored (uncompressed) member
is memory-mapped at its offset; a compressed member is decompressed as a stream, frame by frame,
so memory stays bounded by the frames asked for (reading backwards restarts the stream).

ZIP members are refused when encrypted, when their declared uncompressed size exceeds
``max_bytes`` (default 8 GiB, since a caller may read them whole), or when the declared
compression ratio is beyond what deflate can reach (a zip bomb). A ZIP with several ``.npy``
members needs ``dataset=`` to name one.
"""

from __future__ import annotations

import os
import struct
import threading
import tokenize
import zipfile
import zlib

import numpy as np

from ..errors import InvalidInputError, UnsafeFileError, UnsupportedFormatError
from ..pages import AVAILABLE as PAGES_AVAILABLE
from ..pages import map_file_range
from .dataset import Dataset, Metadata
from .limits import (DEFAULT_MAX_DECOMPRESSED_BYTES, MAX_COMPRESSION_RATIO, check_declared_size,
                     check_max_bytes, damaged, file_size, frame_dtype, frame_layout, human_bytes,
                     library_errors, one_line)
from .sniff import describe_content

__all__ = ["NpyDataset", "ZipStreamDataset", "open_npy", "open_npz", "read_npy_header"]

_NPY_MAGIC = b"\x93NUMPY"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # ZIP local file header (30 bytes)
_SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                          zipfile.ZIP_LZMA}


def read_npy_header(fp, source) -> tuple[tuple, bool, np.dtype, int]:
    """Parse a ``.npy`` header without loading anything else.

    Parameters
    ----------
    fp : file-like
        Positioned at the start of the ``.npy`` data; left just after the header.
    source : str
        Name used in messages.

    Returns
    -------
    shape : tuple of int
    fortran_order : bool
    dtype : numpy.dtype
    header_bytes : int
        Length of the magic plus header; the array data start there.

    Raises
    ------
    InvalidInputError
        For a missing magic string or an unreadable header.
    """
    start = fp.tell()
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            # Version 3 exists only for record arrays with non-Latin-1 field names.
            raise InvalidInputError(f"{source}: .npy format version {version} is used only for "
                                    "record arrays, not image stacks: save a numeric array")
    except InvalidInputError:
        raise
    except (ValueError, SyntaxError, EOFError, OSError, tokenize.TokenError) as exc:
        raise damaged(source, f"unreadable .npy header: {one_line(exc)}", ".npy data") from None
    return tuple(shape), bool(fortran), dtype, fp.tell() - start


def _check_array(source, shape, dtype, available: int, max_bytes, what="the array"):
    """Validate a parsed header against the bytes really present; return (layout, dtype)."""
    native = frame_dtype(dtype, source, what)  # refuses object (pickle) arrays first
    layout = frame_layout(shape, source, what)
    declared = check_declared_size(layout.shape, native, source, max_bytes=max_bytes, what=what)
    if available < declared:
        raise damaged(source, f"header declares {shape} {dtype} = {declared} bytes, only "
                      f"{available} follow", ".npy data")
    return layout, native


def open_npy(path, *, dataset=None, max_bytes: int | None = None) -> "NpyDataset":
    """Open a ``.npy`` file, memory-mapped (``allow_pickle=False``).

    Parameters
    ----------
    path : str or os.PathLike
        The file (any extension).
    dataset : None
        Not applicable; anything else is refused.
    max_bytes : int, optional
        Refuse an array whose declared size is larger (default: no limit beyond sanity).

    Returns
    -------
    NpyDataset
    """
    if dataset is not None:
        raise InvalidInputError(f"{path}: dataset={dataset!r} does not apply to a .npy file, "
                                "which holds one array: leave dataset out")
    max_bytes = check_max_bytes(max_bytes)
    try:
        with open(path, "rb") as fh:
            shape, _fortran, dtype, header_bytes = read_npy_header(fh, path)
        layout, native = _check_array(path, shape, dtype, file_size(path) - header_bytes,
                                      max_bytes)
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise damaged(path, exc, ".npy file") from None
    return NpyDataset(array, layout, native, source=str(path), format="npy")


class NpyDataset(Dataset):
    """A memory-mapped array (a ``.npy`` file or a stored ZIP member)."""

    def __init__(self, array, layout, dtype, *, source: str, format: str,
                 metadata: Metadata | None = None):
        self._array = array
        self._layout = layout
        self.shape = layout.shape
        self.dtype = dtype
        self.source = source
        self.format = format
        self.metadata = metadata or Metadata()

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._layout.read(self._array, start, stop, self.dtype, copy=True)

    def _map(self, start: int, stop: int) -> np.ndarray | None:
        """Frames ``start:stop`` over the file's pages, read only, all mapped at once, where
        they lie in C order in their own (native, aligned) type; None otherwise (see
        :meth:`speckle.io.direct_hdf5.DirectFrames.map`, which this mirrors)."""
        stored = self._array
        if (not PAGES_AVAILABLE or not isinstance(stored, np.memmap) or stored.filename is None
                or stored.dtype != self.dtype or not stored.flags.c_contiguous
                or stored.offset % self.dtype.itemsize):
            return None
        frame_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        begin = int(stored.offset) + start * frame_bytes
        end = begin + (stop - start) * frame_bytes
        try:
            fd = os.open(stored.filename, os.O_RDONLY)
        except OSError:
            return None
        try:
            if end > os.fstat(fd).st_size:
                raise damaged(self.source, "the frames end past the end of the file",
                              f"{self.format} file")
            values = map_file_range(fd, begin, end)
        except OSError:
            return None
        finally:
            os.close(fd)
        return values.view(self.dtype).reshape(stop - start, *self.shape[1:])

    def close(self) -> None:
        """Drop the memory map (it closes once no frame view refers to it)."""
        self._array = None


def open_npz(path, *, dataset: str | None = None,
             max_bytes: int | None = None) -> "NpyDataset | ZipStreamDataset":
    """Open one ``.npy`` member of a ZIP archive (``.npz`` or a zipped ``.npy``).

    Parameters
    ----------
    path : str or os.PathLike
        The ZIP archive (any extension).
    dataset : str, optional
        Member to read, with or without ``.npy`` (``np.savez`` keys work). Required when the
        archive holds several ``.npy`` members.
    max_bytes : int, optional
        Refuse a member whose declared uncompressed size is larger. Default: 8 GiB for
        compressed members, no limit beyond sanity for stored (memory-mapped) ones.

    Returns
    -------
    NpyDataset or ZipStreamDataset
        Format ``"npz"``; ``metadata.extra['member']`` names the member read.

    Raises
    ------
    UnsupportedFormatError
        When the archive holds no ``.npy`` member.
    UnsafeFileError
        For encryption, sizes above ``max_bytes``, or an absurd compression ratio.
    InvalidInputError
        For several members without ``dataset``, damaged archives or members.
    """
    max_bytes = check_max_bytes(max_bytes)
    with library_errors(path, "ZIP archive"):
        archive = zipfile.ZipFile(path)
    try:
        with library_errors(path, "ZIP archive"):
            info = _pick_member(archive, dataset, path)
            where = f"{path} member {info.filename}"
            _check_member(info, where, max_bytes)
            with archive.open(info) as member:
                head = member.read(64)
                if not head.startswith(_NPY_MAGIC):
                    raise UnsupportedFormatError(f"{where}: not a NumPy array "
                                                 f"({describe_content(head)})")
                member.seek(0)
                shape, fortran, dtype, header_bytes = read_npy_header(member, where)
            layout, native = _check_array(where, shape, dtype, info.file_size - header_bytes,
                                          max_bytes)
            metadata = Metadata(extra={"member": info.filename})
            if info.compress_type == zipfile.ZIP_STORED:
                offset = _member_data_offset(path, info) + header_bytes
                array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                  order="F" if fortran else "C")
                archive.close()
                return NpyDataset(array, layout, native, source=str(path), format="npz",
                                  metadata=metadata)
            if fortran and layout.shape[0] > 1:
                raise InvalidInputError(
                    f"{where}: the array is stored in Fortran order inside a compressed ZIP, so "
                    "its frames cannot be read one by one: save it with "
                    "np.save(np.ascontiguousarray(a))")
            return ZipStreamDataset(archive, info, header_bytes, layout, dtype, native,
                                    fortran=fortran, source=str(path), metadata=metadata)
    except BaseException:
        archive.close()
        raise


def _pick_member(archive: zipfile.ZipFile, dataset, path) -> zipfile.ZipInfo:
    """The ``.npy`` member to read (the only one, or the one ``dataset`` names)."""
    members = [i for i in archive.infolist() if not i.is_dir()]
    arrays = [i for i in members if i.filename.lower().endswith(".npy")]
    names = ", ".join(i.filename for i in arrays[:20]) + (" ..." if len(arrays) > 20 else "")
    if dataset is not None:
        wanted = str(dataset)
        for info in members:
            if info.filename in (wanted, wanted + ".npy"):
                return info
        raise InvalidInputError(f"{path}: no member {wanted!r} in the archive; arrays: "
                                f"{names or 'none'}")
    if not arrays:
        listed = ", ".join(i.filename for i in members[:10]) or "none"
        raise UnsupportedFormatError(f"{path}: this ZIP archive holds no NumPy .npy array "
                                     f"(members: {listed}); speckle reads a .npz or a ZIP of "
                                     "one .npy")
    if len(arrays) > 1:
        first = arrays[0].filename[:-4]
        raise InvalidInputError(f"{path}: the archive holds {len(arrays)} arrays ({names}): "
                                f"choose one with dataset='{first}'")
    return arrays[0]


def _check_member(info: zipfile.ZipInfo, where: str, max_bytes: int | None) -> None:
    """Refuse encrypted members, unknown compression, and zip-bomb declarations."""
    if info.flag_bits & 0x1:
        raise UnsafeFileError(f"{where}: the member is encrypted: unpack it with its password "
                              "and give the .npy file")
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        raise UnsupportedFormatError(f"{where}: ZIP compression method {info.compress_type} is "
                                     "not supported: re-pack it with ordinary (deflate) ZIP")
    if info.compress_type == zipfile.ZIP_STORED:
        return
    limit = DEFAULT_MAX_DECOMPRESSED_BYTES if max_bytes is None else max_bytes
    if info.file_size > limit:
        raise UnsafeFileError(
            f"{where}: declares {human_bytes(info.file_size)} uncompressed, above the limit of "
            f"{human_bytes(limit)}: unzip it and open the .npy (memory-mapped), or raise "
            "max_bytes if the file is trusted")
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > MAX_COMPRESSION_RATIO and info.file_size > 2**20:
        raise UnsafeFileError(
            f"{where}: declares a compression ratio of {ratio:.0f}:1 ({human_bytes(info.file_size)}"
            f" from {human_bytes(info.compress_size)}), beyond real data; refusing a possible "
            "zip bomb")


def _member_data_offset(path, info: zipfile.ZipInfo) -> int:
    """Offset in the archive of a member's first data byte (after its local header)."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        raw = fh.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of member {info.filename}")
    fields = _LOCAL_HEADER.unpack(raw)
    name_length, extra_length = fields[-2], fields[-1]
    offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if offset + info.file_size > file_size(path):
        raise zipfile.BadZipFile(f"member {info.filename} runs past the end of the file")
    return offset


class ZipStreamDataset(Dataset):
    """Frames of a compressed ``.npy`` member, decompressed as a stream.

    Sequential reads (``iter_chunks``) decompress the member once; a read before the current
    position restarts the stream. Memory is bounded by the frames returned.
    """

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, header_bytes: int,
                 layout, stored_dtype, dtype, *, fortran: bool = False, source: str,
                 metadata: Metadata):
        self._archive = archive
        self._layout = layout
        self._fortran = fortran  # only ever with a single frame (see open_npz)
        self._info = info
        self._header_bytes = header_bytes
        self._stored_dtype = np.dtype(stored_dtype)
        self._stream = None
        self._lock = threading.Lock()
        self.shape = layout.shape
        self.dtype = dtype
        self.source = source
        self.format = "npz"
        self.metadata = metadata

    def _read(self, start: int, stop: int) -> np.ndarray:
        frame_items = self.frame_shape[0] * self.frame_shape[1]
        out = np.empty((stop - start) * frame_items, self._stored_dtype)
        buffer = memoryview(out).cast("B")
        offset = self._header_bytes + start * frame_items * self._stored_dtype.itemsize
        with self._lock:
            try:
                if self._stream is None:
                    self._stream = self._archive.open(self._info)
                if self._stream.tell() != offset:
                    self._stream.seek(offset)  # forward: skips; backward: restarts the stream
                filled = 0
                while filled < len(buffer):
                    n = self._stream.readinto(buffer[filled:])
                    if not n:
                        break
                    filled += n
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                self._drop_stream()
                raise damaged(self.source, exc, "ZIP archive") from None
        if filled < len(buffer):
            raise damaged(self.source, f"member {self._info.filename} ends after "
                          f"{offset + filled} of its declared bytes", "ZIP archive")
        if self._fortran:
            out = out.reshape(self._layout.stored_shape, order="F")
        return out.reshape((stop - start, *self.frame_shape)).astype(self.dtype, copy=False)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def close(self) -> None:
        """Close the member stream and the archive (idempotent)."""
        self._drop_stream()
        if self._archive is not None:
            self._archive.close()
            self._archive = None
