"""Multi-tau g2: the published definitions, streaming, exclusions and simulated truth."""

import tracemalloc
import types

import numpy as np
import pytest

from speckle.errors import AnalysisError, InvalidInputError
from speckle.io.dataset import Dataset, Metadata
from speckle.xpcs.fitting import fit_g2
from speckle.xpcs.multitau import (MultiTauCorrelator, lag_grid, multitau_g2,
                                   normalize_symmetric)
from speckle.xpcs.partitions import Partition, rectangles
from speckle.xpcs.simulate import ou_speckle, ou_speckle_chunks
from xpcs_reference import symmetric_g2


def two_bin_partition(shape):
    """Two dynamic bins, each split into two static bins."""
    dyn = np.zeros(shape, np.int32)
    sta = np.zeros(shape, np.int32)
    r = shape[0] // 2
    dyn[1:r] = 1
    dyn[r:, 2:-2] = 2
    sta[1:r // 2] = 1
    sta[r // 2:r] = 2
    sta[r:, 2:shape[1] // 2] = 3
    sta[r:, shape[1] // 2:-2] = 4
    return Partition(dyn, sta, [np.nan] * 2, [np.nan] * 4, ["a", "b"], "roi")


@pytest.fixture(scope="module")
def small():
    ds = ou_speckle(333, (24, 20), tau_frames=15, beta=0.3, mean_counts=3, seed=1)
    return ds, two_bin_partition((24, 20))


def test_lag_grid_is_boost_corr_grid():
    # published grid: 1..8 frames, then (5..8) * 2**l while the lag is below the level's length
    T = 1000
    expected = list(range(1, 9))
    level = 1
    while True:
        new = [x << level for x in range(5, 9) if x < T >> level]
        if not new:
            break
        expected += new
        level += 1
    assert lag_grid(T, 8).tau_frames.tolist() == expected
    g16 = lag_grid(T, 16).tau_frames
    assert g16[:16].tolist() == list(range(1, 17)) and g16[16] == 18


def test_lag_grid_refuses_bad_buffers():
    with pytest.raises(InvalidInputError, match="even"):
        lag_grid(100, 7)
    with pytest.raises(AnalysisError, match="at least 2 frames"):
        lag_grid(1, 8)


def test_matches_direct_definition(small):
    ds, part = small
    res = multitau_g2(ds, part, device="cpu")
    grid = lag_grid(ds.n_frames, 8)
    ref, ref_err = symmetric_g2(ds.read_frames(), part, grid.tau_frames, grid.level)
    np.testing.assert_allclose(res.g2, ref, rtol=1e-9)
    np.testing.assert_allclose(res.g2_err, ref_err, rtol=1e-7)
    assert res.tau_frames.tolist() == grid.tau_frames.tolist()
    assert res.n_pairs[0] == ds.n_frames - 1


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunk_size_does_not_change_the_result(small, chunk):
    ds, part = small
    whole = multitau_g2(ds, part, device="cpu")
    res = multitau_g2(ds, part, chunk_frames=chunk, device="cpu")
    np.testing.assert_allclose(res.g2, whole.g2, rtol=1e-12)
    np.testing.assert_allclose(res.g2_err, whole.g2_err, rtol=1e-10)


def test_threads_do_not_change_the_result():
    ds = ou_speckle(300, (130, 130), tau_frames=10, beta=0.2, mean_counts=1, seed=5)
    part = rectangles((130, 130), ["0:130,0:65", "0:130,65:130"])
    one = multitau_g2(ds, part, device="cpu", threads=1)
    two = multitau_g2(ds, part, device="cpu", threads=2)
    np.testing.assert_allclose(one.g2, two.g2, rtol=1e-12)


def test_excluded_frames_match_direct_definition(small):
    ds, part = small
    bad = [0, 5, 6, 100, 332]
    w = np.ones(ds.n_frames)
    w[bad] = 0
    grid = lag_grid(ds.n_frames, 8)
    ref, _ = symmetric_g2(ds.read_frames(), part, grid.tau_frames, grid.level, w)
    for chunk in (None, 3):
        res = multitau_g2(ds, part, exclude_frames=bad, chunk_frames=chunk, device="cpu")
        np.testing.assert_allclose(res.g2, ref, rtol=1e-9)
    assert res.n_pairs[0] == ds.n_frames - 1 - 7  # pairs (j, j+1) touching 0,5,6,100,332


def ring_partition(shape, n_dyn=3, per_dyn=3, hole=4):
    """Rings around an off-centre point, each split into ``per_dyn`` static rings, with an
    unused disc in the middle: labels come in short runs along the pixel order."""
    y, x = np.indices(shape)
    r = np.hypot(y - shape[0] * 0.4, x - shape[1] * 0.55)
    edges = np.linspace(hole, r.max() + 1e-9, n_dyn * per_dyn + 1)
    sta = np.digitize(r, edges).astype(np.int32)  # 0 inside the hole
    dyn = np.where(sta > 0, (sta - 1) // per_dyn + 1, 0).astype(np.int32)
    return Partition(dyn, sta, [np.nan] * n_dyn, [np.nan] * (n_dyn * per_dyn),
                     [f"ring {i}" for i in range(n_dyn)], "qring")


def test_several_pixel_blocks_with_many_exclusions_match_definition():
    # more pixels than one correlator block, so that per-block sums are combined; single
    # frames, a run and both ends excluded, so that pairs drop at every level
    shape = (96, 96)
    ds = ou_speckle(260, shape, tau_frames=6, beta=0.3, mean_counts=2, seed=4)
    part = ring_partition(shape)
    bad = np.zeros(ds.n_frames, bool)
    bad[[0, 13, 37, 38, 90, 201, 259]] = True
    bad[150:155] = True
    grid = lag_grid(ds.n_frames, 8)
    with np.errstate(invalid="ignore"):  # lags whose pairs all touch an excluded frame
        ref, ref_err = symmetric_g2(ds.read_frames(), part, grid.tau_frames, grid.level,
                                    (~bad).astype(float))
    assert np.isfinite(ref).all(axis=1).sum() >= len(ref) - 3
    results = [multitau_g2(ds, part, exclude_frames=bad, chunk_frames=chunk, device="cpu",
                           threads=threads) for chunk, threads in ((None, 2), (5, 1))]
    for res in results:
        np.testing.assert_allclose(res.g2, ref, rtol=1e-9)
        np.testing.assert_allclose(res.g2_err, ref_err, rtol=1e-7)
    np.testing.assert_array_equal(results[0].g2, results[1].g2)


def test_block_normalisation_equals_normalising_all_pixels():
    # scattered labels (runs of one pixel) and left-out pixels, over three blocks
    rng = np.random.default_rng(3)
    n_pixels, n_frames = 20000, 150
    frames = rng.poisson(rng.uniform(0.2, 4, n_pixels), (n_frames, n_pixels)).astype(np.uint16)
    labels = rng.integers(0, 7, n_pixels)  # static bins 1..6, 0 = left out
    s2d = np.array([1, 1, 2, 2, 2, 4])  # dynamic bin 3 is empty
    w = np.ones(n_frames, np.float32)
    w[[3, 40, 41]] = 0

    def fed():
        corr = MultiTauCorrelator(n_frames, n_pixels, threads=2)
        for start in range(0, n_frames, 64):
            corr.feed(frames[start:start + 64], w[start:start + 64])
        return corr

    g2, err, n_pairs = fed().g2(labels, s2d)
    G, IP, IF, n_all = fed().result()
    np.testing.assert_array_equal(n_pairs, n_all)
    ref, ref_err = normalize_symmetric(G, IP, IF, n_all, labels, s2d)
    assert np.isnan(g2[:, 2]).all() and np.isnan(err[:, 2]).all()
    np.testing.assert_allclose(g2, ref, rtol=1e-12)
    np.testing.assert_allclose(err, ref_err, rtol=1e-9)
    # and the normalisation itself, from its definition, on one lag
    used = labels > 0
    gp = n_all[0] * G[0] / (IP[0] * IF[0])
    for d in (1, 2, 4):
        statics = [s for s in range(1, 7) if s2d[s - 1] == d]
        means = [G[0, labels == s].mean() / (IP[0, labels == s].mean() * IF[0, labels == s].mean())
                 for s in statics]
        assert g2[0, d - 1] == pytest.approx(n_all[0] * np.mean(means), rel=1e-12)
        sel = used & np.isin(labels, statics)
        ok = sel & np.isfinite(gp)
        assert err[0, d - 1] == pytest.approx(gp[ok].std(ddof=1) / np.sqrt(sel.sum()), rel=1e-9)


def test_pixels_left_out_after_the_pass_equal_a_smaller_partition():
    shape = (40, 40)
    ds = ou_speckle(200, shape, tau_frames=8, beta=0.3, mean_counts=2, seed=9)
    part = ring_partition(shape, hole=2)
    keep = np.ones(shape, bool)
    keep[5:9, :] = False  # e.g. dead pixels found from the pass's mean image
    keep[part.static_map == 2] = False  # a whole static bin
    late = multitau_g2(ds, part, keep_pixels=lambda: keep, device="cpu")
    early = multitau_g2(ds, part.with_mask(keep), device="cpu")
    np.testing.assert_allclose(late.g2, early.g2, rtol=1e-12)
    np.testing.assert_allclose(late.g2_err, early.g2_err, rtol=1e-10)


class NumpyAsDevice(types.ModuleType):
    """numpy under another name: the correlator then takes its device (cupy) code path."""

    def __getattr__(self, name):
        return getattr(np, name)


def test_device_code_path_matches_cpu_path(small):
    ds, part = small
    pixels = part.mask.ravel()
    flat = ds.read_frames().reshape(ds.n_frames, -1)[:, pixels]
    w = np.ones(ds.n_frames, np.float32)
    w[[2, 3, 150, 331]] = 0
    labels, s2d = part.static_map.ravel()[pixels], part.static_to_dynamic()
    results = []
    for xp in (np, NumpyAsDevice("device")):
        corr = MultiTauCorrelator(ds.n_frames, flat.shape[1], xp=xp)
        for start in range(0, ds.n_frames, 200):  # chunks longer than the CPU's pieces
            corr.feed(flat[start:start + 200], w[start:start + 200])
        results.append(corr.g2(labels, s2d))
    for cpu, device in zip(*results):
        np.testing.assert_allclose(device, cpu, rtol=1e-12)


def test_excluded_frame_contents_are_ignored(small):
    ds, part = small
    frames = ds.read_frames().copy()
    clean = multitau_g2(frames, part, exclude_frames=[50, 51], device="cpu")
    frames[50:52] = 60000  # garbage in the excluded frames
    dirty = multitau_g2(frames, part, exclude_frames=[50, 51], device="cpu")
    np.testing.assert_allclose(dirty.g2, clean.g2, rtol=1e-12)


def test_recovers_simulated_correlation_time_and_contrast():
    tau_frames, beta, dt = 20.0, 0.25, 1e-3
    ds = ou_speckle(4000, (40, 40), tau_frames, beta, mean_counts=3, seed=11, frame_time=dt)
    part = rectangles((40, 40), ["0:40,0:40"])
    res = multitau_g2(ds, part, device="cpu")
    fit = fit_g2(res.tau_frames * dt, res.g2[:, 0], res.g2_err[:, 0], "single")
    assert fit.success
    assert fit.params["tau"] == pytest.approx(tau_frames * dt, rel=0.05)
    assert fit.params["contrast"] == pytest.approx(beta, rel=0.05)


def test_static_bins_remove_uneven_illumination_bias():
    # one dynamic bin whose left half is 9x brighter than its right half
    shape = (32, 32)
    mean = np.ones(shape)
    mean[:, :16] = 9.0
    frames = np.concatenate(list(ou_speckle_chunks(3000, shape, 1e9, beta=0.2, mean_counts=mean,
                                                   seed=2, poisson=False, dtype=np.float32)))
    dyn = np.ones(shape, np.int32)
    coarse = Partition(dyn, dyn, [np.nan], [np.nan], ["all"], "roi")
    fine_static = dyn.copy()
    fine_static[:, 16:] = 2
    fine = Partition(dyn, fine_static, [np.nan], [np.nan * 2] * 2, ["all"], "roi")
    inflation = (mean**2).mean() / mean.mean() ** 2  # <I^2>/<I>^2 = 1.64
    g_coarse = multitau_g2(frames, coarse, device="cpu").g2[:, 0]
    g_fine = multitau_g2(frames, fine, device="cpu").g2[:, 0]
    # a frozen speckle (tau huge): g2 stays at 1 + beta with correct normalisation
    assert np.allclose(g_fine[:8], 1.2, atol=0.02)
    assert np.allclose(g_coarse[:8], 1 + 0.2 + (inflation - 1) * 1.2, rtol=0.03)


def test_normalize_frames_removes_beam_drift():
    shape = (32, 32)
    frames = np.concatenate(list(ou_speckle_chunks(2000, shape, 3.0, beta=0.2, mean_counts=50,
                                                   seed=3, poisson=False, dtype=np.float32)))
    beam = np.linspace(0.7, 1.3, len(frames)).astype(np.float32)  # the beam decays / drifts
    part = rectangles(shape, ["0:32,0:32"])
    raw = multitau_g2(frames * beam[:, None, None], part, device="cpu")
    norm = multitau_g2(frames * beam[:, None, None], part, normalize_frames=True, device="cpu")
    late = (raw.tau_frames >= 40) & (raw.tau_frames <= 400)  # the speckle has decorrelated
    # what the drift alone adds to the symmetric g2 at lag k, from its definition
    added = np.array([(beam[:-k] * beam[k:]).mean() / (beam[:-k].mean() * beam[k:].mean()) - 1
                      for k in raw.tau_frames[late]])
    assert added.min() > 0.01
    np.testing.assert_allclose(raw.g2[late, 0] - 1, added, atol=0.006)
    np.testing.assert_allclose(norm.g2[late, 0], 1.0, atol=0.006)


class GeneratedDataset(Dataset):
    """Frames made on demand: a dataset that is never in memory as a whole."""

    def __init__(self, n_frames, shape):
        self.shape = (n_frames, *shape)
        self.dtype = np.dtype(np.uint16)
        self.metadata = Metadata(frame_time=1e-3)
        self.source = "<generated>"
        self.format = "generated"

    def _read(self, start, stop):
        rng = np.random.default_rng(start)
        return rng.poisson(2.0, (stop - start, *self.shape[1:])).astype(np.uint16)


def peak_memory(n_frames, chunk):
    ds = GeneratedDataset(n_frames, (64, 64))
    part = rectangles((64, 64), ["0:64,0:64"])
    tracemalloc.start()
    res = multitau_g2(ds, part, chunk_frames=chunk, device="cpu", threads=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.allclose(res.g2[:, 0], 1.0, atol=0.01)  # uncorrelated Poisson noise
    return peak


def test_memory_does_not_grow_with_the_number_of_frames():
    small = peak_memory(3000, 200)
    large = peak_memory(24000, 200)  # 197 MB of uint16 frames, read 1.6 MB at a time
    assert large < 1.3 * small + 2e6, (small, large)
    assert large < 0.25 * 24000 * 64 * 64 * 2


def test_refuses_partition_of_another_detector(small):
    ds, _ = small
    with pytest.raises(InvalidInputError, match="detector"):
        multitau_g2(ds, rectangles((10, 10), ["0:5,0:5"]), device="cpu")


def test_refuses_excluding_everything(small):
    ds, part = small
    with pytest.raises(AnalysisError, match="every frame"):
        multitau_g2(ds, part, exclude_frames=np.ones(ds.n_frames, bool), device="cpu")
