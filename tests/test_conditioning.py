"""Detector-data conditioning against simulated data with known truth."""

import numpy as np
import pytest

from speckle import backend
from speckle.errors import InvalidInputError
from speckle.imaging.center import find_center
from speckle.imaging.conditioning import (
    bin_image,
    center_pattern,
    merge_exposures,
    remove_dust,
    remove_hot_pixels,
    shift_image,
    subtract_dark,
)

N = 128


def gaussian(shape, center, width, height=1.0):
    r, c = np.indices(shape, dtype=float)
    return height * np.exp(-((r - center[0]) ** 2 + (c - center[1]) ** 2) / (2 * width**2))


def smooth_pattern(shape=(N, N)):
    """A smooth, oversampled pattern (several broad blobs on a background), counts ≥ 100."""
    rng = np.random.default_rng(0)
    img = np.full(shape, 100.0)
    for _ in range(12):
        center = rng.uniform(0, shape[0], 2)
        img += gaussian(shape, center, rng.uniform(4, 10), rng.uniform(200, 3000))
    return img


def diffraction(shape, center_offset, seed=1):
    """|F|² of a real object, sampled so that its centre of symmetry is exactly
    (rows // 2 + dr, cols // 2 + dc): F evaluated at q = k − offset (Friedel: I(q) = I(−q))."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    obj = np.zeros(shape)
    obj[:rows // 6, :cols // 5] = rng.random((rows // 6, cols // 5))
    y, x = np.indices(shape)
    ramp = np.exp(2j * np.pi * (center_offset[0] * y / rows + center_offset[1] * x / cols))
    return np.abs(np.fft.fftshift(np.fft.fft2(obj * ramp))) ** 2


# -- dark --------------------------------------------------------------------------------------

def test_subtract_dark_is_exact():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 1000, (5, 6)).astype(np.uint16)
    dark = rng.integers(0, 100, (5, 6)).astype(np.uint16)
    out = subtract_dark(image, dark)
    assert out.dtype == np.float64  # no uint16 wrap-around below zero
    np.testing.assert_array_equal(out, image.astype(float) - dark.astype(float))
    np.testing.assert_array_equal(subtract_dark(image, dark, scale=2.5),
                                  image.astype(float) - 2.5 * dark.astype(float))
    clipped = subtract_dark(np.ones((2, 2)), np.full((2, 2), 3.0), clip=True)
    np.testing.assert_array_equal(clipped, np.zeros((2, 2)))
    stack = subtract_dark(np.stack([image, 2 * image]), dark)  # a stack, one dark
    np.testing.assert_array_equal(stack[1], 2 * image.astype(float) - dark)


@pytest.mark.parametrize("image, dark, scale, message", [
    (np.ones((4, 4)), np.ones((4, 5)), 1.0, r"dark has shape \(4, 5\).*\(4, 4\)"),
    (np.ones((4, 4)), np.ones((4, 4)), -1.0, "scale"),
    (np.ones((4, 4)), np.ones((4, 4)), np.nan, "scale"),
    (np.ones(4), np.ones(4), 1.0, "2D image"),
    (np.ones((4, 4)) * 1j, np.ones((4, 4)), 1.0, "complex"),
])
def test_subtract_dark_refusals(image, dark, scale, message):
    with pytest.raises(InvalidInputError, match=message):
        subtract_dark(image, dark, scale)


# -- hot pixels --------------------------------------------------------------------------------

def planted(seed):
    rng = np.random.default_rng(seed)
    truth = smooth_pattern()
    noisy = rng.poisson(truth).astype(float)
    hot = np.zeros(truth.shape, bool)
    flat = rng.choice(truth.size, 25, replace=False)
    hot.flat[flat] = True
    hot[40, 40] = hot[40, 41] = True  # an adjacent pair
    image = noisy.copy()
    image[hot] = 3 * truth[hot] + 400 + rng.uniform(0, 5000, hot.sum())
    return truth, noisy, image, hot


@pytest.mark.parametrize("seed", [0, 1])
def test_hot_pixels_are_found_exactly_and_restored(seed):
    truth, noisy, image, hot = planted(seed)
    out, found = remove_hot_pixels(image)
    np.testing.assert_array_equal(found, hot)
    np.testing.assert_array_equal(out[~hot], noisy[~hot])  # other pixels untouched
    # a hot pixel gets the median of its 8 neighbours: within the Poisson noise of the truth
    assert np.all(np.abs(out[hot] - truth[hot]) < 4 * np.sqrt(truth[hot]))


def test_known_bad_pixels_are_left_alone_and_ignored():
    truth, noisy, image, hot = planted(0)
    image[60:63, 70:73] = 1e7  # a known defect, masked: not reported, not changed
    known = np.zeros_like(hot)
    known[60:63, 70:73] = True
    out, found = remove_hot_pixels(image, mask=known)
    np.testing.assert_array_equal(found, hot)
    np.testing.assert_array_equal(out[known], image[known])


def test_cold_pixels_only_when_asked():
    truth = smooth_pattern()
    image = np.random.default_rng(4).poisson(truth).astype(float)
    image[30, 90] = 0.0
    _, found = remove_hot_pixels(image)
    assert not found.any()
    out, found = remove_hot_pixels(image, cold=True)
    assert np.argwhere(found).tolist() == [[30, 90]]
    assert abs(out[30, 90] - truth[30, 90]) < 4 * np.sqrt(truth[30, 90])


def test_sharp_real_peak_is_not_a_hot_pixel():
    """A bright, barely sampled peak beats the noise test; the fine-structure test keeps it."""
    image = 100 + gaussian((64, 64), (31.3, 30.6), 1.0, 1e6)
    _, found = remove_hot_pixels(image)
    assert not found.any()
    _, found = remove_hot_pixels(image, contrast=0)
    assert found.any()


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 0}, "threshold"),
    ({"size": 4}, "odd"),
    ({"size": 1}, "odd"),
    ({"contrast": -1}, "contrast"),
    ({"noise_floor": -1}, "noise floor"),
    ({"mask": np.zeros((3, 3), bool)}, "mask has shape"),
])
def test_hot_pixel_refusals(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        remove_hot_pixels(np.ones((16, 16)), **kwargs)


# -- dust --------------------------------------------------------------------------------------

def disk(shape, center, radius):
    r, c = np.indices(shape)
    return (r - center[0]) ** 2 + (c - center[1]) ** 2 <= radius**2


def test_dust_fill_reproduces_a_plane():
    r, c = np.indices((64, 64), dtype=float)
    plane = 100 + 3 * c - 2 * r
    inside = disk(plane.shape, (30, 30), 2.5) | disk(plane.shape, (40, 45), 12)
    out = remove_dust(np.where(inside, -1.0, plane), inside)
    np.testing.assert_allclose(out, plane, rtol=1e-10)
    edge = np.zeros(plane.shape, bool)
    edge[:, :3] = True  # extrapolated from one side
    out = remove_dust(np.where(edge, np.nan, plane), edge)
    np.testing.assert_allclose(out, plane, atol=0.01)  # the plane spans -26 to 289


def test_dust_is_filled_from_the_surroundings():
    shape = (N, N)
    truth = 100 + gaussian(shape, (60, 70), 25, 1000.0)
    spots = [((60, 70), 3), ((30, 40), 3), ((90, 20), 2), ((60, 0), 4), ((90, 100), 12)]
    mask = np.zeros(shape, bool)
    for center, radius in spots:
        mask |= disk(shape, center, radius)
    dirty = np.where(mask, 0.0, truth)
    dirty[5, 5] = np.nan  # non-finite pixels are filled too
    out = remove_dust(dirty, mask)
    good = ~mask & np.isfinite(dirty)
    np.testing.assert_array_equal(out[good], truth[good])
    assert abs(out[5, 5] - truth[5, 5]) < 1e-3 * truth[5, 5]
    for (center, radius), tolerance in zip(spots, [0.02, 0.02, 0.02, 0.02, 0.15]):
        spot = disk(shape, center, radius)
        assert np.max(np.abs(out - truth)[spot] / truth[spot]) < tolerance, center


def test_dust_refusals():
    with pytest.raises(InvalidInputError, match="every pixel"):
        remove_dust(np.ones((8, 8)), np.ones((8, 8), bool))
    mask = np.zeros((64, 64), bool)
    mask[:, :40] = True
    with pytest.raises(InvalidInputError, match="farther than"):
        remove_dust(np.ones((64, 64)), mask, max_sigma=4)
    with pytest.raises(InvalidInputError, match="sigma"):
        remove_dust(np.ones((8, 8)), np.zeros((8, 8), bool), sigma=0)
    with pytest.raises(InvalidInputError, match="mask has shape"):
        remove_dust(np.ones((8, 8)), np.zeros((8, 9), bool))


# -- merging exposures -------------------------------------------------------------------------

def test_merge_long_saturated_and_short_exposures():
    rng = np.random.default_rng(5)
    rate = 20 + gaussian((N, N), (N / 2, N / 2), 10, 5e6)  # counts per second
    saturation = 65535
    beamstop = gaussian((N, N), (N / 2, N / 2), 1.0) > np.exp(-4**2 / 2)
    t_long, t_short = 1.0, 0.01
    long = np.minimum(rng.poisson(rate * t_long), saturation).astype(float)
    long[beamstop] = 0.0  # the beamstop is in for the long exposure only
    short = np.minimum(rng.poisson(rate * t_short), saturation).astype(float)
    masks = np.stack([beamstop, np.zeros_like(beamstop)])
    merged, missing = merge_exposures([long, short], [t_long, t_short], saturation, mask=masks)
    assert not missing.any()
    used_long = (long < saturation) & ~beamstop
    assert 0 < used_long.sum() < N * N  # both exposures contribute
    np.testing.assert_array_equal(merged[used_long], long[used_long])
    sigma = np.where(used_long, np.sqrt(rate * t_long), np.sqrt(rate * t_short) / t_short)
    z = (merged - rate * t_long) / sigma
    assert np.all(np.abs(z) < 6)
    assert abs(np.mean(z[~used_long])) < 0.2  # the short exposure is scaled without bias
    # in counts per second instead, and the same via an (n, rows, cols) array
    per_second, _ = merge_exposures(np.stack([long, short]), [t_long, t_short], saturation,
                                    mask=masks, reference=1.0)
    np.testing.assert_allclose(per_second, merged / t_long)


def test_merge_marks_pixels_no_exposure_measures():
    long = np.array([[10.0, 100.0], [100.0, np.nan]])
    short = np.array([[1.0, 5.0], [100.0, 2.0]])
    merged, missing = merge_exposures([short, long], [0.1, 1.0], saturation=[50, 100])
    # [0,0]: long valid; [0,1]: long saturated -> short×10; [1,0]: both saturated; [1,1]: NaN long
    np.testing.assert_array_equal(missing, [[False, False], [True, False]])
    np.testing.assert_array_equal(merged[~missing], [10.0, 50.0, 20.0])
    assert np.isnan(merged[1, 0])


def test_merge_grow_rejects_bloomed_neighbours():
    long = np.full((5, 5), 10.0)
    long[2, 2] = 100.0
    short = np.full((5, 5), 2.0)
    merged, _ = merge_exposures([long, short], [1.0, 0.1], 100, grow=1)
    expected = np.full((5, 5), 10.0)
    expected[1:4, 1:4] = 20.0
    np.testing.assert_array_equal(merged, expected)


@pytest.mark.parametrize("images, times, saturation, kwargs, message", [
    ([np.ones((4, 4)), np.ones((4, 5))], [1, 2], 10, {}, "same shape"),
    ([np.ones((4, 4))] * 2, [1], 10, {}, "one time per image"),
    ([np.ones((4, 4))] * 2, [1, 0], 10, {}, "positive"),
    ([np.ones((4, 4))] * 2, [1, 2], [1, 2, 3], {}, "saturation"),
    ([np.ones((4, 4))] * 2, [1, 2], 10, {"grow": -1}, "grow"),
    ([np.ones((4, 4))] * 2, [1, 2], 10, {"mask": np.zeros((3, 4, 4), bool)}, "mask has shape"),
    ([], [], 10, {}, "at least one"),
    ([np.ones((4, 4))] * 2, ["1 s", 2], 10, {}, "exposure times must be numbers"),
])
def test_merge_refusals(images, times, saturation, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        merge_exposures(images, times, saturation, **kwargs)


# -- centring (the centre itself: tests/test_center.py) -------------------------------------

def test_center_pattern_moves_the_centre_to_the_middle():
    offset = (3.3, -5.7)
    pattern = diffraction((N, N), offset)
    truth = np.array([N // 2 + offset[0], N // 2 + offset[1]])
    centred, center = center_pattern(pattern)
    assert np.hypot(*(np.array(center) - truth)) < 0.25
    # whole-pixel shift: values moved, not interpolated; the centre is within half a pixel
    np.testing.assert_array_equal(centred[N // 2, N // 2], pattern[67, 58])
    assert np.max(np.abs(np.array(find_center(centred)) - N // 2)) < 0.5 + 0.25
    # moved by (-3, +6): the last 3 rows and the first 6 columns came from outside
    assert np.all(centred[-3:] == 0) and np.all(centred[:, :6] == 0)
    assert np.all(centred[:-3, 6:] == pattern[3:, :-6])
    fine, _ = center_pattern(pattern, subpixel=True, fill=np.nan)
    assert np.all(np.isnan(fine[-4:])) and np.all(np.isnan(fine[:, :6]))
    assert np.isfinite(fine[:-4, 6:]).all()
    inner = np.nan_to_num(fine)
    assert np.max(np.abs(np.array(find_center(inner)) - N // 2)) < 0.25


def test_center_pattern_with_a_given_centre_and_shift_of_a_mask():
    image = np.zeros((9, 10))
    image[2, 7] = 5.0
    centred, center = center_pattern(image, center=(2, 7))
    assert center == (2.0, 7.0)
    assert np.argwhere(centred).tolist() == [[4, 5]] and centred[4, 5] == 5.0
    mask = np.zeros((9, 10), bool)
    mask[2, 7] = True
    moved = shift_image(mask, (4 - 2, 5 - 7), fill=True)
    assert moved.dtype == bool and moved[4, 5] and moved[:2].all() and moved[:, -2:].all()
    assert moved.sum() == 1 + 2 * 10 + 2 * 9 - 4


def test_subpixel_shift_of_a_band_limited_image():
    image = gaussian((64, 64), (30.0, 33.0), 3.0)
    moved = shift_image(image, (1.5, -2.25), subpixel=True)
    np.testing.assert_allclose(moved, gaussian((64, 64), (31.5, 30.75), 3.0), atol=1e-6)


def test_centring_refusals():
    with pytest.raises(InvalidInputError, match="outside"):
        center_pattern(np.ones((8, 8)), center=(3, 9))
    with pytest.raises(InvalidInputError, match="finite"):
        shift_image(np.ones((8, 8)), (np.nan, 0))


# -- binning -----------------------------------------------------------------------------------

def test_bin_image_sums_blocks_and_trims():
    image = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(bin_image(image, 2), [[10, 18], [42, 50]])
    rng = np.random.default_rng(3)
    counts = rng.poisson(3.0, (2, 101, 67))
    binned = bin_image(counts, 4)
    assert binned.shape == (2, 25, 16)
    assert binned.sum() == counts[:, :100, :64].sum()
    rect = bin_image(counts[0], (1, 3))
    assert rect.shape == (101, 22) and rect.sum() == counts[0, :, :66].sum()
    np.testing.assert_array_equal(bin_image(image, 1), image)


@pytest.mark.parametrize("factor", [0, -2, 1.5, True, "2", (2, 0), 5, (1, 2, 3)])
def test_bin_image_refusals(factor):
    with pytest.raises(InvalidInputError, match="binning factor"):
        bin_image(np.ones((4, 4)), factor)


# -- GPU parity --------------------------------------------------------------------------------

@pytest.mark.skipif(not backend.gpu_available(), reason="no usable CUDA device here")
def test_gpu_matches_cpu():
    cp = backend.get_xp("gpu")
    truth, _, image, hot = planted(0)
    out, found = remove_hot_pixels(cp.asarray(image))
    assert backend.array_module(out) is cp
    np.testing.assert_array_equal(backend.asnumpy(found), hot)
    np.testing.assert_allclose(backend.asnumpy(out), remove_hot_pixels(image)[0])
    mask = np.zeros(truth.shape, bool)
    mask[50:56, 60:66] = True
    np.testing.assert_allclose(backend.asnumpy(remove_dust(cp.asarray(truth), cp.asarray(mask))),
                               remove_dust(truth, mask), rtol=1e-9)
    pattern = diffraction((N, N), (3.3, -5.7))
    gpu_centred, gpu_center = center_pattern(cp.asarray(pattern), subpixel=True)
    cpu_centred, cpu_center = center_pattern(pattern, subpixel=True)
    np.testing.assert_allclose(gpu_center, cpu_center, atol=1e-6)
    np.testing.assert_allclose(backend.asnumpy(gpu_centred), cpu_centred, atol=1e-6 * pattern.max())
    merged, missing = merge_exposures([cp.asarray(image), cp.asarray(image / 10)], [1.0, 0.1],
                                      1000.0)
    cpu = merge_exposures([image, image / 10], [1.0, 0.1], 1000.0)
    np.testing.assert_array_equal(backend.asnumpy(merged), cpu[0])
    np.testing.assert_array_equal(backend.asnumpy(missing), cpu[1])
    np.testing.assert_array_equal(backend.asnumpy(bin_image(cp.asarray(image), 3)),
                                  bin_image(image, 3))
