"""Memory mappings made without holding Python's interpreter lock.

With ``MAP_POPULATE`` the system maps (and clears, or fills from the page cache) every page in
the ``mmap`` call itself: 10 ms per 130 MB here. Python's :mod:`mmap` keeps the interpreter lock
through that call, so every other thread (a reader, a correlator's dispatch) stops meanwhile;
libc's ``mmap`` called through ctypes lets go of it. A :class:`Pages` holds one mapping and
unmaps it when it goes; numpy arrays over it keep it (it is their base).
"""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np

__all__ = ["Pages", "map_file_range"]


def _libc():
    """libc's mmap and munmap through ctypes, or (None, None) where there are none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        map_, unmap = libc.mmap, libc.munmap
    except (OSError, AttributeError):
        return None, None
    map_.restype = ctypes.c_void_p
    map_.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                     ctypes.c_int, ctypes.c_int64]
    unmap.restype, unmap.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]
    return map_, unmap


_mmap, _munmap = _libc()
_FAILED = ctypes.c_void_p(-1).value
#: Whether this platform maps files and anonymous shared memory here (Linux, macOS).
AVAILABLE = _mmap is not None and hasattr(mmap, "MAP_SHARED")
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class Pages:
    """One mapping of ``length`` bytes, unmapped when this object goes.

    Parameters
    ----------
    length : int
        Bytes (more than 0).
    fd : int, optional
        A file, mapped read only from ``offset`` (a multiple of
        ``mmap.ALLOCATIONGRANULARITY``); default: new shared anonymous memory (zeros,
        writable).
    offset : int
    populate : bool
        Map every page in this call (else each at its first touch).

    Attributes
    ----------
    address : int
    length : int

    Raises
    ------
    OSError
        When the system refuses the mapping.
    """

    def __init__(self, length: int, fd: int | None = None, offset: int = 0,
                 populate: bool = True):
        if not AVAILABLE:
            raise OSError("memory mappings are not available here")
        self.length = int(length)
        self.address = None
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if fd is None else 0)
        flags = mmap.MAP_SHARED | (mmap.MAP_ANONYMOUS if fd is None else 0)
        flags |= _POPULATE if populate else 0
        address = _mmap(None, self.length, prot, flags, -1 if fd is None else fd, offset)
        if address in (None, _FAILED):
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        self.address = address
        self.__array_interface__ = {"data": (address, fd is not None), "shape": (self.length,),
                                    "typestr": "|u1", "version": 3}

    def __del__(self):
        address, self.address = self.address, None
        if address is not None and _munmap is not None:
            _munmap(address, self.length)


def map_file_range(fd: int, begin: int, end: int) -> np.ndarray:
    """Bytes ``begin:end`` of an open file as a read-only uint8 array over its pages, all mapped
    at once (the mapping starts at the page boundary below ``begin``).

    Raises
    ------
    OSError
        When the system refuses the mapping.
    """
    base = begin - begin % mmap.ALLOCATIONGRANULARITY
    return np.asarray(Pages(end - base, fd=fd, offset=base))[begin - base:end - base]
