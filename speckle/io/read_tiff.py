"""Multi-page TIFF files and numbered TIFF series, read lazily page by page.

A single TIFF file is a stack with one frame per page. A series is a directory of ``*.tif`` /
``*.tiff`` files, a glob pattern (``scan12/img_*.tif``) or a numbered pattern
(``scan12/img_%05d.tif``); its files are sorted by the numbers in their names (``img_2`` before
``img_10``) and their pages are concatenated. Each file may hold one or several pages.

Opening checks every page's header (no pixel data is read except the first frame, to prove
the compression can be decoded): all pages must have the same shape and data type, lie within
their file, and hold single-channel numeric images. A mismatch is refused with the name of the
offending file and page.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from ..errors import InvalidInputError, UnsupportedFormatError
from .dataset import Dataset, Metadata
from .limits import (check_declared_size, check_max_bytes, damaged, file_size, frame_dtype,
                     frame_layout, one_line)
from .sniff import describe_content, expand_series, sniff_head

__all__ = ["TiffDataset", "open_tiff", "open_tiff_series"]


def open_tiff(path, *, dataset=None, max_bytes: int | None = None) -> "TiffDataset":
    """Open a (multi-page) TIFF file as a stack of frames, one per page.

    Parameters
    ----------
    path : str or os.PathLike
        The TIFF or BigTIFF file.
    dataset : None
        Not applicable to TIFF (a TIFF file holds one stack); anything else is refused.
    max_bytes : int, optional
        Refuse a stack whose declared size is larger (default: no limit beyond sanity).

    Returns
    -------
    TiffDataset
    """
    _no_dataset(path, dataset)
    return TiffDataset([Path(path)], source=str(path), format="tiff", max_bytes=max_bytes)


def open_tiff_series(path, *, dataset=None, max_bytes: int | None = None) -> "TiffDataset":
    """Open a numbered series of TIFF files as one stack.

    Parameters
    ----------
    path : str or os.PathLike
        A directory of ``*.tif``/``*.tiff`` files, a glob pattern or a numbered pattern
        (``img_%05d.tif``).
    dataset : None
        Not applicable; anything else is refused.
    max_bytes : int, optional
        Refuse a stack whose declared size is larger (default: no limit beyond sanity).

    Returns
    -------
    TiffDataset
        With ``format == "tiff-series"`` and ``files`` the sorted list of files.
    """
    _no_dataset(path, dataset)
    return TiffDataset(expand_series(path), source=str(path), format="tiff-series",
                       max_bytes=max_bytes)


def _no_dataset(path, dataset) -> None:
    if dataset is not None:
        raise InvalidInputError(f"{path}: dataset={dataset!r} does not apply to TIFF, which "
                                "holds one stack of pages: leave dataset out")


@contextmanager
def _tifffile_errors():
    """Collect what tifffile logs as errors (it skips a broken page list instead of raising)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


