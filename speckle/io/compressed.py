"""Compressed HDF5 datasets written on every core.

HDF5 compresses a dataset's chunks one after another in the writing thread (gzip at level 4:
about 0.3 s for the 144 MB of two-time maps of one result). :func:`create_compressed` makes the
same dataset (gzip + shuffle filters, readable by any HDF5 reader, pyXpcsViewer included) but
compresses its chunks on a thread pool (``zlib`` releases the interpreter lock) and writes them
as they are (``write_direct_chunk``).
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np

__all__ = ["create_compressed"]

#: Bytes per chunk (HDF5 reads best with chunks that fit its 1 MiB chunk cache).
_CHUNK_BYTES = 2**20
#: gzip level of every compressed dataset speckle writes.
LEVEL = 4


def _shuffled_deflate(block: np.ndarray, level: int) -> bytes:
    """One chunk as HDF5's shuffle then deflate filters store it: byte ``k`` of every element
    together (``k`` = 0 .. itemsize - 1), then zlib."""
    planes = np.ascontiguousarray(block).view(np.uint8).reshape(-1, block.dtype.itemsize).T
    return zlib.compress(np.ascontiguousarray(planes).tobytes(), level)


def create_compressed(group: h5py.Group, name: str, data, level: int = LEVEL,
                      threads: int | None = None) -> h5py.Dataset:
    """Create ``group[name]`` from ``data``, gzip-compressed with the shuffle filter.

    Parameters
    ----------
    group : h5py.Group
    name : str
    data : array_like
        Numbers; chunked along its first axis (whole rows of about 1 MiB). Arrays of one row,
        rows over 4 MiB and non-native byte orders are left to HDF5's own (serial) filters.
    level : int
        gzip level.
    threads : int, optional
        Threads compressing; default: all cores.

    Returns
    -------
    h5py.Dataset
    """
    data = np.asarray(data)
    row = data[0].nbytes if data.ndim >= 2 and len(data) else 0
    if (data.ndim < 2 or len(data) < 2 or not 0 < row <= 4 * _CHUNK_BYTES
            or data.dtype.kind not in "iuf" or not data.dtype.isnative):
        return group.create_dataset(name, data=data, compression="gzip",
                                    compression_opts=level, shuffle=True)
    rows = max(1, min(len(data), _CHUNK_BYTES // row))
    ds = group.create_dataset(name, shape=data.shape, dtype=data.dtype,
                              chunks=(rows, *data.shape[1:]), compression="gzip",
                              compression_opts=level, shuffle=True)
    starts = range(0, len(data), rows)

    def encode(start):
        block = data[start:start + rows]
        if len(block) < rows:  # chunks are stored whole; HDF5 ignores what lies past the end
            block = np.concatenate([block, np.zeros((rows - len(block), *data.shape[1:]),
                                                    data.dtype)])
        return _shuffled_deflate(block, level)

    origin = (0,) * (data.ndim - 1)
    with ThreadPoolExecutor(max(1, threads or os.cpu_count() or 1)) as pool:
        for start, payload in zip(starts, pool.map(encode, starts), strict=True):
            ds.id.write_direct_chunk((start, *origin), payload)
    return ds
