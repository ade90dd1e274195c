"""Read-only listing of the datasets under the folders a hub user may browse.

The dashboards and the Jupyter server extension (``speckle_jupyter``, ``GET speckle/api/data``)
share this module. It never writes anything and never follows a path out of its root:

* :func:`list_roots` names the browsable folders: the beamline folders and the user's upload
  folder of the site configuration (:mod:`speckle.site`; missing beamline folders are skipped)
  and the demo datasets shipped with speckle.
* :func:`list_entries` lists one folder, newest first: sub-folders and the files whose first
  bytes are a format speckle reads (:func:`~speckle.io.sniff.sniff_format`; no file is opened
  further). Hidden entries, ``__pycache__``, unreadable entries and symbolic links leading
  outside the root are left out.
* :func:`safe_join` turns a relative path from a browser into a path inside a root, refusing
  absolute paths, ``..`` and symbolic links that lead outside (:class:`PathEscapeError`).
* :func:`entry_path` is the path of one listed entry, relative to its root (what a page sends
  back to open it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from ..errors import DatasetNotFoundError, InvalidInputError, UnsafeFileError
from ..site import site
from .sniff import sniff_format

__all__ = [
    "Entry",
    "PathEscapeError",
    "Root",
    "demo_dir",
    "entry_path",
    "list_entries",
    "list_roots",
    "safe_join",
]

_SKIPPED_NAMES = frozenset({"__pycache__"})


class PathEscapeError(UnsafeFileError):
    """A relative path leads outside its root (``..``, an absolute path, a symbolic link)."""


@dataclass(frozen=True)
class Root:
    """A folder a user may browse.

    Attributes
    ----------
    key : str
        Stable identifier used in requests: ``"data1"``, ``"data2"``... for the beamline folders
        (in the order of ``SPECKLE_DATA_DIRS``), ``"uploads"``, ``"demo"``.
    label : str
        What a page shows.
    path : pathlib.Path
        Absolute path of the folder.
    kind : str
        ``"beamline"``, ``"uploads"`` or ``"demo"``.
    """

    key: str
    label: str
    path: Path
    kind: str

    def to_dict(self) -> dict:
        """JSON-ready form (the path as a string)."""
        return {"key": self.key, "label": self.label, "path": str(self.path), "kind": self.kind}


@dataclass(frozen=True)
class Entry:
    """One line of a folder listing.

    Attributes
    ----------
    name : str
        File or folder name (relative to the listed folder).
    kind : str
        ``"dir"`` or ``"dataset"``.
    size : int or None
        Bytes of a dataset file; None for a folder.
    mtime : float
        Modification time, seconds since the epoch.
    format : str or None
        What :func:`~speckle.io.sniff.sniff_format` found (``"hdf5"``, ``"tiff"``, ``"fits"``,
        ``"npy"``, ``"zip"``); None for a folder.
    """

    name: str
    kind: str
    size: int | None
    mtime: float
    format: str | None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"


def entry_path(rel: str, entry: Entry) -> str:
    """The path of ``entry`` (listed in the folder ``rel``) relative to its root, ``/``-separated."""
    return str(PurePosixPath(*_relative_parts(rel), entry.name))


def demo_dir() -> Path:
    """The folder of the demo datasets shipped with speckle."""
    from .. import demo  # noqa: PLC0415 - keeps the import of speckle.io light

    return Path(demo.__file__).resolve().parent


def list_roots(environ=None) -> list[Root]:
    """Return the folders a user may browse, in display order.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read the site configuration from (default ``os.environ``; see
        :mod:`speckle.site`).

    Returns
    -------
    list of Root
        The beamline folders that exist (keys ``data1``, ``data2``... by their place in the
        configured list, so a folder not mounted yet does not shift the others), then the upload
        folder (key ``uploads``, listed even before it exists) and the demo folder (``demo``).
    """
    config = site(environ)
    roots = [Root(f"data{i + 1}", str(path), path, "beamline")
             for i, path in enumerate(config.data_dirs) if path.is_dir()]
    roots.append(Root("uploads", "My uploads", config.upload_dir, "uploads"))
    roots.append(Root("demo", "Demo datasets", demo_dir(), "demo"))
    return roots


def _relative_parts(rel) -> tuple[str, ...]:
    """Split a browser's relative path into names, refusing anything that could escape."""
    if rel is None:
        return ()
    rel = os.fspath(rel)
    if not isinstance(rel, str):
        raise InvalidInputError("a relative path must be text")
    if "\x00" in rel:
        raise PathEscapeError("a path may not contain NUL characters")
    text = rel.replace("\\", "/")
    if text.startswith("/"):
        raise PathEscapeError(f"{rel}: absolute paths are refused: give a path relative to "
                              "the data folder")
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if ".." in parts:
        raise PathEscapeError(f"{rel}: '..' is refused: give a path inside the data folder")
    return parts


