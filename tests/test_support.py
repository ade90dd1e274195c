"""CDI supports: autocorrelation, supports from it and from rectangles, shrink-wrap, blur."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging.support import (autocorrelation, autocorrelation_support, gaussian_blur,
                                     shrink_wrap, support_from_autocorrelation,
                                     support_from_rectangles)


def small_object():
    obj = np.zeros((32, 32), complex)
    obj[10:14, 12:20] = 1.0
    obj[15:18, 13:15] = 0.5j
    return obj


def centred_pattern(obj):
    return np.abs(np.fft.fftshift(np.fft.fft2(obj))) ** 2


def test_autocorrelation_is_the_centred_circular_autocorrelation():
    obj = small_object()
    ac = autocorrelation(centred_pattern(obj))
    rows, cols = obj.shape
    # brute force: A(r) = sum_x o(x + r) conj(o(x)), circular, zero shift at (rows//2, cols//2)
    for dr, dc in [(0, 0), (1, 0), (0, 3), (-2, 5), (4, -7), (3, 3)]:
        direct = np.sum(np.roll(obj, (-dr, -dc), axis=(0, 1)) * np.conj(obj))
        assert ac[rows // 2 + dr, cols // 2 + dc] == pytest.approx(abs(direct), rel=1e-9,
                                                                    abs=1e-9)
    assert np.unravel_index(np.argmax(ac), ac.shape) == (rows // 2, cols // 2)
    assert ac.max() == pytest.approx(np.sum(np.abs(obj) ** 2))


def test_masked_and_bad_pixels_count_as_zero():
    pattern = centred_pattern(small_object())
    mask = np.zeros(pattern.shape, bool)
    mask[3, 4] = True
    spoiled = pattern.copy()
    spoiled[3, 4] = 1e9
    spoiled[7, 8] = np.nan
    expected = pattern.copy()
    expected[3, 4] = expected[7, 8] = 0
    np.testing.assert_allclose(autocorrelation(spoiled, mask=mask), autocorrelation(expected),
                               atol=1e-9)
    negative = pattern.copy()
    negative[2, 2] = -50.0  # over-subtracted background: clipped to zero
    expected = pattern.copy()
    expected[2, 2] = 0
    np.testing.assert_allclose(autocorrelation(negative), autocorrelation(expected), atol=1e-9)


def test_autocorrelation_support_spans_twice_the_object():
    obj = np.zeros((64, 64))
    obj[20:30, 25:31] = 1.0  # 10 × 6 pixels
    pattern = centred_pattern(obj)
    ext = autocorrelation_support(pattern)
    rows = np.nonzero(ext.any(axis=1))[0]
    cols = np.nonzero(ext.any(axis=0))[0]
    # the autocorrelation of a 10×6 box is non-zero over 19×11 pixels, centred; the map is
    # blurred over ~3 pixels, so its edge is found within 3 pixels
    assert abs(rows[0] - (32 - 9)) <= 3 and abs(rows[-1] - (32 + 9)) <= 3
    assert abs(cols[0] - (32 - 5)) <= 3 and abs(cols[-1] - (32 + 5)) <= 3
    assert ext.dtype == bool and ext.sum() < ext.size / 4
    # the initial support is that extent shrunk about the centre
    half = support_from_autocorrelation(pattern, scale=0.5)
    assert 0.15 < half.sum() / ext.sum() < 0.4 and not half[~ext].any()


def test_support_from_autocorrelation_refuses_an_empty_pattern():
    with pytest.raises(InvalidInputError, match="no positive intensity"):
        support_from_autocorrelation(np.zeros((16, 16)))
    with pytest.raises(InvalidInputError, match="2D"):
        support_from_autocorrelation(np.ones(16))


def test_support_from_rectangles_is_the_union_of_half_open_boxes():
    sup = support_from_rectangles((10, 12), [(1, 3, 2, 5), (2, 6, 4, 6)])
    expected = np.zeros((10, 12), bool)
    expected[1:3, 2:5] = True
    expected[2:6, 4:6] = True
    np.testing.assert_array_equal(sup, expected)


@pytest.mark.parametrize("rects, match", [
    ([], "at least one"),
    ([(3, 3, 0, 4)], "empty or leaves"),
    ([(0, 11, 0, 4)], "empty or leaves"),
    ([(0, 2, -1, 4)], "empty or leaves"),
    ([(0, 2, 4)], "row0, row1, col0, col1"),
])
def test_support_from_rectangles_refuses_bad_boxes(rects, match):
    with pytest.raises(InvalidInputError, match=match):
        support_from_rectangles((10, 12), rects)


def test_shrink_wrap_thresholds_the_blurred_magnitude():
    yy, xx = np.mgrid[:64, :64]
    disc = np.hypot(yy - 30, xx - 34) <= 8
    obj = disc * np.exp(1j * xx / 5.0)  # the phase must not matter
    np.testing.assert_array_equal(shrink_wrap(obj, 0, 0.5), disc)
    wider = shrink_wrap(obj, 2.0, 0.1)
    assert wider[disc].all() and wider.sum() > disc.sum()  # blur then a low threshold: grows
    assert not wider[np.hypot(yy - 30, xx - 34) > 14].any()
    assert not shrink_wrap(np.zeros((8, 8)), 1.0, 0.1).any()
    with pytest.raises(InvalidInputError, match="between 0 and 1"):
        shrink_wrap(obj, 1.0, 1.5)


def test_gaussian_blur_keeps_the_sum_and_has_the_asked_width():
    delta = np.zeros((64, 64))
    delta[32, 32] = 1.0
    blurred = gaussian_blur(delta, 2.5)
    assert blurred.sum() == pytest.approx(1.0)
    rows = np.arange(64) - 32
    variance = np.sum(blurred.sum(axis=1) * rows**2)
    assert np.sqrt(variance) == pytest.approx(2.5, rel=1e-3)
    np.testing.assert_array_equal(gaussian_blur(delta, 0), delta)
    with pytest.raises(InvalidInputError):
        gaussian_blur(delta, -1)
