"""HDF5 and NeXus stacks, read lazily frame by frame.

Which dataset: the ``dataset`` argument, else ``/entry/data/data`` (the Eiger/NeXus layout),
else the NeXus default plot (``/@default`` -> NXentry ``@default`` -> NXdata ``@signal``). If
none applies, the error lists the image datasets in the file so that the user can pick one.

What is refused (the message says why and what to do):

- links to other files (external links), virtual datasets reading other files, and datasets
  whose raw data lives in external files: speckle reads only what is inside the given file;
- data that are not real numbers, that have more than 3 dimensions (beyond leading 1s), or
  that declare absurd sizes (or above ``max_bytes``);
- data the file cannot hold: never written, chunks missing, past the end of the file, or
  compressed beyond any detector data (:func:`check_stored`), refused before reading;
- compression filters that are not installed (``hdf5plugin`` provides the detector ones:
  bitshuffle/LZ4, LZ4, zstd, blosc...);
- damaged or truncated files.

Metadata come from the NeXus detector group ``<entry>/instrument/detector*`` (``frame_time``,
``count_time``, ``distance``, ``x_pixel_size``/``y_pixel_size``, ``beam_center_x``/``_y``)
and from ``<entry>/instrument/monochromator`` or ``beam`` (``energy``, ``incident_energy``,
``wavelength``, ``incident_wavelength``), converted to SI using their ``@units``. A value
without ``@units`` is taken as SI (s, m), except: an energy below 100 is taken as keV and a
wavelength above 1e-6 as Angstrom (both noted in ``Metadata.extra['assumed_units']``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import posixpath
from collections.abc import Iterator

import h5py
import numpy as np

from ..errors import InvalidInputError, SpeckleError, UnsafeFileError, UnsupportedFormatError
from .dataset import DEFAULT_CHUNK_BYTES, HC_EV_M, Dataset, Metadata
from .direct_hdf5 import DirectFrames
from .limits import (MAX_STORED_RATIO, check_declared_size, check_max_bytes, damaged, file_size,
                     frame_dtype, frame_layout, human_bytes, library_errors, one_line)

__all__ = ["DEFAULT_DATASET", "HDF5Dataset", "check_stored", "open_h5_file", "open_hdf5"]

DEFAULT_DATASET = "/entry/data/data"
_MAX_SOFT_LINKS = 32
#: Chunks never written read as the fill value: a few of them are read (and the verdict flags
#: their frames), more chunks or bytes than these make an incomplete file, refused.
MAX_UNWRITTEN_CHUNKS = 1000
MAX_UNWRITTEN_BYTES = 2**30
#: HDF5 spends about 8 µs on each chunk: more than this many chunks smaller than a real frame
#: (SMALL_CHUNK_BYTES) is a file that would take minutes to read for little data.
MAX_SMALL_CHUNKS = 2**20
SMALL_CHUNK_BYTES = 4096
_MAX_CANDIDATES = 8


def open_hdf5(path, *, dataset: str | None = None, max_bytes: int | None = None) -> "HDF5Dataset":
    """Open a frame stack in an HDF5/NeXus file.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file (any extension; a user block is fine).
    dataset : str, optional
        Path of the dataset (or of an NXdata group) inside the file. Default: see the module
        documentation.
    max_bytes : int, optional
        Refuse a dataset whose declared size is larger. Default: no limit beyond sanity,
        since frames are read lazily.

    Returns
    -------
    HDF5Dataset

    Raises
    ------
    UnsafeFileError, UnsupportedFormatError, InvalidInputError
        See the module documentation.
    """
    return HDF5Dataset(path, dataset=dataset, max_bytes=max_bytes)


class HDF5Dataset(Dataset):
    """A lazily read stack in an HDF5 file (see :func:`open_hdf5`).

    Attributes
    ----------
    dataset_path : str
        Path of the dataset inside the file.
    """

    def __init__(self, path, *, dataset: str | None = None, max_bytes: int | None = None):
        self.source = str(path)
        self.format = "hdf5"
        max_bytes = check_max_bytes(max_bytes)
        with library_errors(path, "HDF5 file"):
            self._file = h5py.File(path, "r", locking=False)
        try:
            with library_errors(path, "HDF5 file"):
                self._open(dataset, max_bytes, path)
        except BaseException:
            self._file.close()
            raise

    def _open(self, dataset, max_bytes, path) -> None:
        """Find the dataset and check it: what it is, its size, where its data lie."""
        self._ds = _locate(self._file, dataset, self.source)
        self.dataset_path = self._ds.name
        what = f"dataset {self.dataset_path!r}"
        _check_inside_file(self._ds, self.source)
        if h5py.check_string_dtype(self._ds.dtype) or h5py.check_vlen_dtype(self._ds.dtype):
            raise InvalidInputError(
                f"{self.source}: {what} holds text or variable-length data, not detector "
                "frames: choose the image dataset with dataset='/path/to/frames'")
        self.dtype = frame_dtype(self._ds.dtype, self.source, what)
        self._layout = frame_layout(self._ds.shape, self.source, what)
        self.shape = self._layout.shape
        declared = check_declared_size(self.shape, self.dtype, self.source,
                                       max_bytes=max_bytes, what=what)
        _check_filters(self._ds, self.source)
        check_stored(self._ds, self.source, declared, what)
        self.metadata = read_nexus_metadata(self._file, self.dataset_path)
        self._direct = DirectFrames.of(self._ds, path, self.source, self.dtype)
        self._guard = BitshuffleGuard.of(self._ds, self.source)

    def _read(self, start: int, stop: int) -> np.ndarray:
        with library_errors(self.source, "HDF5 file"):
            if self._direct is not None:
                return self._direct.read(start, stop)
            if self._guard is not None:
                self._guard.check(start, stop)
            return self._layout.read(self._ds, start, stop, self.dtype)

    @property
    def reads_in_place(self) -> bool:
        return self._direct is not None and not self._direct.maps

    def _map(self, start: int, stop: int):
        if self._direct is None or not self._direct.maps:
            return None
        with library_errors(self.source, "HDF5 file"):
            return self._direct.map(start, stop)

    def _read_into(self, start: int, stop: int, out: np.ndarray) -> bool:
        if self._direct is None:
            return False
        with library_errors(self.source, "HDF5 file"):
            self._direct.read(start, stop, out=out)
        return True

    def default_chunk_frames(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
        """As :meth:`Dataset.default_chunk_frames`, rounded to whole chunks of the file."""
        frames = super().default_chunk_frames(chunk_bytes)
        stored = self._ds.chunks[-3] if self._ds.chunks and len(self._ds.chunks) >= 3 else 1
        if frames >= self.n_frames:
            return frames
        return max(frames // stored * stored, min(stored, self.n_frames))

    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if self._direct is not None:
            self._direct.close()
        if self._file:
            self._file.close()


# --- finding the dataset, safely -------------------------------------------------------------

@contextlib.contextmanager
def open_h5_file(path, what: str) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only for a ``with`` block, or raise a one-line error naming it.

    Parameters
    ----------
    path : str or path-like
    what : str
        What the user should give instead, e.g. ``"an APS q-map .h5/.hdf file"``.

    Yields
    ------
    h5py.File
        Open for reading, closed after the block. An h5py failure inside the block (a damaged
        file's structures) is raised as a one-line :class:`~speckle.errors.InvalidInputError`.
    """
    source = str(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise InvalidInputError(f"{source}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UnsupportedFormatError(
            f"{source}: cannot be read as HDF5 ({exc.__class__.__name__}); give {what}") from None
    with f, library_errors(source, "HDF5 file"):
        yield f


def resolve_inside(start, path: str, depth: int = 0):
    """Return the object at ``path`` following only links inside the file, or None if absent.

    Parameters
    ----------
    start : h5py.File or h5py.Group
        Where a relative ``path`` starts (an absolute one starts at the file's root).
    path : str

    Each component is checked before it is followed, so an external link is refused
    (:class:`~speckle.errors.UnsafeFileError`) without HDF5 ever opening the other file.
    """
    f = start.file
    if depth > _MAX_SOFT_LINKS:
        raise InvalidInputError(f"{f.filename}: too many soft links while resolving {path!r} "
                                "(a loop?): give the dataset's real path")
    node = f["/"] if path.startswith("/") else start
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if link is None:
            return None
        here = posixpath.join(node.name, part)
        if isinstance(link, h5py.HardLink):
            node = node[part]
        elif isinstance(link, h5py.SoftLink):
            target = posixpath.normpath(posixpath.join(node.name, link.path))
            node = resolve_inside(f, target, depth + 1)
            if node is None:
                return None
        elif isinstance(link, h5py.ExternalLink):
            raise UnsafeFileError(
                f"{f.filename}: {here!r} is an external link to {link.filename}:{link.path}; "
                "speckle reads only data stored inside the file: open that file directly")
        else:
            raise UnsafeFileError(f"{f.filename}: {here!r} is a user-defined link, which "
                                  "speckle does not follow: give the path of a plain dataset")
    return node


def _locate(f: h5py.File, dataset: str | None, source: str) -> h5py.Dataset:
    """Find the frame dataset (see the module documentation)."""
    if dataset is not None:
        node = resolve_inside(f, str(dataset))
        if isinstance(node, h5py.Group):
            node = _nxdata_signal(f, node) or node
        if isinstance(node, h5py.Dataset):
            return node
        what = "is a group, not a dataset" if node is not None else "does not exist"
        raise InvalidInputError(f"{source}: {dataset!r} {what}; {_candidates_text(f)}")
    node = resolve_inside(f, DEFAULT_DATASET)
    if isinstance(node, h5py.Dataset):
        return node
    node = _nexus_default(f)
    if node is not None:
        return node
    raise InvalidInputError(
        f"{source}: no {DEFAULT_DATASET} and no NeXus default data; {_candidates_text(f)}")


def _attr_str(obj, name: str) -> str | None:
    value = obj.attrs.get(name)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.ravel()[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _nx_child(f: h5py.File, group: h5py.Group, nx_class: str):
    """The child named by ``@default``, else the first (hard-linked) child of ``nx_class``."""
    name = _attr_str(group, "default")
    if name:
        node = resolve_inside(f, posixpath.join(group.name, name))
        if isinstance(node, h5py.Group):
            return node
    for name in sorted(group):
        if isinstance(group.get(name, getlink=True), h5py.HardLink):
            child = group[name]
            if isinstance(child, h5py.Group) and _attr_str(child, "NX_class") == nx_class:
                return child
    return None


def _nxdata_signal(f: h5py.File, nxdata: h5py.Group):
    """The signal dataset of an NXdata group (``@signal``, or a child with ``@signal=1``)."""
    name = _attr_str(nxdata, "signal")
    if name:
        node = resolve_inside(f, posixpath.join(nxdata.name, name))
        return node if isinstance(node, h5py.Dataset) else None
    for name in sorted(nxdata):
        if isinstance(nxdata.get(name, getlink=True), h5py.HardLink):
            child = nxdata[name]
            if isinstance(child, h5py.Dataset) and str(child.attrs.get("signal", "")) == "1":
                return child
    return None


def _nexus_default(f: h5py.File):
    """Follow the NeXus default-plot chain: / -> NXentry -> NXdata -> signal."""
    entry = _nx_child(f, f["/"], "NXentry")
    nxdata = _nx_child(f, entry, "NXdata") if entry is not None else None
    return _nxdata_signal(f, nxdata) if nxdata is not None else None


def _candidates_text(f: h5py.File) -> str:
    """Describe the datasets that look like images, for an error message."""
    found = []

    def visit(name, obj):
        if (isinstance(obj, h5py.Dataset) and 2 <= obj.ndim and obj.shape[-1] > 1
                and obj.shape[-2] > 1 and all(s == 1 for s in obj.shape[:-3])
                and np.issubdtype(obj.dtype, np.number)
                and not np.issubdtype(obj.dtype, np.complexfloating)):
            found.append((obj.size, "/" + name, obj.shape, obj.dtype))

    f.visititems(visit)  # visits objects through hard links only, never other files
    if not found:
        return "the file holds no 2D or 3D numeric dataset"
    found.sort(key=lambda item: (-item[0], item[1]))
    listed = ", ".join(f"{name} {shape} {dtype}" for _, name, shape, dtype
                       in found[:_MAX_CANDIDATES])
    more = f" and {len(found) - _MAX_CANDIDATES} more" if len(found) > _MAX_CANDIDATES else ""
    return f"image datasets in the file: {listed}{more}: choose one with dataset='{found[0][1]}'"


def _check_inside_file(ds: h5py.Dataset, source: str) -> None:
    """Refuse a dataset whose data live in other files (virtual sources, external storage)."""
    here = os.path.realpath(ds.file.filename)
    if ds.is_virtual:
        for vs in ds.virtual_sources():
            other = os.path.join(os.path.dirname(here), vs.file_name)
            if vs.file_name != "." and os.path.realpath(other) != here:
                raise UnsafeFileError(
                    f"{source}: dataset {ds.name!r} is a virtual dataset reading from another "
                    f"file ({vs.file_name!r}); speckle reads only data stored inside the file: "
                    "open the source files directly or copy the frames into this file")
    plist = ds.id.get_create_plist()
    if plist.get_external_count() > 0:
        name = plist.get_external(0)[0]
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        raise UnsafeFileError(
            f"{source}: dataset {ds.name!r} keeps its raw data in an external file ({name!r}); "
            "speckle reads only data stored inside the HDF5 file: copy the data into it")


def check_stored(ds: h5py.Dataset, source: str, declared: int, what: str) -> None:
    """Refuse a dataset that the file cannot hold, before anything is read.

    HDF5 hands out its fill value (zeros) for data never written, so a few kB can declare
    petabytes and be read as zeros for days. Refused: no data at all, chunks missing (a file cut
    short, or still being written) beyond :data:`MAX_UNWRITTEN_CHUNKS` or
    :data:`MAX_UNWRITTEN_BYTES`, more than :data:`MAX_SMALL_CHUNKS` tiny chunks, data past the end
    of the file, and compression beyond
    :data:`~speckle.io.limits.MAX_STORED_RATIO` for more than a GiB (a compression bomb).

    Parameters
    ----------
    ds : h5py.Dataset
    source : str
        The file, for messages.
    declared : int
        The declared size in bytes (from :func:`~speckle.io.limits.check_declared_size`).
    what : str
        The dataset, for messages.
    """
    if ds.is_virtual:
        return  # its sources were checked to lie in this file; their storage is theirs
    layout = ds.id.get_create_plist().get_layout()
    if layout == h5py.h5d.COMPACT:
        return  # stored in the object header: at most 64 kB, all present
    file_bytes = file_size(ds.file.filename)
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.id.get_offset()
        if offset is None:
            raise _holds_nothing(source, what, declared)
        if offset + declared > file_bytes:
            raise damaged(source, f"{what} needs {human_bytes(declared)} from byte {offset}, "
                                  f"the file has {human_bytes(file_bytes)}", "HDF5 file")
        return
    expected = math.prod(-(-n // c) for n, c in zip(ds.shape, ds.chunks))
    chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
    if expected > MAX_SMALL_CHUNKS and chunk_bytes < SMALL_CHUNK_BYTES:
        raise UnsafeFileError(
            f"{source}: {what} is cut into {expected} chunks of {chunk_bytes} bytes; reading so "
            "many tiny pieces would take minutes: rewrite it with one chunk per frame")
    written = ds.id.get_num_chunks()
    if written == 0:
        raise _holds_nothing(source, what, declared)
    missing = expected - written
    if missing > MAX_UNWRITTEN_CHUNKS or declared / expected * missing > MAX_UNWRITTEN_BYTES:
        raise InvalidInputError(
            f"{source}: {what} holds data for only {written} of its {expected} chunks (the rest, "
            f"{human_bytes(declared // expected * (expected - written))}, would read as the fill "
            "value): the file is incomplete, still being written or damaged: open it again once "
            "it is complete, or copy it again")
    stored = ds.id.get_storage_size()
    if stored > file_bytes:
        raise damaged(source, f"{what} stores {human_bytes(stored)}, the file has "
                              f"{human_bytes(file_bytes)}", "HDF5 file")
    if declared > 2**30 and declared > stored * MAX_STORED_RATIO:
        raise UnsafeFileError(
            f"{source}: {what} declares {human_bytes(declared)} stored in "
            f"{human_bytes(stored)} (compressed {declared / max(stored, 1):.0f}:1, beyond any "
            "detector data): a compression bomb or a damaged file, not read")


BITSHUFFLE_FILTER = 32008


class BitshuffleGuard:
    """Checks the framing of bitshuffle chunks before HDF5's decoder reads them.

    The bitshuffle plugin trusts the sizes written inside a chunk (its total size, its block
    size, each block's compressed size) and reads past the chunk when they lie: one damaged
    chunk crashes the whole process (found by tests/test_io_fuzz.py). Each chunk's raw bytes are
    checked once, before the first read that needs it; the compressed blocks themselves are
    decoded by LZ4/zstd within their stated sizes, which is safe.

    Use :meth:`of`, which returns None for datasets without bitshuffle compression.
    """

    def __init__(self, ds: h5py.Dataset, source: str, elem_size: int):
        self.ds, self.source, self.elem_size = ds, source, elem_size
        self.chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
        self.axis = ds.ndim - 3 if ds.ndim >= 3 else None  # the frames' axis
        self.checked: set[tuple] = set()

    @classmethod
    def of(cls, ds: h5py.Dataset, source: str) -> "BitshuffleGuard | None":
        """A guard for ``ds`` when bitshuffle compresses it; refuses damaged filter parameters."""
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _flags, values, _name = plist.get_filter(i)
            if code != BITSHUFFLE_FILTER or len(values) < 5 or values[4] == 0:
                continue  # another filter, or bitshuffle without compression (no framing)
            if values[2] not in (0, ds.dtype.itemsize) or values[4] not in (2, 3):
                raise damaged(source, f"dataset {ds.name!r} has bitshuffle parameters {values} "
                                      f"that do not fit its {ds.dtype} data", "HDF5 file")
            return cls(ds, source, ds.dtype.itemsize)
        return None

    def check(self, start: int, stop: int) -> None:
        """Check every chunk holding frames ``start:stop`` (once each)."""
        ranges = []
        for d, (n, c) in enumerate(zip(self.ds.shape, self.ds.chunks)):
            ranges.append(range(start // c * c, stop, c) if d == self.axis else range(0, n, c))
        for offset in itertools.product(*ranges):
            if offset in self.checked:
                continue
            try:
                mask, raw = self.ds.id.read_direct_chunk(offset)
            except RuntimeError:
                continue  # never written: HDF5 hands out the fill value, no decoding
            if not mask & 1:  # the filter ran on this chunk (bit set: it was skipped)
                problem = bitshuffle_framing(raw, self.chunk_bytes, self.elem_size)
                if problem:
                    raise damaged(self.source, f"chunk at {offset} of {self.ds.name!r}: {problem}",
                                  "HDF5 file")
            self.checked.add(offset)


def bitshuffle_framing(raw: bytes, chunk_bytes: int, elem_size: int) -> str | None:
    """What is wrong with the framing of one bitshuffle-compressed chunk, or None.

    The layout (bitshuffle's HDF5 filter): the uncompressed size (8 bytes, big-endian), the block
    size in bytes (4), then per block its compressed size (4) and that many bytes, then the
    last ``size % 8`` elements as they are.
    """
    if len(raw) < 12:
        return f"{len(raw)} bytes, shorter than its header"
    total, block_bytes = int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:12], "big")
    if total != chunk_bytes:
        return f"says it holds {total} bytes, the chunk holds {chunk_bytes}"
    if block_bytes == 0 or block_bytes % (8 * elem_size) or block_bytes > 2**30:
        return f"block size {block_bytes} bytes is not a multiple of 8 elements"
    size, block = total // elem_size, block_bytes // elem_size
    full, rest = divmod(size, block)
    pos, end = 12, len(raw)
    for _ in range(full + (1 if rest >= 8 else 0)):
        if pos + 4 > end:
            return "its blocks end early"
        pos += 4 + int.from_bytes(raw[pos:pos + 4], "big")
        if pos > end:
            return "a block runs past the end of the chunk"
    if pos + size % 8 * elem_size != end:
        return f"its blocks and tail fill {pos + size % 8 * elem_size} of its {end} bytes"
    return None


def _holds_nothing(source: str, what: str, declared: int) -> UnsafeFileError:
    return UnsafeFileError(
        f"{source}: {what} declares {human_bytes(declared)} but the file holds none of its data "
        "(it was never written; HDF5 would hand out zeros): not a dataset to analyse")


def ensure_filters(ds: h5py.Dataset) -> None:
    """Register the detector compression filters that hdf5plugin provides when ``ds`` uses a
    filter HDF5 lacks. Importing hdf5plugin loads all twelve (12 ms of every command's start),
    so it is imported only for data that need it; readers call this before reading."""
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        if not h5py.h5z.filter_avail(plist.get_filter(i)[0]):
            with contextlib.suppress(ImportError):
                import hdf5plugin  # noqa: F401, PLC0415 - registers the filters with HDF5
            return


def _check_filters(ds: h5py.Dataset, source: str) -> None:
    """Refuse compression that HDF5 cannot decode here, before any read fails obscurely."""
    ensure_filters(ds)
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _flags, _values, name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            raise UnsupportedFormatError(
                f"{source}: dataset {ds.name!r} is compressed with HDF5 filter {code} "
                f"({name or 'unnamed'}), which is not installed here: install hdf5plugin or "
                "that filter's plugin, or save the data uncompressed")


# --- metadata --------------------------------------------------------------------------------

_LENGTH_M = {
    "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
    "cm": 1e-2, "mm": 1e-3, "millimeter": 1e-3, "millimeters": 1e-3, "millimetre": 1e-3,
    "um": 1e-6, "\u00b5m": 1e-6, "\u03bcm": 1e-6, "micron": 1e-6, "microns": 1e-6,
    "micrometer": 1e-6, "micrometers": 1e-6, "micrometre": 1e-6,
    "nm": 1e-9, "nanometer": 1e-9, "nanometers": 1e-9, "nanometre": 1e-9,
    "pm": 1e-12, "a": 1e-10, "\u00e5": 1e-10, "\u212b": 1e-10, "angstrom": 1e-10,
    "angstroms": 1e-10, "ang": 1e-10,
}
_TIME_S = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "usec": 1e-6, "microsecond": 1e-6,
    "microseconds": 1e-6, "ns": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9,
}
_ENERGY_EV = {"ev": 1.0, "electronvolt": 1.0, "kev": 1e3, "j": 1.0 / 1.602176634e-19}
_PIXEL_UNITS = {"pixel", "pixels", "px", "pix"}
_UNITS = {"length": _LENGTH_M, "time": _TIME_S, "energy": _ENERGY_EV}


def _read_value(f: h5py.File, path: str):
    """Return ``(first value as float, units or None)`` of a small dataset, or None.

    Metadata are optional, so anything odd (missing, unsafe, non-numeric) is skipped rather
    than refused; unsafe links are never followed.
    """
    try:
        ds = resolve_inside(f, path)
        if not isinstance(ds, h5py.Dataset) or ds.size == 0:
            return None
        _check_inside_file(ds, f.filename)
        ensure_filters(ds)
        raw = ds[(0,) * ds.ndim] if ds.ndim else ds[()]
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        value = float(raw)
    except (SpeckleError, OSError, TypeError, ValueError):
        return None
    return value, _attr_str(ds, "units")


def _to_si(value: float, units: str | None, kind: str) -> float | None:
    """Convert to SI (m, s, eV); None for units speckle does not know."""
    if units is None or not units.strip():
        return value
    scale = _UNITS[kind].get(units.strip().lower())
    return None if scale is None else value * scale


class _MetadataReader:
    """Collects NeXus metadata around one data path, noting assumptions and skipped values."""

    def __init__(self, f: h5py.File, data_path: str):
        self.f = f
        self.extra = {"hdf5_dataset": data_path}
        self.assumed: list[str] = []
        self.ignored: list[str] = []
        top = "/" + data_path.strip("/").split("/")[0]
        self.instrument = next((p + "/instrument" for p in dict.fromkeys((top, "/entry"))
                                if isinstance(_safe(f, p + "/instrument"), h5py.Group)), None)

    def detector(self) -> str | None:
        """Path of the first detector group of the instrument."""
        group = _safe(self.f, self.instrument) if self.instrument else None
        if not isinstance(group, h5py.Group):
            return None
        names = sorted(group, key=lambda n: (n != "detector", n))
        for name in names:
            if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                continue
            child = group[name]
            if isinstance(child, h5py.Group) and (
                    name.startswith("detector") or _attr_str(child, "NX_class") == "NXdetector"):
                return child.name
        return None

    def get(self, path: str, kind: str) -> float | None:
        """A positive finite SI value from ``path``, or None."""
        found = _read_value(self.f, path)
        if found is None:
            return None
        value, units = found
        converted = _to_si(value, units, kind)
        if converted is None:
            self.ignored.append(f"{path} = {value} {units} (unknown units)")
            return None
        return converted if np.isfinite(converted) and converted > 0 else None

    def energy(self) -> float | None:
        """Photon energy in eV from an energy or a wavelength."""
        for group in ("monochromator", "beam"):
            for name in ("energy", "incident_energy"):
                path = f"{self.instrument}/{group}/{name}"
                found = _read_value(self.f, path)
                if found and not found[1] and 0 < found[0] < 100:
                    self.assumed.append(f"{path} = {found[0]} taken as keV")
                    return found[0] * 1e3
                value = self.get(path, "energy")
                if value:
                    return value
        for group in ("monochromator", "beam"):
            for name in ("wavelength", "incident_wavelength"):
                path = f"{self.instrument}/{group}/{name}"
                found = _read_value(self.f, path)
                if found and not found[1] and found[0] > 1e-6:
                    self.assumed.append(f"{path} = {found[0]} taken as Angstrom")
                    return HC_EV_M / (found[0] * 1e-10)
                value = self.get(path, "length")
                if value:
                    return HC_EV_M / value
        return None

    def beam_center(self, det: str, pixel_size) -> tuple[float, float] | None:
        """Beam centre (row, col) in pixels; lengths are converted with the pixel size."""
        center = []
        for axis, name in ((0, "beam_center_y"), (1, "beam_center_x")):
            found = _read_value(self.f, f"{det}/{name}")
            if found is None:
                return None
            value, units = found
            if units and units.strip().lower() not in _PIXEL_UNITS:
                length = _to_si(value, units, "length")
                if length is None or pixel_size is None:
                    self.ignored.append(f"{det}/{name} = {value} {units} (no pixel size)")
                    return None
                value = length / pixel_size[axis]
            center.append(float(value))
        return (center[0], center[1])

    def metadata(self) -> Metadata:
        """Everything found, as :class:`Metadata`."""
        values = {}
        det = self.detector()
        if det:
            self.extra["nexus_detector"] = det
            values["frame_time"] = self.get(f"{det}/frame_time", "time")
            values["count_time"] = self.get(f"{det}/count_time", "time")
            values["distance"] = self.get(f"{det}/distance", "length")
            y = self.get(f"{det}/y_pixel_size", "length")
            x = self.get(f"{det}/x_pixel_size", "length")
            if x and y:
                values["pixel_size"] = (y, x)
            values["beam_center"] = self.beam_center(det, values.get("pixel_size"))
        if self.instrument:
            values["energy"] = self.energy()
        if self.assumed:
            self.extra["assumed_units"] = "; ".join(self.assumed)
        if self.ignored:
            self.extra["ignored_metadata"] = "; ".join(self.ignored)
        return Metadata(extra=self.extra).updated(**values)


def _safe(f: h5py.File, path: str):
    try:
        return resolve_inside(f, path)
    except SpeckleError:
        return None


def read_nexus_metadata(f: h5py.File, data_path: str) -> Metadata:
    """Read acquisition metadata from the NeXus groups around ``data_path``.

    Parameters
    ----------
    f : h5py.File
        The open file.
    data_path : str
        Path of the frame dataset; its top-level group is taken as the NXentry
        (``/entry`` is tried too).

    Returns
    -------
    Metadata
        In SI units; fields the file does not give are None. ``extra`` records the dataset
        path, the detector group, assumed units and values skipped for unknown units.
    """
    try:
        return _MetadataReader(f, data_path).metadata()
    except OSError as exc:
        raise damaged(f.filename, one_line(exc), "HDF5 file") from None
