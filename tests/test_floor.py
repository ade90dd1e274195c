"""The incoherent floor (speckle.imaging.floor) and its modulus constraint: the speckle grain
against its analytic width, the floor bounded by a planted background and near zero without
one, and the interval projection of phase_retrieval."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging.floor import incoherent_floor, speckle_size
from speckle.imaging.phasing import PhasingOptions, phase_retrieval
from speckle.imaging.simulate import random_object, simulated_pattern

N = 256


def speckle_of_a_square(side, seed=0):
    """Fully developed speckle: a square of ``side`` pixels with random phases. Its intensity
    autocovariance is |sinc|² of width N/side: FWHM 0.886 N/side along each axis."""
    rng = np.random.default_rng(seed)
    wave = np.zeros((N, N), complex)
    a = N // 2 - side // 2
    wave[a:a + side, a:a + side] = np.exp(2j * np.pi * rng.random((side, side)))
    return np.abs(np.fft.fftshift(np.fft.fft2(wave))) ** 2


@pytest.mark.parametrize("side", [24, 40])
def test_the_speckle_grain_is_its_analytic_width(side):
    width = np.mean([speckle_size(speckle_of_a_square(side, seed)) for seed in range(3)])
    assert width == pytest.approx(0.886 * N / side, rel=0.15)


def test_the_floor_is_bounded_by_a_planted_background_and_finds_most_of_it():
    """Speckle on a smooth background B (a third of the speckle's mean, falling with q): the
    floor stays within a few percent of the speckle's mean above B (the light blur against
    pixel noise lifts the speckle's dark points a little) and finds most of it; without B it
    is a few percent of the intensity."""
    speckle = speckle_of_a_square(32)
    y, x = np.indices((N, N)) - N // 2
    q = np.hypot(y, x)
    envelope = np.exp(-q / 60)
    clean = speckle / speckle.mean() * envelope * 1e4
    background = clean.mean() / 3 * envelope / envelope.mean()
    rng = np.random.default_rng(1)
    measured = rng.poisson(clean + background).astype(float)
    floor = incoherent_floor(measured)
    inside = q < 100  # where the speckle is not lost in photon noise
    ratio = floor[inside] / background[inside]
    assert np.quantile(ratio, 0.99) < 1.25
    assert np.median(ratio) > 0.7
    bare = incoherent_floor(rng.poisson(clean).astype(float))
    assert bare.sum() < 0.06 * clean.sum()


def test_the_floor_of_a_simulated_pattern_is_near_zero():
    obj = random_object((N, N), seed=0)
    pattern = simulated_pattern(obj, 1e9, seed=0)
    assert incoherent_floor(pattern).sum() < 0.03 * pattern.sum()


def test_unmeasured_pixels_take_no_part_in_the_floor():
    pattern = speckle_of_a_square(32) + 200.0
    mask = np.zeros((N, N), bool)
    mask[:, :40] = True
    pattern[mask] = 0  # a gap reading 0 must not pull the floor down beside it
    far = np.median(incoherent_floor(pattern, mask)[:, 80:100])
    assert np.median(incoherent_floor(pattern, mask)[:, 40:48]) > 0.5 * far
    assert np.median(incoherent_floor(pattern)[:, 40:48]) < 0.1 * far


def test_a_zero_floor_is_the_usual_modulus_constraint():
    obj = random_object((64, 64), seed=2)
    pattern = simulated_pattern(obj, None)
    support = np.abs(obj) > 0
    opts = PhasingOptions(schedule="20*HIO + 5*ER", trials=1, seed=3)
    strict = phase_retrieval(pattern, support, opts)
    zero = phase_retrieval(pattern, support, opts, floor=np.zeros_like(pattern))
    np.testing.assert_array_equal(zero.object, strict.object)


def test_the_modulus_projection_with_a_floor_is_onto_the_interval():
    """|F| is brought into [sqrt(I − floor), sqrt(I)], to its nearest point; the phase kept."""
    from speckle.imaging.phasing import _Engine

    rng = np.random.default_rng(0)
    amp = rng.uniform(1, 2, (2, 16, 16)).astype(np.float32)[0]
    low = (amp * rng.uniform(0, 1, amp.shape)).astype(np.float32)
    engine = _Engine(amp, None, np, 0.9, False, False, low)
    x = (rng.normal(size=(2, 16, 16)) + 1j * rng.normal(size=(2, 16, 16))).astype(np.complex64)
    x *= 1.5 / np.abs(np.fft.fft2(x)).mean()  # |F| spread across the interval
    before = np.fft.fft2(x)
    after = np.fft.fft2(engine.modulus(x, np.zeros(2, np.float32)))
    want = np.clip(np.abs(before), low, amp)
    np.testing.assert_allclose(np.abs(after), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.angle(after * np.conj(before)), 0, atol=1e-3)
    assert (np.abs(before) < low).any() and (np.abs(before) > amp).any()  # both ends tested


def test_refusals():
    with pytest.raises(InvalidInputError, match="2D"):
        incoherent_floor(np.ones((4, 4)))
    with pytest.raises(InvalidInputError, match="unmeasured"):
        incoherent_floor(np.ones((16, 16)), np.ones((16, 16), bool))
    pattern = simulated_pattern(random_object((64, 64), seed=1), None)
    with pytest.raises(InvalidInputError, match="floor's shape"):
        phase_retrieval(pattern, None, floor=np.zeros((8, 8)))
    with pytest.raises(InvalidInputError, match="zero or positive"):
        phase_retrieval(pattern, None, floor=-np.ones_like(pattern))
