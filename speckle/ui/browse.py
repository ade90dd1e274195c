"""Listing the beamline data folders for the data chooser.

The library function ``speckle.io.browse.list_entries(root, rel)`` (shared with the server
extension's data API) is used when it exists; until then :func:`_fallback_entries` stands in.
:func:`list_entries` is the only place that knows which one runs, and converts what the library
returns into :class:`Entry` records, so swapping is one import.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InvalidInputError, SpeckleError
from ..io.sniff import sniff_format

__all__ = ["Entry", "list_entries", "resolve_entry"]

#: At most this many files of one folder are inspected (newest first).
MAX_FILES = 500


@dataclass(frozen=True)
class Entry:
    """One item of a data folder.

    Attributes
    ----------
    name : str
    rel : str
        Path relative to the root, ``/``-separated.
    is_dir : bool
    mtime : float
        Modification time, seconds since the epoch.
    size : int or None
        Bytes (files only).
    format : str or None
        The format speckle reads it as (files only).
    """

    name: str
    rel: str
    is_dir: bool
    mtime: float
    size: int | None = None
    format: str | None = None


def _clean_rel(rel) -> PurePosixPath:
    rel = PurePosixPath(str(rel or "").replace("\\", "/").lstrip("/"))
    if any(part in ("..",) for part in rel.parts):
        raise InvalidInputError(f"{rel}: '..' is not allowed in a data folder path")
    return rel


def resolve_entry(root, rel) -> Path:
    """Return the real path of ``rel`` inside ``root``, refusing anything that escapes it.

    Parameters
    ----------
    root : path-like
        A configured data folder.
    rel : str
        A path relative to it.

    Raises
    ------
    InvalidInputError
        When the path leaves the root (``..``, an absolute path, a symbolic link pointing
        outside).
    """
    base = Path(root).resolve()
    target = (base / _clean_rel(rel)).resolve()
    if target != base and base not in target.parents:
        raise InvalidInputError(f"{rel}: this path leads outside the data folder {root}")
    return target


def _fallback_entries(root, rel="") -> list[Entry]:
    """List ``root/rel``: folders and the files speckle reads, newest first, hidden skipped."""
    folder = resolve_entry(root, rel)
    if not folder.is_dir():
        raise InvalidInputError(f"{rel or '/'}: not a folder")
    base = Path(root).resolve()
    dirs, files = [], []
    with os.scandir(folder) as it:
        for item in it:
            if item.name.startswith("."):
                continue
            try:
                st = item.stat()
            except OSError:
                continue  # a dangling link or a file removed meanwhile
            real = Path(item.path).resolve()
            if real != base and base not in real.parents:
                continue  # a link that leaves the data folder
            rel_path = str(PurePosixPath(_clean_rel(rel)) / item.name)
            if stat.S_ISDIR(st.st_mode):
                dirs.append(Entry(item.name, rel_path, True, st.st_mtime))
            elif stat.S_ISREG(st.st_mode):
                files.append((st.st_mtime, item, rel_path, st.st_size))
    files.sort(key=lambda f: f[0], reverse=True)
    readable = []
    for mtime, item, rel_path, size in files[:MAX_FILES]:
        try:
            fmt = sniff_format(item.path)
        except SpeckleError:
            continue
        readable.append(Entry(item.name, rel_path, False, mtime, size, fmt))
    entries = dirs + readable
    entries.sort(key=lambda e: e.mtime, reverse=True)
    return entries


def _field(item, *names, default=None):
    for name in names:
        if isinstance(item, dict) and name in item:
            return item[name]
        if hasattr(item, name):
            return getattr(item, name)
    return default


def _as_entry(item, rel) -> Entry:
    """Convert one record of ``speckle.io.browse.list_entries`` (dict or object)."""
    name = str(_field(item, "name"))
    kind = _field(item, "kind", "type", default="")
    is_dir = bool(_field(item, "is_dir", default=kind in ("dir", "directory", "folder")))
    item_rel = _field(item, "rel", "path", default=None)
    item_rel = str(PurePosixPath(_clean_rel(rel)) / name) if item_rel is None else str(item_rel)
    return Entry(name, item_rel.lstrip("/"), is_dir, float(_field(item, "mtime", default=0) or 0),
                 _field(item, "size"), _field(item, "format"))


def list_entries(root, rel="") -> list[Entry]:
    """List a folder of a beamline data root: sub-folders and readable datasets, newest first.

    Parameters
    ----------
    root : path-like
        A configured data folder (``SPECKLE_DATA_DIRS``).
    rel : str
        Folder inside it, ``/``-separated ("" for the root itself).

    Returns
    -------
    list of Entry

    Raises
    ------
    InvalidInputError
        When ``rel`` escapes the root or is not a folder.
    """
    try:
        from ..io.browse import list_entries as library_list  # noqa: PLC0415
    except ImportError:
        return _fallback_entries(root, rel)
    entries = [_as_entry(item, rel) for item in library_list(root, rel)]
    return sorted(entries, key=lambda e: e.mtime, reverse=True)
