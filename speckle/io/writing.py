"""Is a file still being written? What its writer leaves on disk while it works.

A detector or a copy that is still writing a file leaves traces another process can see without
disturbing it:

- a lock: HDF5 (1.10 and later) and many other writers hold an exclusive ``flock`` on the file
  while it is open for writing; a shared lock request then fails at once;
- the HDF5 superblock's *file consistency flags*: bit 0 is set while the file is open for
  writing, bit 2 while a SWMR writer has it (a SWMR writer releases the lock so that readers can
  follow, but the flags stay set until it closes the file). A writer that crashed leaves the
  flags set; ``h5clear -s FILE`` clears them.

:func:`writer_still_active` looks for both. Neither proves that a file is complete (a copy
without locks shows nothing); callers combine it with a file that stopped changing and opens
cleanly (see :mod:`speckle.monitor.completeness`).
"""

from __future__ import annotations

import errno
import fcntl
import os

from .sniff import HDF5_SIGNATURE

__all__ = ["hdf5_consistency_flags", "writer_still_active"]

#: Offsets (in the superblock) of the consistency flags, by superblock version.
_FLAGS_AT = {0: (20, 4), 1: (20, 4), 2: (11, 1), 3: (11, 1)}
_OPEN_FOR_WRITE, _OPEN_FOR_SWMR_WRITE = 0x1, 0x4


def hdf5_consistency_flags(path) -> int | None:
    """The file consistency flags of an HDF5 file's superblock, or None for another content.

    The superblock may follow a user block (at 512, 1024, 2048... bytes).
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        offset = 0
        while offset + 24 <= size:
            fh.seek(offset)
            head = fh.read(24)
            if head.startswith(HDF5_SIGNATURE):
                at = _FLAGS_AT.get(head[8])
                if at is None:
                    return None
                start, length = at
                return int.from_bytes(head[start:start + length], "little")
            offset = 512 if offset == 0 else offset * 2
    return None


def _locked_by_another(path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def writer_still_active(path) -> str | None:
    """Why ``path`` looks still open for writing, or None when nothing says so.

    Parameters
    ----------
    path : path-like
        A regular file.

    Returns
    -------
    str or None
        A short reason ("it is locked by its writer", "its HDF5 superblock says it is open for
        writing (SWMR)"...), or None.
    """
    if _locked_by_another(path):
        return "it is locked by the program writing it"
    try:
        flags = hdf5_consistency_flags(path)
    except OSError:
        return None
    if flags is None:
        return None
    if flags & _OPEN_FOR_SWMR_WRITE:
        return "its HDF5 superblock says a SWMR writer has it open"
    if flags & _OPEN_FOR_WRITE:
        return ("its HDF5 superblock says it is open for writing (if its writer crashed, "
                "`h5clear -s FILE` clears that mark)")
    return None
