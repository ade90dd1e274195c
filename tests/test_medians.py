"""Medians without numpy's masked arrays: the values of np.median."""

import subprocess
import sys

import numpy as np
import pytest

from speckle.xpcs.medians import group_medians, median


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11])
def test_median_is_numpys(n):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(7, n))
    assert median(a) == np.median(a)
    np.testing.assert_array_equal(median(a, axis=1), np.median(a, axis=1))
    np.testing.assert_array_equal(median(a, axis=0), np.median(a, axis=0))
    ints = rng.integers(0, 5, n)
    assert median(ints) == np.median(ints)
    a[3, 0] = np.nan
    assert np.isnan(median(a))
    assert np.isnan(median(a, axis=1)[3]) and not np.isnan(median(a, axis=1)).all()


def test_median_of_nothing_is_nan():
    assert np.isnan(median([]))


def test_group_medians():
    values = np.array([5.0, 1.0, 3.0, 2.0, 8.0, 4.0])
    np.testing.assert_array_equal(group_medians(values, np.array([0, 3, 3, 6])),
                                  [3.0, 0.0, 4.0])


def test_the_quick_check_does_not_load_numpy_ma():
    code = ("import sys, numpy as np; from speckle.xpcs import medians; "
            "medians.median(np.arange(5.0)); print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
