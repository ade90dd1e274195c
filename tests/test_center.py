"""The one centre finder (speckle.imaging.center.find_center) against planted centres:
holograms and diffraction patterns shifted by known fractions of a pixel (the Fourier shift
theorem), Poisson noise, an asymmetric beamstop, and the real demonstration files."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging import conditioning, fth
from speckle.imaging.center import find_center
from speckle.imaging.simulate import fth_sample, random_object

N = 256


def shifted_pattern(wave, shift):
    """|FFT(wave · ramp)|², centred: its centre of symmetry is exactly N/2 + shift."""
    rows, cols = wave.shape
    yy, xx = np.mgrid[:rows, :cols]
    ramp = np.exp(2j * np.pi * (shift[0] * yy / rows + shift[1] * xx / cols))
    return np.abs(np.fft.fftshift(np.fft.fft2(wave * ramp))) ** 2


def test_one_centre_finder_for_every_imaging_path():
    assert fth.find_center is find_center
    assert conditioning.find_symmetry_center is find_center  # the old name still works


@pytest.mark.parametrize("shift", [(0.0, 0.0), (3.3, -2.6), (-7.75, 12.2), (0.5, 0.5)])
@pytest.mark.parametrize("weight", ["sqrt", "log"])
def test_the_centre_of_a_hologram_within_a_tenth_of_a_pixel(shift, weight):
    wave = fth_sample((N, N), reference_offsets=((0, 90),), reference_radius=1.5,
                      object_radius=20, seed=3)
    found = find_center(shifted_pattern(wave, shift), weight=weight)
    assert np.hypot(found[0] - N / 2 - shift[0], found[1] - N / 2 - shift[1]) < 0.1


@pytest.mark.parametrize("shift", [(0.0, 0.0), (3.3, -5.7), (-7.5, 2.25)])
@pytest.mark.parametrize("weight", ["sqrt", "log"])
def test_the_centre_of_a_noisy_pattern_of_a_real_object_within_a_quarter_pixel(shift, weight):
    pattern = shifted_pattern(random_object((N, N), seed=4, complex_valued=False), shift)
    rng = np.random.default_rng(2)
    noisy = rng.poisson(1e9 * pattern / pattern.sum()).astype(float)
    found = find_center(noisy, weight=weight)
    assert np.hypot(found[0] - N / 2 - shift[0], found[1] - N / 2 - shift[1]) < 0.25


@pytest.mark.parametrize("shift", [(0.0, 0.0), (3.3, -2.6)])
@pytest.mark.parametrize("seed", [3, 4])
def test_phase_contrast_moves_the_centre_by_a_few_pixels_at_most(shift, seed):
    """A phase object's pattern is not point-symmetric (|F(q)| ≠ |F(−q)|): its best match
    with its inverted copy lies off the zero frequency, a linear phase ramp on the
    reconstruction, not a shift of it (the tilt of a phase object is not in its intensity):
    0.6-1.0 px for these holograms with ±0.5 rad of phase, 0.2-2.4 px for complex objects
    with ±1.5 rad."""
    wave = fth_sample((N, N), reference_offsets=((0, 90),), reference_radius=1.5,
                      object_radius=20, phase_object=True, seed=seed)
    found = find_center(shifted_pattern(wave, shift))
    assert np.hypot(found[0] - N / 2 - shift[0], found[1] - N / 2 - shift[1]) < 3
    pattern = shifted_pattern(random_object((N, N), seed=seed), shift)  # complex object
    found = find_center(pattern)
    assert np.hypot(found[0] - N / 2 - shift[0], found[1] - N / 2 - shift[1]) < 3


def test_a_flat_background_and_an_asymmetric_beamstop_do_not_pull_the_centre():
    shift = (4.4, -2.6)
    truth = (N / 2 + shift[0], N / 2 + shift[1])
    pattern = shifted_pattern(random_object((N, N), seed=5, complex_valued=False), shift)
    pattern += 0.02 * np.median(pattern)  # a pedestal: symmetric about the array, not the centre
    yy, xx = np.mgrid[:N, :N]
    beamstop = np.hypot(yy - truth[0], xx - truth[1]) < 6
    beamstop[int(truth[0]) - 2:int(truth[0]) + 3, int(truth[1]):] = True  # its arm
    found = find_center(np.where(beamstop, 0.0, pattern), mask=beamstop)
    assert np.hypot(found[0] - truth[0], found[1] - truth[1]) < 0.25
    unmeasured = np.where(beamstop, np.nan, pattern)  # NaN counts as unmeasured too
    assert np.allclose(find_center(unmeasured), found)


def test_the_demo_files_are_centred_each_with_its_weight(shared_data):
    """The hologram with the hologram weight (FTH's); the CDI pattern, whose stripes and
    shadow are not point-symmetric, on its central peak (256, 256) with the pattern weight,
    and 1.4 px off with the hologram weight: the test can fail."""
    from speckle.io.images import read_image

    hologram, _ = read_image(shared_data / "als-demo" / "fth.fits")
    assert np.allclose(find_center(hologram, weight=fth.HOLOGRAM_WEIGHT), 256, atol=0.1)
    pattern, _ = read_image(shared_data / "als-demo" / "cdi.fits")
    assert np.allclose(find_center(pattern), 256, atol=0.25)
    assert not np.allclose(find_center(pattern, weight="log"), 256, atol=1)


def test_refusals_in_one_line():
    with pytest.raises(InvalidInputError, match="no positive"):
        find_center(np.zeros((8, 8)))
    with pytest.raises(InvalidInputError, match="masked"):
        find_center(np.ones((8, 8)), mask=np.ones((8, 8), bool))
    with pytest.raises(InvalidInputError, match="2D"):
        find_center(np.ones((3, 8, 8)))
    with pytest.raises(InvalidInputError, match="complex"):
        find_center(np.ones((8, 8), complex))
    with pytest.raises(InvalidInputError, match="shape"):
        find_center(np.ones((8, 8)), mask=np.zeros((4, 4), bool))
    with pytest.raises(InvalidInputError, match="weight"):
        find_center(np.ones((8, 8)), weight="linear")
