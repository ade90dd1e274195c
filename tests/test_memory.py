"""speckle.memory: big arrays in memory of their own, zero-filled and writable."""

import gc

import numpy as np
import pytest

from speckle.memory import fresh_zeros


@pytest.mark.parametrize("shape,dtype", [((3, 5), np.float64), ((2**20 + 3,), np.float32),
                                         ((64, 300, 300), ">u2"), (7, np.int64)])
@pytest.mark.parametrize("write", [True, False])
def test_fresh_zeros_are_zeros_of_the_shape_and_dtype_asked(shape, dtype, write):
    a = fresh_zeros(shape, dtype, write=write)
    assert a.shape == ((shape,) if np.isscalar(shape) else shape)
    assert a.dtype == np.dtype(dtype) and a.flags.c_contiguous and a.flags.writeable
    assert not a.any()
    a[...] = 3
    assert (a == 3).all()


def test_a_view_keeps_the_memory_of_a_big_array():
    a = fresh_zeros((1024, 1024), np.float64)  # 8 MB: mapped for it alone
    view = a[10:20]
    del a
    gc.collect()
    view[:] = 1  # the mapping lives as long as a view of it
    assert view.sum() == 10 * 1024
