"""Memory for big arrays that a computation fills once and keeps, reused between analyses.

numpy asks for transparent huge pages on arrays of 4 MB and more; on some virtual machines the
system clears a huge page four times slower than the same memory in 4 KiB pages (measured here:
0.61 s against 0.14 s for 320 MB), and memory that is read before it is written is first mapped
to the shared zero page, so that the first write faults again and interrupts every core to
flush its TLB. The arrays here live in shared anonymous mappings of their own (small pages:
the two-time maps took 0.3 s longer in private ones, whose pages the threads fault in turn).

The first touch of new memory is the expensive part: one page fault per 4 KiB, about 1 GB/s on
the 2-core VM of the benchmarks, where writing memory already mapped runs at 10-20 GB/s. A
correlator's state and its reader's buffers are 100 MB at 256 x 256 pixels, so an analysis
spent a fifth of its time faulting. A mapping whose last array is gone therefore goes back to
a pool, and the next array of the same size takes it (as cupy's memory pool does on the GPU):
analyses after the first in a process (a dashboard's kernel, a monitor's worker) fault only
where they grow. The pool returns its mappings to the system once they have been idle for
:data:`IDLE_SECONDS`, keeps at most :data:`POOL_BYTES`, and gives idle mappings back before new
memory is mapped (a user's memory limit counts both: the pool never raises the peak). A forked
child shares the mappings that exist when it is made: neither process pools those again.
"""

from __future__ import annotations

import atexit
import mmap
import os
import sys
import threading
import time

import numpy as np

from .pages import Pages

__all__ = ["fresh_empty", "fresh_zeros", "pooled_bytes", "release_pool"]

#: Arrays smaller than this come from numpy's allocator (the C library reuses such blocks).
_MAPPED_BYTES = 2**18
#: Idle mappings are unmapped after this many seconds.
IDLE_SECONDS = 20.0
#: At most this many bytes of idle mappings are kept (the oldest go first).
POOL_BYTES = 2**30
#: With SPECKLE_MEMORY_POISON=1, what :func:`fresh_empty` hands out is filled with 0xFF bytes
#: (NaN as floats, the largest unsigned integers), new or reused, so that code reading memory
#: it never wrote shows it (the test suite runs so).
_POISON = os.environ.get("SPECKLE_MEMORY_POISON", "") not in ("", "0")


class _Mapping:
    """One anonymous mapping, its address, and the pool's generation it was made in."""

    __slots__ = ("map", "size", "address", "idle_since", "generation")

    def __init__(self, size: int, populate: bool, generation: int):
        # populate: the system maps and clears every page in this call, half the time of
        # faulting them one by one (without the interpreter lock: see speckle.pages)
        self.map = Pages(size, populate=populate)
        self.size = size
        self.address = self.map.address
        self.idle_since = 0.0
        self.generation = generation


class _Lease:
    """What an array handed out is a view of: when the last array over it is gone, its
    mapping goes back to the pool (numpy keeps the object behind ``__array_interface__`` as
    the arrays' base)."""

    def __init__(self, mapping: _Mapping, shape: tuple, dtype: np.dtype):
        self._mapping = mapping
        self.__array_interface__ = {"data": (mapping.address, False), "shape": shape,
                                    "typestr": dtype.str, "version": 3}

    def __del__(self):
        try:
            _POOL.give_back(self._mapping)
        except Exception:  # interpreter shutdown: the mapping is unmapped with the process
            pass


