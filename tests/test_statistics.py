"""Frame statistics and the dead / hot pixel mask."""

import numpy as np
import pytest

from speckle.xpcs.partitions import Partition, rectangles
from speckle.xpcs.statistics import FrameStatistics, bad_pixel_mask


def test_dead_and_hot_pixels_are_found():
    rng = np.random.default_rng(0)
    T = 200
    mean = np.full((30, 30), 2.0)
    mean[5:10, 5:10] = 0.0    # beamstop: dead
    mean[:, 20] = 60.0        # a hot column
    counts = rng.poisson(mean * T) / T
    part = rectangles((30, 30), ["0:30,0:30"])
    good, n = bad_pixel_mask(counts, part, T)
    assert n == {"dead": 25, "hot": 30}
    assert not good[5:10, 5:10].any() and not good[:, 20].any()
    assert good.sum() == 900 - 55


def test_chance_zeros_at_low_counts_are_kept():
    rng = np.random.default_rng(1)
    T = 100
    counts = rng.poisson(0.01 * T, (40, 40)) / T  # about 37 % of pixels see no photon at all
    good, n = bad_pixel_mask(counts, rectangles((40, 40), ["0:40,0:40"]), T)
    assert n == {"dead": 0, "hot": 0} and good.all()


def test_a_dynamic_bin_is_never_emptied():
    mean = np.zeros((10, 20))
    mean[:, 10:] = 5.0
    dyn = np.ones((10, 20), np.int32)
    dyn[:, 10:] = 2
    sta = np.ones_like(dyn)  # one static bin spanning both: bin 1 would be all dead
    sta[:, 10:] = 1
    part = Partition(dyn, sta, [np.nan] * 2, [np.nan], ["dark", "lit"], "roi")
    good, _ = bad_pixel_mask(mean, part, 100)
    assert good[:, :10].all()


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["uint16", "uint32", "int32", "float32", "float64", "int64"])
def test_frame_statistics_accumulate_per_chunk(kernels, dtype):
    rng = np.random.default_rng(4)
    frames = rng.poisson(3.0, (9, 5, 70)).astype(dtype)  # 350 pixels: more than one tile row
    frames[2, 1, 3] = frames[7, 4, 60] = 20
    frames[5, 0, 0] = 21  # saturated, but outside the used pixels
    used = np.ones((5, 70), bool)
    used[0, :10] = False
    stats = FrameStatistics(9, (5, 70), saturation=20, used=used, kernels=kernels)
    for start, stop in [(0, 1), (1, 6), (6, 9)]:
        stats(start, np.ascontiguousarray(frames[start:stop]))
    np.testing.assert_allclose(stats.mean_image, frames.mean(axis=0, dtype=np.float64),
                               rtol=1e-15)
    np.testing.assert_allclose(stats.intensity, frames[:, used].mean(axis=1, dtype=np.float64),
                               rtol=1e-15)
    assert stats.saturated.tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0]


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_compiled_frame_statistics_equal_the_numpy_reference(dtype):
    rng = np.random.default_rng(5)
    frames = rng.poisson(0.7, (40, 48, 100)).astype(dtype)  # 4800 pixels: tiles of 2048
    frames[frames > 4] = 65535 if dtype == "uint16" else 1e9
    used = rng.random((48, 100)) > 0.2
    out = []
    for kernels in ("numba", "numpy"):
        stats = FrameStatistics(40, (48, 100), saturation=65535.0, used=used, kernels=kernels)
        for start in range(0, 40, 13):
            stats(start, frames[start:start + 13])
        out.append(stats)
    compiled, reference = out
    np.testing.assert_array_equal(compiled.sum_image, reference.sum_image)
    np.testing.assert_array_equal(compiled.saturated, reference.saturated)
    if dtype == "uint16":  # integer sums are exact: equal
        np.testing.assert_array_equal(compiled.intensity, reference.intensity)
    else:  # float sums in another order
        np.testing.assert_allclose(compiled.intensity, reference.intensity, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32", "int16"])
def test_statistics_gathered_by_the_correlator_equal_the_numpy_reference(dtype):
    """The compiled correlator gathers the statistics as it reads the frames (every pixel fed,
    a dtype it reads as it is): the same values as the reference on messy frames (a dead
    corner, hot and saturated pixels, excluded frames); other dtypes are fed to the
    statistics as before."""
    from speckle.xpcs.multitau import multitau_g2

    rng = np.random.default_rng(6)
    top = {"uint8": 255, "uint16": 65535, "uint32": 2**32 - 1, "float32": 1e9, "int16": 32767}
    frames = rng.poisson(0.8, (300, 40, 50)).astype(dtype)
    frames[:, :6, :6] = 0  # a beam stop
    frames[:, 20, 30] = 200 if dtype == "uint8" else 5000  # a hot pixel
    frames[rng.random(frames.shape) < 1e-3] = top[dtype]  # saturated counts
    part = rectangles((40, 50), ["0:20,0:50", "20:40,0:50"])
    level = float(top[dtype])
    fed = []

    class Fed(FrameStatistics):
        def __call__(self, start, chunk):
            fed.append(len(chunk))
            super().__call__(start, chunk)

    gathered = Fed(300, (40, 50), level, used=part.mask)
    multitau_g2(frames, part, device="cpu", exclude_frames=[5, 77], consumers=(gathered,),
                kernels="numba")
    assert (sum(fed) == 300) == (dtype == "int16")  # fed by the stream, or gathered
    reference = FrameStatistics(300, (40, 50), level, used=part.mask, kernels="numpy")
    reference(0, frames)
    np.testing.assert_array_equal(gathered.sum_image, reference.sum_image)
    np.testing.assert_array_equal(gathered.saturated, reference.saturated)
    assert gathered.saturated.sum() > 100
    np.testing.assert_allclose(gathered.intensity, reference.intensity,
                               rtol=0 if dtype != "float32" else 1e-13)
