"""Resolution estimates: PRTF of an exact reconstruction, FRC of identical and unrelated images."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging.simulate import simulated_object, simulated_pattern
from speckle.imaging.resolution import frc, prtf, ring_index


def test_rings_cover_the_frame_and_grow_with_q():
    index, q = ring_index((64, 48), 10)
    assert index.shape == (64, 48)
    assert index[32, 24] == 0  # zero frequency: the centre of a centred frame
    assert index[0, 0] == 9  # the corner is |q|max
    assert set(np.unique(index)) == set(range(10))
    np.testing.assert_allclose(q, (np.arange(10) + 0.5) / 10)
    # round rings on a rectangular frame: |q| in cycles per pixel along each axis
    assert index[32, 0] == index[0, 24]


def test_prtf_of_an_exact_reconstruction_is_one():
    obj = simulated_object((64, 64))
    intensity = simulated_pattern(obj)
    q, values = prtf(intensity, obj, n_bins=20)
    assert q.shape == values.shape == (20,)
    filled = np.isfinite(values)
    assert filled.sum() >= 19
    np.testing.assert_allclose(values[filled], 1.0, rtol=1e-6)
    # shifted, twinned and phase-rotated copies are aligned to the first before averaging
    twin = np.conj(np.roll(obj[::-1, ::-1], (1, 1), axis=(0, 1)))
    _, several = prtf(intensity, [obj, np.roll(twin, (3, -2), axis=(0, 1)) * 1j], n_bins=20)
    np.testing.assert_allclose(several[filled], 1.0, rtol=1e-5)


def test_prtf_falls_where_the_phases_disagree():
    obj = simulated_object((64, 64))
    intensity = simulated_pattern(obj)
    rng = np.random.default_rng(3)
    spectrum = np.fft.fft2(obj)
    f = np.abs(np.fft.fftfreq(64))
    high = np.hypot(f[:, None], f[None, :]) > 0.25
    recs = []
    for _ in range(8):  # phases random above |q| = 0.25 cycles/pixel
        scrambled = np.where(high, spectrum * np.exp(2j * np.pi * rng.random(spectrum.shape)),
                             spectrum)
        recs.append(np.fft.ifft2(scrambled))
    average = np.mean(recs, axis=0)
    q, values = prtf(intensity, average, n_bins=20)
    q_abs = q * np.hypot(0.5, 0.5)  # ring centres in cycles/pixel
    assert np.all(values[q_abs < 0.2] > 0.999)
    assert np.all(values[q_abs > 0.3] < 0.6)  # 8 random phasors average to ~1/sqrt(8)


def test_prtf_leaves_out_masked_and_empty_pixels():
    obj = simulated_object((64, 64))
    intensity = simulated_pattern(obj)
    mask = np.zeros(intensity.shape, bool)
    mask[30:35, 30:35] = True
    spoiled = intensity.copy()
    spoiled[mask] = 1e-6  # a garbage value under the mask must not matter
    _, values = prtf(spoiled, obj, mask=mask, n_bins=20)
    filled = np.isfinite(values)
    np.testing.assert_allclose(values[filled], 1.0, rtol=1e-6)
    with pytest.raises(InvalidInputError, match="shape"):
        prtf(intensity, obj[:32], n_bins=20)


def test_frc_of_identical_images_is_one_and_of_independent_noise_about_zero():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((128, 128))
    q, same = frc(a, a, n_bins=25)
    np.testing.assert_allclose(same, 1.0, rtol=1e-12)
    _, independent = frc(a, rng.standard_normal((128, 128)), n_bins=25)
    # a ring of n pixels fluctuates by about 1/sqrt(n); the smallest rings hold few pixels
    assert np.all(np.abs(independent[5:]) < 0.15)
    assert abs(np.mean(independent)) < 0.03
    _, scaled = frc(a, 3 * a, n_bins=25)
    np.testing.assert_allclose(scaled, 1.0, rtol=1e-12)
    with pytest.raises(InvalidInputError, match="one shape"):
        frc(a, a[:64])
