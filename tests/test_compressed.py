"""Compressed datasets written on every core (speckle.io.compressed) are the datasets HDF5's
own gzip and shuffle filters make: same filters, same values back, through any reader."""

import h5py
import numpy as np
import pytest

from speckle.io.compressed import create_compressed


@pytest.mark.parametrize("shape,dtype", [
    ((1500, 1500), np.float32),     # a two-time map: chunks of 174 rows, the last one short
    ((7, 3), np.int16),             # tiny: one chunk
    ((3000, 2), np.uint8),          # one byte per element: shuffle is the identity
    ((40, 33, 17), np.float64),     # three axes, chunked along the first
    ((1, 256, 256), np.float32),    # one row: HDF5's own filters
    ((5,), np.int64),               # one axis: HDF5's own filters
    ((300, 20), ">f4"),             # big-endian: HDF5's own filters
])
def test_roundtrip_and_filters(tmp_path, shape, dtype):
    rng = np.random.default_rng(len(shape))
    data = (rng.normal(10, 3, shape) * 7).astype(dtype)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        ds = create_compressed(f, "x", data, threads=2)
        assert ds.shape == data.shape
    with h5py.File(path, "r") as f:
        ds = f["x"]
        assert ds.compression == "gzip" and ds.compression_opts == 4 and ds.shuffle
        assert ds.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ds[()], data)
        if len(shape) >= 2 and shape[0] > 1:  # read a part through the chunks
            np.testing.assert_array_equal(ds[shape[0] // 2:], data[shape[0] // 2:])


def test_same_bytes_as_hdf5s_own_filters_decode(tmp_path):
    """Chunks compressed here decode with HDF5's filter pipeline (read_direct_chunk gives the
    stored bytes; h5py's reading gives the data) whatever the number of threads."""
    data = np.triu(np.random.default_rng(1).normal(1, 0.1, (700, 300))).astype(np.float32)
    stored = []
    for threads in (1, 2):
        path = tmp_path / f"t{threads}.h5"
        with h5py.File(path, "w") as f:
            create_compressed(f, "x", data, threads=threads)
        with h5py.File(path, "r") as f:
            ds = f["x"]
            np.testing.assert_array_equal(ds[()], data)
            stored.append([ds.id.read_direct_chunk((r, 0))[1]
                           for r in range(0, 700, ds.chunks[0])])
    assert stored[0] == stored[1]


def test_compression_shrinks_what_compresses(tmp_path):
    data = np.zeros((2000, 500), np.float32)
    data[::7] = 1.5
    path = tmp_path / "z.h5"
    with h5py.File(path, "w") as f:
        create_compressed(f, "x", data)
    assert path.stat().st_size < data.nbytes / 50
