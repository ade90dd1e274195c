"""Write files atomically: a result file is either complete or absent, never half written.

Every writer of results (HDF5, CSV, PNG) writes into a hidden temporary file in the destination
folder and renames it onto the final name only when the whole write succeeded::

    with atomic_path("run42_results.hdf") as tmp:
        with h5py.File(tmp, "w") as f:
            ...

A crash, an exception or a full disk in the middle leaves the final path untouched (an older
file of that name survives) and removes the temporary file. The temporary file keeps the final
suffix (``.hdf``, ``.png``...) so that libraries that look at the extension still work, and its
name starts with a dot so that folder listings (and pyXpcsViewer) skip it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidInputError

__all__ = ["atomic_path", "fsync_file"]


def _create_unique(folder: Path, stem: str, suffix: str) -> Path:
    """Create (exclusively) an empty hidden file in ``folder`` and return its path."""
    for _ in range(100):
        candidate = folder / f".{stem}.{secrets.token_hex(6)}.tmp{suffix}"
        try:
            # 0o666 filtered by the umask: the final file gets the usual permissions
            fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise OSError(f"could not create a temporary file in {folder}")  # pragma: no cover


def fsync_file(path) -> None:
    """Flush a file's data to disk (so that a rename after it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path that replaces ``final_path`` only if the block succeeds.

    Parameters
    ----------
    final_path : str or path-like
        Where the file must end up. Its folder must exist.

    Yields
    ------
    pathlib.Path
        A hidden, unique, already created (empty) file in the same folder, with the same suffix
        as ``final_path``. Write the whole content there (opening it in write mode truncates it).

    Raises
    ------
    InvalidInputError
        When the destination folder does not exist or ``final_path`` is a folder.

    Notes
    -----
    On a normal exit the temporary file is flushed to disk (``fsync``) and renamed onto
    ``final_path`` with :func:`os.replace`, which is atomic on POSIX file systems; the folder is
    then synced so that the rename survives a power cut. On any exception (including
    ``KeyboardInterrupt``) the temporary file is removed, ``final_path`` is left as it was, and
    the exception propagates.
    """
    final = Path(final_path)
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInputError(
            f"cannot write {final}: the folder {folder} does not exist; create it or choose "
            "another output path")
    if final.is_dir():
        raise InvalidInputError(f"cannot write {final}: it is a folder; give a file name")
    tmp = _create_unique(folder, final.stem or "file", final.suffix)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(folder)
