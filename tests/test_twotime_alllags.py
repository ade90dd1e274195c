"""Two-time maps and the all-lags (FFT) mode against their definitions and each other."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.io.dataset import ArrayDataset
from speckle.xpcs.alllags import alllags_g2
from speckle.xpcs.multitau import multitau_g2
from speckle.xpcs.partitions import rectangles
from speckle.xpcs.simulate import ou_speckle
from speckle.xpcs.twotime import g2_from_twotime, twotime_maps
from xpcs_reference import symmetric_g2


@pytest.fixture(scope="module")
def data():
    ds = ou_speckle(300, (16, 20), tau_frames=10, beta=0.3, mean_counts=3, seed=7)
    part = rectangles((16, 20), ["0:8,0:20", "8:16,5:20"])
    return ds, part


def direct_twotime(frames, mask):
    x = frames.reshape(len(frames), -1)[:, mask.ravel()].astype(np.float64)
    m = x.mean(axis=1)
    return (x @ x.T / x.shape[1]) / np.outer(m, m)


def test_twotime_matches_definition(data):
    ds, part = data
    maps = twotime_maps(ds, part, device="cpu")
    frames = ds.read_frames()
    for b in (1, 2):
        np.testing.assert_allclose(maps[b], direct_twotime(frames, part.dynamic_map == b),
                                   rtol=1e-5)


def test_twotime_blocked_equals_in_memory(data):
    ds, part = data
    whole = twotime_maps(ds, part, device="cpu")
    blocked = twotime_maps(ds, part, device="cpu", memory_limit=20_000, chunk_frames=7)
    for b in whole:
        np.testing.assert_allclose(blocked[b], whole[b], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_twotime_same_for_every_frame_dtype(data, dtype):
    """Integer frames are held at their own size, others as float32: the maps must not care."""
    ds, part = data
    frames = ds.read_frames()
    cast = ArrayDataset(np.minimum(frames, 127).astype(dtype))
    for kwargs in ({}, {"memory_limit": 20_000, "chunk_frames": 7}):
        maps = twotime_maps(cast, part, device="cpu", **kwargs)
        for b in (1, 2):
            np.testing.assert_allclose(
                maps[b], direct_twotime(np.minimum(frames, 127), part.dynamic_map == b),
                rtol=1e-5)


def test_twotime_binning_averages_frames(data):
    ds, part = data
    maps = twotime_maps(ds, part, bins=[2], bin_frames=3, device="cpu")
    frames = ds.read_frames().astype(np.float64)[:300 // 3 * 3]
    binned = frames.reshape(100, 3, *frames.shape[1:]).mean(axis=1)
    np.testing.assert_allclose(maps[2], direct_twotime(binned, part.dynamic_map == 2), rtol=1e-5)
    assert list(maps) == [2]


def test_g2_from_twotime_agrees_with_multitau():
    ds = ou_speckle(1500, (24, 24), tau_frames=8, beta=0.3, mean_counts=4, seed=9)
    part = rectangles((24, 24), ["0:24,0:24"])
    lags, g2, err = g2_from_twotime(twotime_maps(ds, part, device="cpu")[1])
    mt = multitau_g2(ds, part, device="cpu")
    for k in range(1, 9):
        assert g2[k - 1] == pytest.approx(mt.g2[k - 1, 0], abs=3 * err[k - 1] + 0.002)
    # and both follow the simulated truth 1 + beta exp(-2 k / tau)
    truth = 1 + 0.3 * np.exp(-2 * lags[:8] / 8)
    np.testing.assert_allclose(g2[:8], truth, atol=0.02)


def test_twotime_refuses_unknown_bin(data):
    ds, part = data
    with pytest.raises(InvalidInputError, match="no dynamic bin 5"):
        twotime_maps(ds, part, bins=[5], device="cpu")


def test_alllags_matches_definition(data):
    ds, part = data
    res = alllags_g2(ds, part, device="cpu")
    taus = np.arange(1, 151)
    ref, ref_err = symmetric_g2(ds.read_frames(), part, taus, np.zeros_like(taus))
    assert res.tau_frames.tolist() == taus.tolist()
    np.testing.assert_allclose(res.g2, ref, rtol=1e-9)
    np.testing.assert_allclose(res.g2_err, ref_err, rtol=1e-6)


def test_alllags_equals_multitau_at_unbinned_lags(data):
    ds, part = data
    bad = [3, 4, 150]
    a = alllags_g2(ds, part, exclude_frames=bad, device="cpu")
    m = multitau_g2(ds, part, exclude_frames=bad, device="cpu")
    np.testing.assert_allclose(a.g2[:8], m.g2[:8], rtol=1e-9)
    np.testing.assert_array_equal(a.n_pairs[:8], m.n_pairs[:8])