class TiffDataset(Dataset):
    """Pages of one or several TIFF files as one lazily read stack.

    Parameters
    ----------
    files : list of Path
        The files, in frame order.
    source : str
        The path or pattern the user gave.
    format : str
        ``"tiff"`` or ``"tiff-series"``.
    max_bytes : int, optional
        Refuse a stack whose declared size is larger.

    Attributes
    ----------
    files : list of Path
        The files, in frame order.
    """

    def __init__(self, files, *, source: str, format: str, max_bytes: int | None = None):
        max_bytes = check_max_bytes(max_bytes)
        self.files = list(files)
        self.source = source
        self.format = format
        self._lock = threading.Lock()
        self._open: tuple[int, tifffile.TiffFile] | None = None
        reference: dict = {}
        counts = [self._scan(path, reference) for path in self.files]
        self._first = list(itertools.accumulate(counts, initial=0))  # each file's first frame
        self.dtype = frame_dtype(reference["dtype"], self.files[0], "the first page")
        self.shape = (self._first[-1], *reference["shape"])
        check_declared_size(self.shape, self.dtype, source, max_bytes=max_bytes)
        self.metadata = Metadata(extra={"files": len(self.files)} if format == "tiff-series"
                                 else {})
        try:
            self._read(0, 1)  # proves the compression can be decoded before an analysis starts
        except BaseException:
            self.close()
            raise

    def _scan(self, path: Path, reference: dict) -> int:
        """Validate every page header of one file against ``reference`` (the first page).

        Returns the number of pages; fills ``reference`` from the very first page.
        """
        try:
            with open(path, "rb") as fh:
                head = fh.read(64)
            size = file_size(path)
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read it ({exc.strerror or exc}): check "
                                    "its permissions") from None
        if sniff_head(head) != "tiff":
            raise UnsupportedFormatError(
                f"{path}: this file of the TIFF series is not a TIFF image "
                f"({describe_content(head)}): remove it from the series")
        try:
            with _tifffile_errors() as errors, tifffile.TiffFile(path) as tif:
                n_pages = 0
                for index, page in enumerate(tif.pages):
                    self._check_page(path, index, page, size, reference)
                    n_pages += 1
                declared = (tif.imagej_metadata or {}).get("images", 0) if tif.is_imagej else 0
        except InvalidInputError:
            raise
        except Exception as exc:  # tifffile raises assorted types for corrupt structures
            raise damaged(path, exc, "TIFF file") from None
        if errors:
            raise damaged(path, errors[0].getMessage(), "TIFF file")
        if n_pages == 0:
            raise InvalidInputError(f"{path}: the TIFF file holds no image")
        if declared > n_pages:
            # ImageJ writes stacks above 4 GiB with one page header for all frames.
            raise UnsupportedFormatError(
                f"{path}: ImageJ stack of {declared} frames with only {n_pages} page headers; "
                "speckle cannot index its frames: save it as BigTIFF or HDF5")
        return n_pages

    @staticmethod
    def _check_page(path, index: int, page, size: int, reference: dict) -> None:
        where = f"{path} page {index}"
        shape = tuple(page.shape)
        if getattr(page, "samplesperpixel", 1) > 1:
            raise InvalidInputError(
                f"{where}: colour or multi-sample image {shape}; speckle reads single-channel "
                "frames (tifffile saves a stack of 3 or 4 frames as RGB unless given "
                "photometric='minisblack')")
        layout = frame_layout(shape, where, "the page")
        if layout.shape[0] != 1:
            raise InvalidInputError(f"{where}: a volume {shape}, not a 2D frame")
        dtype = page.dtype
        if dtype is None:
            raise UnsupportedFormatError(f"{where}: pixel format not supported "
                                         f"(bits per sample {page.bitspersample})")
        if not reference:
            reference.update(shape=layout.shape[1:], dtype=np.dtype(dtype))
        elif layout.shape[1:] != reference["shape"] or np.dtype(dtype) != reference["dtype"]:
            raise InvalidInputError(
                f"{where}: frame {layout.shape[1:]} {np.dtype(dtype)} does not match the first "
                f"frame {reference['shape']} {reference['dtype']}: remove or fix this file")
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
        if ends and max(ends) > size:
            raise damaged(path, f"page {index} needs {max(ends)} bytes, the file has {size}",
                          "TIFF file")

    def _tiff(self, file_index: int) -> tifffile.TiffFile:
        """The open TiffFile of one file (one handle is kept, for sequential reads)."""
        if self._open is None or self._open[0] != file_index:
            self.close()
            self._open = (file_index, tifffile.TiffFile(self.files[file_index]))
        return self._open[1]

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.frame_shape), self.dtype)
        with self._lock:
            for index in range(start, stop):
                file_index = bisect.bisect_right(self._first, index) - 1
                path = self.files[file_index]
                try:
                    page = self._tiff(file_index).pages[index - self._first[file_index]]
                    frame = page.asarray()
                except Exception as exc:  # decoding errors come in many types
                    message = one_line(exc)
                    if "imagecodecs" in message:
                        raise UnsupportedFormatError(
                            f"{path}: cannot decode this TIFF compression ({message}): "
                            "pip install imagecodecs") from None
                    raise damaged(path, message, "TIFF file") from None
                if frame.size != out[0].size:
                    raise InvalidInputError(f"{path}: page shape {frame.shape} changed since "
                                            f"the series was opened: open it again")
                out[index - start] = frame.reshape(self.frame_shape)
        return out

    def close(self) -> None:
        """Close the open file handle (idempotent)."""
        if self._open is not None:
            self._open[1].close()
            self._open = None
