"""Frame statistics and the dead / hot pixel mask."""

import numpy as np

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


def test_frame_statistics_accumulate_per_chunk():
    frames = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    stats = FrameStatistics(2, (3, 4), saturation=20)
    flat = frames.reshape(2, -1)
    stats(0, frames[:1], flat[:1], flat[:1].mean(axis=1))
    stats(1, frames[1:], flat[1:], flat[1:].mean(axis=1))
    np.testing.assert_allclose(stats.mean_image, frames.mean(axis=0))
    np.testing.assert_allclose(stats.intensity, flat.mean(axis=1))
    assert stats.saturated.tolist() == [0, 4]
