"""Alignment of reconstructions: sub-pixel shift, twin, global phase; the normalised error."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging.align import (align_to, apply_alignment, find_alignment, normalized_error,
                                   twin)
from speckle.imaging.simulate import simulated_object


def fourier_shift(obj, shift):
    """Independent reference: move by (row, col) pixels with an explicit phase ramp."""
    fy = np.fft.fftfreq(obj.shape[0])[:, None]
    fx = np.fft.fftfreq(obj.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(obj) * np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1])))


@pytest.fixture(scope="module")
def obj():
    return simulated_object((64, 64))


def test_twin_is_the_conjugate_point_inversion_about_the_centre():
    a = np.arange(30, dtype=complex).reshape(5, 6) * (1 + 2j)
    t = twin(a)
    for r, c in [(0, 0), (2, 3), (4, 5), (1, 4)]:
        assert t[r, c] == np.conj(a[(2 * 2 - r) % 5, (2 * 3 - c) % 6])
    np.testing.assert_array_equal(twin(t), a)
    # the twin has the same Fourier modulus
    np.testing.assert_allclose(np.abs(np.fft.fft2(t)), np.abs(np.fft.fft2(a)), atol=1e-9)


def test_a_known_subpixel_shift_twin_and_phase_are_recovered(obj):
    moved = np.exp(1j * 2.1) * twin(fourier_shift(obj, (3.37, -5.61)))
    found = find_alignment(obj, moved)
    assert found.twin
    # twin(moved) = exp(-2.1i) · obj shifted by s: undoing takes a shift by -s and phase +2.1
    assert found.shift == pytest.approx((-3.37, 5.61), abs=0.03)
    assert found.phase == pytest.approx(2.1, abs=1e-3)
    restored = apply_alignment(moved, found)
    assert np.linalg.norm(restored - obj) / np.linalg.norm(obj) < 0.01
    assert normalized_error(obj, moved) < 0.01


def test_without_twin_the_shift_and_phase_come_back(obj):
    moved = np.exp(-0.7j) * fourier_shift(obj, (-7.5, 2.25))
    found = find_alignment(obj, moved)
    assert not found.twin
    assert found.shift == pytest.approx((7.5, -2.25), abs=0.03)
    assert found.phase == pytest.approx(0.7, abs=1e-3)
    aligned = align_to(obj, moved)
    assert np.linalg.norm(aligned - obj) / np.linalg.norm(obj) < 0.01


def test_normalized_error_is_zero_for_a_scaled_copy_and_one_for_unrelated(obj):
    assert normalized_error(obj, 3.5j * obj) == pytest.approx(0.0, abs=1e-6)
    noisy = obj + 0.1 * np.linalg.norm(obj) / 64 * np.random.default_rng(0).standard_normal(
        obj.shape)
    assert normalized_error(obj, noisy) == pytest.approx(0.1, abs=0.01)
    disjoint = np.zeros_like(obj)
    disjoint[0, 0] = 1.0  # a point: its best overlap with obj is tiny
    assert normalized_error(obj, disjoint) > 0.9
    assert normalized_error(obj, np.zeros_like(obj)) == 1.0


def test_alignment_refuses_mismatched_images(obj):
    with pytest.raises(InvalidInputError, match="one shape"):
        align_to(obj, obj[:32])
    with pytest.raises(InvalidInputError, match="zero"):
        normalized_error(np.zeros((8, 8)), np.ones((8, 8)))
