"""Format detection from a file's first bytes (its content, never its name).

A beamline disk holds files with misleading or missing extensions (``scan.h5`` that is a text
log, ``frames.tif`` that is HDF5), so :func:`sniff_format` looks at signatures only:

========================  ===========================================================
format                    signature
========================  ===========================================================
``"hdf5"``                ``\\x89HDF\\r\\n\\x1a\\n`` at offset 0, 512, 1024, 2048, ...
                          (a user block shifts it by a power of two)
``"tiff"``                ``II*\\0`` / ``MM\\0*`` (classic) or ``II+\\0`` / ``MM\\0+`` (BigTIFF)
``"fits"``                ``SIMPLE  =`` (the first card of a FITS primary header)
``"npy"``                 ``\\x93NUMPY``
``"zip"``                 ``PK\\x03\\x04``: a ``.npz`` or a ZIP of one ``.npy`` (same thing)
``"tiff-series"``         a directory, a glob pattern (``frames/*.tif``) or a numbered
                          pattern (``frames/img_%05d.tif``) naming TIFF files
========================  ===========================================================
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..errors import DatasetNotFoundError, InvalidInputError, UnsupportedFormatError
from .limits import one_line

__all__ = [
    "FORMATS",
    "SUPPORTED_FORMATS_TEXT",
    "check_path_text",
    "DatasetNotFoundError",
    "describe_content",
    "expand_series",
    "is_series_pattern",
    "series_sort_key",
    "sniff_format",
    "sniff_head",
]

FORMATS = ("hdf5", "tiff", "fits", "npy", "zip", "tiff-series")
SUPPORTED_FORMATS_TEXT = ("speckle reads HDF5/NeXus, TIFF (multi-page or a numbered series), "
                          "FITS, NumPy .npy, and .npz or a ZIP of one .npy")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HEAD_SIGNATURES = (
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"),
    (b"SIMPLE  =", "fits"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "zip"),
)
# Signatures of formats speckle does not read, to tell the user what the file is instead.
_OTHER_SIGNATURES = (
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data: decompress it first (gunzip)"),
    (b"BZh", "bzip2-compressed data: decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed data: decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data: decompress it first (unzstd)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: extract it first"),
    (b"\x89PNG\r\n\x1a\n", "a PNG picture, not detector data"),
    (b"\xff\xd8\xff", "a JPEG picture, not detector data"),
    (b"%PDF", "a PDF document"),
    (b"###CBF", "a CBF image: convert it to HDF5 or TIFF"),
    (b"CDF\x01", "a netCDF-3 file"),
    (b"CDF\x02", "a netCDF-3 file"),
)
_SERIES_PATTERN = re.compile(r"[*?\[]|%0?\d*d")


def is_series_pattern(path) -> bool:
    """True when ``path`` is a glob (``*``, ``?``, ``[``) or numbered (``%05d``) pattern."""
    return bool(_SERIES_PATTERN.search(Path(path).name))


def sniff_head(head: bytes) -> str | None:
    """Return the format whose signature starts ``head``, or None.

    Only offset 0 is checked; :func:`sniff_format` also looks for an HDF5 user block.
    """
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    for signature, fmt in _HEAD_SIGNATURES:
        if head.startswith(signature):
            return fmt
    return None


def describe_content(head: bytes) -> str:
    """Describe what unrecognised content looks like, for an error message.

    Examples
    --------
    >>> describe_content(b"temperature,pressure")
    'looks like text starting with "temperature,pressure"'
    """
    if not head:
        return "the file is empty (0 bytes)"
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return f"looks like {what}"
    lowered = head[:64].lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "looks like a web page (HTML): the download probably failed"
    text = _as_text(head)
    if text is not None:
        return f'looks like text starting with "{one_line(text)[:40]}"'
    return "unrecognised binary data (first bytes " + head[:8].hex(" ") + ")"


def _as_text(data: bytes) -> str | None:
    """Decode printable UTF-8 text, or return None for binary data."""
    for cut in range(4):  # a multi-byte character may be cut at the end of the head
        try:
            text = data[:len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return text if all(c.isprintable() or c in "\r\n\t" for c in text) else None
    return None


def sniff_format(path) -> str:
    """Detect the format of ``path`` from its content.

    Parameters
    ----------
    path : str or os.PathLike
        A file, a directory of TIFF files, or a glob/numbered pattern of TIFF files.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    DatasetNotFoundError
        When nothing exists at ``path``.
    UnsupportedFormatError
        When the content is no supported format; the message says what it looks like.
    InvalidInputError
        When the path is unreadable or not a regular file (a device, a pipe).
    """
    check_path_text(path)
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        if is_series_pattern(path):
            return "tiff-series"
        raise DatasetNotFoundError(f"{path}: no such file or directory: check the path") from None
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read it ({exc.strerror}): check the path "
                                "and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        return "tiff-series"
    if not stat.S_ISREG(st.st_mode):
        # Reading a pipe or a device could block forever or never end.
        raise InvalidInputError(f"{path}: not a regular file (a device, pipe or socket): "
                                "give the path of a data file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            fmt = sniff_head(head) or _hdf5_after_user_block(fh, st.st_size)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read it ({exc.strerror or exc}): check its "
                                "permissions") from None
    if fmt is None:
        raise UnsupportedFormatError(
            f"{path}: unsupported content, {describe_content(head)}; {SUPPORTED_FORMATS_TEXT}")
    return fmt


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_path_text(path) -> None:
    """Refuse a path holding NUL or control characters (line breaks, escapes).

    No data file needs them, and a message naming such a file could not stay on one line (or
    would rewrite the user's terminal).

    Raises
    ------
    InvalidInputError
        Naming the path as a Python literal (``'a\\nb.h5'``), on one line.
    """
    text = os.fspath(path)
    text = text.decode("utf-8", "surrogateescape") if isinstance(text, bytes) else text
    if _CONTROL.search(text):
        raise InvalidInputError(f"{text!r}: the file name holds control characters (a NUL, a line "
                                "break or an escape): rename the file")


def _hdf5_after_user_block(fh, size: int) -> str | None:
    """Look for the HDF5 signature at 512, 1024, 2048, ... (the possible user-block sizes)."""
    offset = 512
    while offset + len(HDF5_SIGNATURE) <= size:
        fh.seek(offset)
        if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return "hdf5"
        offset *= 2
    return None


def series_sort_key(path) -> tuple:
    """Sort key putting ``img_2.tif`` before ``img_10.tif`` (numbers compared as numbers)."""
    parts = re.split(r"(\d+)", Path(path).name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def expand_series(path) -> list[Path]:
    """List the files of a TIFF series, sorted by the numbers in their names.

    Parameters
    ----------
    path : str or os.PathLike
        A directory (its ``*.tif`` and ``*.tiff`` files, any case, hidden files excepted), a
        glob pattern, or a numbered pattern such as ``img_%05d.tif``.

    Raises
    ------
    DatasetNotFoundError
        When no file matches.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        # Hidden files (macOS "._img_1.tif" resource forks on USB disks) are not frames.
        files = [p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff")
                 and not p.name.startswith(".") and p.is_file()]
        if not files:
            raise DatasetNotFoundError(
                f"{path}: the directory holds no TIFF files (*.tif, *.tiff): give a data file, "
                "or a pattern such as frames/img_*.tif")
    else:
        name = path.name
        regex = _pattern_regex(name)
        parent = path.parent
        if any(c in str(parent) for c in "*?["):
            raise InvalidInputError(f"{path}: a pattern may use wildcards in the file name only, "
                                    "not in the directories")
        files = [p for p in parent.glob(re.sub(r"%0?\d*d", "*", name))
                 if p.is_file() and regex.fullmatch(p.name)] if parent.is_dir() else []
        if not files:
            raise DatasetNotFoundError(f"{path}: no file matches this pattern: check the path")
    return sorted(files, key=series_sort_key)


def _pattern_regex(name: str) -> re.Pattern:
    """Regex checking the printf integers (``%05d``) of a pattern.

    Glob wildcards are matched loosely here: :meth:`Path.glob` has already enforced them.
    """
    out = []
    for token in re.split(r"(%0?\d*d|\*|\?|\[[^\]]*\])", name):
        if token.startswith("%"):
            width = re.sub(r"\D", "", token)
            out.append(r"\d{%d,}" % int(width) if token.startswith("%0") and width else r"\d+")
        elif token == "*":
            out.append(".*")
        elif token == "?" or token.startswith("["):
            out.append(".")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))
