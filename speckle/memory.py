"""Memory for big arrays that a computation fills once and keeps.

numpy asks for transparent huge pages on arrays of 4 MB and more; on some virtual machines the
system clears a huge page four times slower than the same memory in 4 KiB pages (measured here:
0.61 s against 0.14 s for 320 MB), and memory that is read before it is written is first mapped
to the shared zero page, so that the first write faults again and interrupts every core to
flush its TLB. :func:`fresh_zeros` maps its memory on its own (small pages) and, for memory
read first, writes it before it is handed out.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["fresh_zeros"]

#: Arrays smaller than this come from numpy's allocator (which asks for huge pages from 4 MB).
_MAPPED_BYTES = 2**22


def fresh_zeros(shape, dtype, write: bool = True) -> np.ndarray:
    """A zero-filled, writable, C-contiguous array in memory mapped for it alone.

    Parameters
    ----------
    shape : int or tuple of int
    dtype : dtype-like
    write : bool
        Write the zeros now, for memory that is read before it is written (each page then
        faults once). False leaves each page to its first write, for memory that is written
        before it is read, so that pages never used cost nothing (arrays too small to be mapped
        on their own are written either way).

    Returns
    -------
    ndarray
        Its memory is returned to the system when the array (and every view of it) is gone.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    size = int(np.prod(shape)) * dtype.itemsize
    if size < _MAPPED_BYTES:
        out = np.empty(shape, dtype)
        out.fill(0)
        return out
    out = np.frombuffer(mmap.mmap(-1, size), dtype).reshape(shape)
    if write:
        out.fill(0)  # one fault per page, no copy-on-write of the zero page
    return out
