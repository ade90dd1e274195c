"""Validation shared by the readers: shapes, dtypes, declared sizes, one-line messages.

Every reader learns a shape and a dtype from a header *before* reading data. The helpers here
decide whether that declaration is a stack of frames speckle can analyse and whether its size
is sane, so that a hostile or damaged header cannot make speckle allocate absurd amounts of
memory.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, SpeckleError, UnsafeFileError

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "MAX_COMPRESSION_RATIO",
    "MAX_FRAME_BYTES",
    "MAX_STORED_RATIO",
    "MAX_TOTAL_BYTES",
    "FrameLayout",
    "check_declared_size",
    "check_max_bytes",
    "damaged",
    "file_size",
    "frame_dtype",
    "frame_layout",
    "human_bytes",
    "library_errors",
    "one_line",
]

#: Default limit on what a reader decompresses from a ZIP member (the data could be read whole).
DEFAULT_MAX_DECOMPRESSED_BYTES = 8 * 2**30
#: No detector frame comes near this; a larger declared frame is a damaged or hostile header.
MAX_FRAME_BYTES = 2 * 2**30
#: Ceiling on any declared dataset size, even for lazily read formats (1 PiB).
MAX_TOTAL_BYTES = 2**50
#: Deflate cannot exceed about 1032:1, so a larger declared ratio is a lie (zip bomb).
MAX_COMPRESSION_RATIO = 1100
#: HDF5 filters (zstd, blosc) go further than deflate, and sparse low-count frames compress
#: well (about 1600:1 at 0.001 photons per pixel), but no detector data reaches 10000:1.
MAX_STORED_RATIO = 10_000


def one_line(text) -> str:
    """Collapse a (library) message to one line, for messages shown to beamline users."""
    return " ".join(str(text).split())


def human_bytes(n: int) -> str:
    """Format a byte count, e.g. ``human_bytes(3 * 2**30) == '3.0 GiB'``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def damaged(source, detail, kind: str = "file") -> InvalidInputError:
    """Return the error for a damaged or truncated file (the caller raises it).

    Parameters
    ----------
    source : str or path
        The file.
    detail : str or Exception
        What was found, shown in parentheses.
    kind : str
        The format, e.g. ``"HDF5 file"``.
    """
    return InvalidInputError(
        f"{source}: the {kind} is damaged or truncated ({one_line(detail)}): copy it again")


@contextlib.contextmanager
def library_errors(source, kind: str = "file"):
    """Inside this block, a parsing library's failure on a damaged file becomes :func:`damaged`.

    h5py, zipfile, zlib and numpy raise assorted types on corrupt structures (KeyError,
    RuntimeError, zlib.error, tokenize.TokenError...); speckle's own refusals pass unchanged.
    """
    try:
        yield
    except SpeckleError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any library exception here means the file is damaged
        raise damaged(source, exc, kind) from None


def check_max_bytes(max_bytes) -> int | None:
    """Validate a ``max_bytes`` argument (None or a positive integer)."""
    if max_bytes is None:
        return None
    try:
        value = int(max_bytes)
    except (TypeError, ValueError):
        raise InvalidInputError(f"max_bytes must be a number of bytes, got {max_bytes!r}") from None
    if value <= 0:
        raise InvalidInputError(f"max_bytes must be positive, got {max_bytes!r}")
    return value


def frame_dtype(dtype, source, what: str = "the data") -> np.dtype:
    """Check that ``dtype`` holds real numbers and return it in native byte order.

    Readers convert frames to the returned dtype, so that every array handed to an analysis is
    native (cupy refuses non-native byte orders).

    Raises
    ------
    UnsafeFileError
        For Python objects (pickles).
    InvalidInputError
        For strings, compound records, booleans, complex numbers.
    """
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise UnsafeFileError(
            f"{source}: {what} holds Python objects (pickled data), which speckle never loads "
            "because loading them can run code: save the frames as a numeric array")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidInputError(
            f"{source}: {what} is a table of records ({dtype}), not detector frames: "
            "save the image stack as a plain numeric array")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise InvalidInputError(
            f"{source}: {what} has data type {dtype}, not real numbers: speckle reads "
            "integer or floating-point frames")
    return dtype.newbyteorder("=")


@dataclass(frozen=True)
class FrameLayout:
    """How a stored N-d array maps to a (frames, rows, cols) stack.

    Attributes
    ----------
    stored_shape : tuple of int
        Shape in the file: (rows, cols), (frames, rows, cols), or with extra leading 1s.
    shape : tuple of int
        (n_frames, rows, cols).
    """

    stored_shape: tuple
    shape: tuple

    def key(self, start: int, stop: int) -> tuple:
        """Index into the stored array that selects frames ``start:stop``."""
        if len(self.stored_shape) == 2:
            return (slice(None), slice(None))  # the single frame
        return (0,) * (len(self.stored_shape) - 3) + (slice(start, stop),)

    def read(self, stored, start: int, stop: int, dtype, *, copy: bool = False) -> np.ndarray:
        """Read frames ``start:stop`` from an indexable ``stored`` array as native ``dtype``.

        ``copy=True`` detaches the result from a memory map, so it outlives the file.
        """
        frames = np.asarray(stored[self.key(start, stop)])
        frames = frames.reshape((stop - start, *self.shape[1:]))
        return np.array(frames, dtype=dtype, copy=True) if copy else frames.astype(dtype,
                                                                                   copy=False)


def frame_layout(shape, source, what: str = "the data") -> FrameLayout:
    """Interpret a declared shape as a stack of frames.

    2D is one frame, 3D is (frames, rows, cols), more dimensions are accepted only when the
    extra leading ones have length 1.

    Raises
    ------
    InvalidInputError
        For 0D/1D, empty, or genuinely 4D+ data.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise InvalidInputError(
            f"{source}: {what} has shape {shape}, not images: expected (rows, cols) or "
            "(frames, rows, cols)")
    if len(shape) > 3 and any(s != 1 for s in shape[:-3]):
        raise InvalidInputError(
            f"{source}: {what} has {len(shape)} dimensions {shape}; speckle reads a stack "
            "(frames, rows, cols): select or reshape the frames first")
    if 0 in shape or any(s < 0 for s in shape):
        raise InvalidInputError(f"{source}: {what} is empty (shape {shape})")
    stack = (1, *shape) if len(shape) == 2 else shape[-3:]
    return FrameLayout(stored_shape=shape, shape=stack)


def check_declared_size(shape, dtype, source, *, max_bytes: int | None = None,
                        what: str = "the data") -> int:
    """Refuse a declared (frames, rows, cols) size that is absurd or above ``max_bytes``.

    Returns
    -------
    int
        The declared size in bytes.

    Raises
    ------
    UnsafeFileError
        When one frame or the whole stack is beyond any real detector data, or above
        ``max_bytes``.
    """
    itemsize = np.dtype(dtype).itemsize
    frame_bytes = math.prod(shape[1:]) * itemsize
    total = math.prod(shape) * itemsize
    if frame_bytes > MAX_FRAME_BYTES or total > MAX_TOTAL_BYTES:
        raise UnsafeFileError(
            f"{source}: {what} declares shape {tuple(shape)} ({human_bytes(total)}), beyond any "
            "detector data; the header is damaged or not meant for speckle")
    if max_bytes is not None and total > max_bytes:
        raise UnsafeFileError(
            f"{source}: {what} declares {human_bytes(total)} (shape {tuple(shape)}), above the "
            f"limit of {human_bytes(max_bytes)}: raise max_bytes if the file is trusted")
    return total


def file_size(path) -> int:
    """Size of a file in bytes."""
    return os.stat(path).st_size