def safe_join(root, rel="") -> Path:
    """Join a relative path to a root, refusing every way out of the root.

    Parameters
    ----------
    root : str or os.PathLike
        The root folder (it may itself be a symbolic link: its target is the boundary).
    rel : str
        A path relative to ``root`` (``/`` or ``\\`` separated); ``""`` means the root.

    Returns
    -------
    pathlib.Path
        The resolved path (symbolic links followed), inside the resolved root.

    Raises
    ------
    PathEscapeError
        For an absolute path, a ``..`` component, or a symbolic link leading outside ``root``.
    DatasetNotFoundError
        When ``root`` or the joined path does not exist.
    """
    parts = _relative_parts(rel)
    try:
        base = Path(root).expanduser().resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise DatasetNotFoundError(f"{root}: the data folder does not exist") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (older Pythons)
        raise InvalidInputError(f"{root}: cannot open the data folder ({exc})") from None
    target = base.joinpath(*parts)
    try:
        resolved = target.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        # Tell an escape from a missing file without following anything outside the root.
        resolved = target.resolve(strict=False)
        if not resolved.is_relative_to(base):
            raise PathEscapeError(f"{rel}: leads outside the data folder") from None
        raise DatasetNotFoundError(f"{rel}: no such file or folder in {root}") from None
    except (OSError, RuntimeError):
        raise PathEscapeError(f"{rel}: cannot be resolved (a symbolic link loop?)") from None
    if not resolved.is_relative_to(base):
        raise PathEscapeError(f"{rel}: leads outside the data folder (a symbolic link)")
    return resolved


def list_entries(root, rel: str = "", *, limit: int = 1000) -> list[Entry]:
    """List the sub-folders and datasets of a folder under ``root``, newest first.

    Parameters
    ----------
    root : str or os.PathLike
        A root folder (see :func:`list_roots`).
    rel : str
        The folder to list, relative to ``root`` (checked with :func:`safe_join`).
    limit : int
        At most this many entries (the newest) are returned.

    Returns
    -------
    list of Entry
        Sorted by modification time, newest first (then by name). Only folders and files whose
        content :func:`~speckle.io.sniff.sniff_format` recognises (it reads the first bytes
        only); hidden entries, ``__pycache__``, special files, unreadable entries and symbolic
        links leading outside ``root`` are left out.

    Raises
    ------
    PathEscapeError
        When ``rel`` leads outside ``root``.
    DatasetNotFoundError
        When the folder does not exist.
    InvalidInputError
        When ``rel`` names a file, or the folder cannot be read.
    """
    if int(limit) < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    base = safe_join(root, "")
    folder = safe_join(root, rel)
    if not folder.is_dir():
        raise InvalidInputError(f"{rel}: not a folder")
    candidates = []
    try:
        with os.scandir(folder) as it:
            for item in it:
                if item.name.startswith(".") or item.name in _SKIPPED_NAMES:
                    continue
                try:
                    st = item.stat()  # follows symbolic links
                except OSError:
                    continue  # broken link, vanished, unreadable
                if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                    continue
                if item.is_symlink():
                    try:
                        if not Path(item.path).resolve(strict=True).is_relative_to(base):
                            continue
                    except (OSError, RuntimeError):
                        continue
                candidates.append((st.st_mtime, item.name, item.path, st))
    except PermissionError:
        raise InvalidInputError(f"{rel or root}: permission denied") from None
    except OSError as exc:
        raise InvalidInputError(f"{rel or root}: cannot list it ({exc.strerror})") from None
    # Newest first; the content of a file is looked at only until `limit` entries are found.
    candidates.sort(key=lambda c: (-c[0], c[1]))
    entries: list[Entry] = []
    for mtime, name, path, st in candidates:
        if len(entries) >= limit:
            break
        if stat.S_ISDIR(st.st_mode):
            entries.append(Entry(name, "dir", None, mtime, None))
            continue
        try:
            fmt = sniff_format(path)
        except (InvalidInputError, OSError):
            continue
        if fmt == "tiff-series":  # only for folders and patterns, never a regular file
            continue
        entries.append(Entry(name, "dataset", int(st.st_size), mtime, fmt))
    return entries