class _Pool:
    """Idle mappings by size, returned to the system after :data:`IDLE_SECONDS`."""

    def __init__(self):
        self.generation = 0
        self._reset()

    def forked(self) -> None:
        """After a fork, in the parent: the mappings in use are shared with the child."""
        self.generation += 1

    def forked_child(self) -> None:
        """After a fork, in the child: a lock held in the parent by a thread the child lacks
        would never be released; the idle mappings are the parent's."""
        self.generation += 1
        self._reset()

    def _reset(self):
        # reentrant: the collector may free an array (and so call give_back) in any
        # allocation, also in one made while the lock is held
        self.lock = threading.RLock()
        self.idle: dict[int, list[_Mapping]] = {}
        self.bytes = 0
        self.timer: threading.Timer | None = None
        self.closing = False

    def close(self) -> None:
        """At exit: keep nothing more (a timer thread started now would never run)."""
        self.closing = True
        self.clear()

    def take(self, size: int) -> _Mapping | None:
        """An idle mapping of ``size`` bytes; else None, after returning idle mappings of at
        least ``size`` bytes in all to the system (oldest first): memory kept for reuse never
        adds to what the process holds at its peak."""
        with self.lock:
            free = self.idle.get(size)
            if not free:
                self._drop(lambda m: True, size)
                return None
            mapping = free.pop()
            self.bytes -= size
            return mapping

    def give_back(self, mapping: _Mapping) -> None:
        if (mapping.size > POOL_BYTES or mapping.generation != self.generation
                or self.closing or sys.is_finalizing()):
            return  # unmapped with the mapping object (at exit: no timer thread may start)
        mapping.idle_since = time.monotonic()
        with self.lock:
            self.idle.setdefault(mapping.size, []).append(mapping)
            self.bytes += mapping.size
            if self.bytes > POOL_BYTES:
                self._drop(lambda m: True, self.bytes - POOL_BYTES)
            if self.timer is None:
                self.timer = threading.Timer(IDLE_SECONDS, self._expire)
                self.timer.daemon = True
                self.timer.start()

    def _drop(self, which, at_least=None) -> int:
        """Forget idle mappings for which ``which(m)`` holds, oldest first (all of them, or
        until ``at_least`` bytes are gone); the lock is held. Returns the bytes dropped."""
        candidates = sorted((m for free in self.idle.values() for m in free if which(m)),
                            key=lambda m: m.idle_since)
        dropped = 0
        for m in candidates:
            if at_least is not None and dropped >= at_least:
                break
            self.idle[m.size].remove(m)
            dropped += m.size
        self.idle = {size: free for size, free in self.idle.items() if free}
        self.bytes -= dropped
        return dropped

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            self._drop(lambda m: now - m.idle_since >= IDLE_SECONDS)
            self.timer = None
            if self.idle:
                wait = IDLE_SECONDS - (now - min(m.idle_since for free in self.idle.values()
                                                 for m in free))
                self.timer = threading.Timer(max(wait, 0.1), self._expire)
                self.timer.daemon = True
                self.timer.start()

    def clear(self) -> int:
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            return self._drop(lambda m: True)


_POOL = _Pool()
os.register_at_fork(after_in_parent=_POOL.forked, after_in_child=_POOL.forked_child)
atexit.register(_POOL.close)


def _array(shape, dtype, populate: bool) -> tuple[np.ndarray, bool]:
    """An uninitialised array over a pooled mapping (small ones from numpy), and whether it
    is a new mapping (zeros; its pages mapped already with ``populate``)."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    size = int(np.prod(shape)) * dtype.itemsize
    if size < _MAPPED_BYTES:
        return np.empty(shape, dtype), False
    pages = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
    mapping = _POOL.take(pages)
    fresh = mapping is None
    if fresh:
        mapping = _Mapping(pages, populate, _POOL.generation)
    return np.asarray(_Lease(mapping, shape, dtype)), fresh


def fresh_zeros(shape, dtype, write: bool = True) -> np.ndarray:
    """A zero-filled, writable, C-contiguous array in memory mapped for it alone.

    Parameters
    ----------
    shape : int or tuple of int
    dtype : dtype-like
    write : bool
        Map every page of new memory now, for memory that is read before it is written
        (else each page would fault twice). False leaves each new page to its first write,
        for memory that is mostly written before it is read, so that pages never used cost
        nothing. Memory reused from the pool is cleared either way.

    Returns
    -------
    ndarray
        Its memory goes back to the pool when the array (and every view of it) is gone.
    """
    out, fresh = _array(shape, dtype, populate=write)
    if not fresh:  # reused (or numpy's, for small arrays); new mappings are zeros
        out.fill(0)
    return out


def fresh_empty(shape, dtype, whole: bool = True) -> np.ndarray:
    """A writable, C-contiguous array whose values are unspecified (as ``np.empty``), for
    memory the caller writes before it reads it: from the pool when it holds a mapping of
    the size (no page faults), else new; the pool's other rules as :func:`fresh_zeros`.

    ``whole``: all of it will be written, so the pages of new memory are mapped at once;
    False leaves each page to its first write (pages never used cost nothing).
    """
    out, _fresh = _array(shape, dtype, populate=whole)
    if _POISON:
        out.view(np.uint8).reshape(-1).fill(0xFF)
    return out


def pooled_bytes() -> int:
    """Bytes of idle mappings the pool keeps for reuse."""
    return _POOL.bytes


def release_pool() -> int:
    """Return every idle mapping to the system now; return the bytes released."""
    return _POOL.clear()

