"""The compiled CPU kernels: same results as the numpy reference on every code path, the
choice of kernels, and the compiled-kernel cache shared by every user of an install."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.xpcs import engine, kernel_ahead, kernel_cache, kernels, multitau
from speckle.xpcs.multitau import MultiTauCorrelator, lag_grid, multitau_g2
from speckle.xpcs.partitions import Partition
from speckle.xpcs.simulate import ou_speckle
from speckle.xpcs.statistics import FrameStatistics
from xpcs_reference import symmetric_g2

ROOT = Path(__file__).resolve().parents[1]


def rings(shape, n_dyn=3, per_dyn=3, hole=3):
    y, x = np.indices(shape)
    r = np.hypot(y - shape[0] * 0.45, x - shape[1] * 0.6)
    edges = np.linspace(hole, r.max() + 1e-9, n_dyn * per_dyn + 1)
    sta = np.digitize(r, edges).astype(np.int32)
    dyn = np.where(sta > 0, (sta - 1) // per_dyn + 1, 0).astype(np.int32)
    return Partition(dyn, sta, [np.nan] * n_dyn, [np.nan] * (n_dyn * per_dyn),
                     [f"ring {i}" for i in range(n_dyn)], "qring")


@pytest.fixture(scope="module")
def series():
    # 100x100 pixels: two blocks of the correlator; 517 frames: odd lengths at every level
    shape = (100, 100)
    ds = ou_speckle(517, shape, tau_frames=9, beta=0.3, mean_counts=2, seed=21)
    return ds, rings(shape)


def both(data, part, **kw):
    return [multitau_g2(data, part, device="cpu", kernels=k, **kw) for k in ("numba", "numpy")]


@pytest.mark.parametrize("options", [
    {}, {"chunk_frames": 1}, {"chunk_frames": 37}, {"threads": 1}, {"buffers": 16},
    {"exclude_frames": [0, 3, 4, 200, 201, 202, 516]}, {"normalize_frames": True},
], ids=lambda o: ",".join(o) or "default")
def test_compiled_and_numpy_kernels_agree(series, options):
    ds, part = series
    compiled, reference = both(ds, part, **options)
    np.testing.assert_array_equal(compiled.tau_frames, reference.tau_frames)
    np.testing.assert_array_equal(compiled.n_pairs, reference.n_pairs)
    # integer counts: every float32 sum of a batch is exact, so both are equal to rounding;
    # frames divided by their means are not integers: float32 precision. The error is the
    # spread of the per-pixel g2: where it is 0 (a lag of one pair), both give 0 to 1e-8.
    exact = not options.get("normalize_frames")
    np.testing.assert_allclose(compiled.g2, reference.g2, rtol=1e-12 if exact else 1e-6)
    np.testing.assert_allclose(compiled.g2_err, reference.g2_err, rtol=1e-9 if exact else 1e-4,
                               atol=1e-8)


def test_compiled_kernels_match_the_definition_and_do_not_depend_on_chunks(series):
    ds, part = series
    grid = lag_grid(ds.n_frames, 8)
    bad = np.zeros(ds.n_frames, bool)
    bad[[2, 90, 91, 300]] = True
    with np.errstate(invalid="ignore"):  # lags whose pairs all touch an excluded frame
        ref, ref_err = symmetric_g2(ds.read_frames(), part, grid.tau_frames, grid.level,
                                    (~bad).astype(float))
    runs = [multitau_g2(ds, part, exclude_frames=bad, chunk_frames=c, device="cpu",
                        kernels="numba") for c in (None, 1, 5, 128, 129)]
    for res in runs:
        np.testing.assert_allclose(res.g2, ref, rtol=1e-9)
        np.testing.assert_allclose(res.g2_err, ref_err, rtol=1e-7)
        np.testing.assert_allclose(res.g2, runs[0].g2, rtol=1e-12)


def test_float_frames_agree_to_float32_precision():
    rng = np.random.default_rng(4)
    frames = rng.gamma(2.0, 1.5, (300, 40, 50)).astype(np.float32)  # not integers
    part = rings((40, 50))
    compiled, reference = both(frames, part, chunk_frames=64)
    np.testing.assert_allclose(compiled.g2, reference.g2, rtol=2e-6)
    np.testing.assert_allclose(compiled.g2_err, reference.g2_err, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32", "int32", ">u2"])
def test_frames_read_in_place_from_a_read_only_map(tmp_path, dtype):
    """Chunks of a read-only memory map, of every dtype (those the kernel reads directly and
    the others, converted first), give the numpy reference's g2 and frame statistics."""
    rng = np.random.default_rng(5)
    frames = rng.poisson(3.0, (300, 30, 40)).astype(dtype)
    np.save(tmp_path / "f.npy", frames)
    mapped = np.load(tmp_path / "f.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    part = rings((30, 40))
    compiled, reference = both(mapped, part, chunk_frames=200)  # a whole piece, then a part
    np.testing.assert_allclose(compiled.g2, reference.g2, rtol=1e-12)
    np.testing.assert_allclose(compiled.g2_err, reference.g2_err, rtol=1e-9, atol=1e-8)
    stats = [FrameStatistics(300, (30, 40), saturation=6, used=part.mask, kernels=k)
             for k in ("numba", "numpy")]
    for st in stats:
        for start in range(0, 300, 128):
            st(start, mapped[start:start + 128])
    np.testing.assert_allclose(stats[0].intensity, stats[1].intensity, rtol=1e-12)
    np.testing.assert_array_equal(stats[0].saturated, stats[1].saturated)
    np.testing.assert_allclose(stats[0].sum_image, stats[1].sum_image)


def test_chunks_of_changing_dtype_give_the_reference_sums():
    """Chunks shorter than a piece are collected; one of another dtype turns the collected
    frames into float32 without losing them."""
    rng = np.random.default_rng(6)
    frames = rng.poisson(2.0, (300, 500)).astype(np.uint16)
    kinds = [np.uint16, np.float32, np.int64, np.dtype(">u2"), np.uint8, np.uint16]
    sums = []
    for k in ("numba", "numpy"):
        corr = MultiTauCorrelator(300, 500, kernels=k)
        for i, start in enumerate(range(0, 300, 50)):
            corr.feed(frames[start:start + 50].astype(kinds[i]))
        sums.append(corr.result())
    for a, b in zip(*sums):
        np.testing.assert_array_equal(a, b)


def test_a_few_unused_pixels_are_correlated_and_binned_nowhere(monkeypatch):
    """With most pixels used, the compiled correlator takes whole frames (no gather): the
    unused pixels, hot ones included, change nothing; with few used, it gathers them."""
    rng = np.random.default_rng(7)
    shape = (60, 70)
    frames = rng.poisson(2.0, (400, *shape)).astype(np.uint16)
    part = rings(shape, hole=6)  # a beam stop
    dyn, sta = part.dynamic_map.copy(), part.static_map.copy()
    dyn[:, 33] = sta[:, 33] = 0  # a dead column
    part = Partition(dyn, sta, part.dynamic_q, part.static_q, part.labels, part.kind)
    frames[:, ~part.mask] = 65535  # garbage where nothing is binned
    sizes = []
    real = multitau.MultiTauCorrelator

    def spy(n_frames, n_pixels, *a, **k):
        sizes.append(n_pixels)
        return real(n_frames, n_pixels, *a, **k)

    monkeypatch.setattr(multitau, "MultiTauCorrelator", spy)
    assert part.mask.mean() > multitau._GATHER_BELOW
    whole = multitau_g2(frames, part, device="cpu", kernels="numba")
    monkeypatch.setattr(multitau, "_GATHER_BELOW", 1.01)
    gathered = multitau_g2(frames, part, device="cpu", kernels="numba")
    reference = multitau_g2(frames, part, device="cpu", kernels="numpy")
    assert sizes == [frames[0].size, part.mask.sum(), part.mask.sum()]
    for other in (gathered, reference):
        np.testing.assert_allclose(whole.g2, other.g2, rtol=1e-12)
        np.testing.assert_allclose(whole.g2_err, other.g2_err, rtol=1e-9, atol=1e-8)
        np.testing.assert_array_equal(whole.n_pairs, other.n_pairs)


def test_per_pixel_sums_agree():
    rng = np.random.default_rng(8)
    n_frames, n_pixels = 400, 9000
    frames = rng.poisson(rng.uniform(0.5, 3, n_pixels), (n_frames, n_pixels)).astype(np.uint16)
    w = np.ones(n_frames, np.float32)
    w[[10, 11, 250]] = 0
    sums = []
    for k in ("numba", "numpy"):
        corr = MultiTauCorrelator(n_frames, n_pixels, threads=2, kernels=k)
        for start in range(0, n_frames, 100):
            corr.feed(frames[start:start + 100], w[start:start + 100])
        sums.append(corr.result())
    for a, b in zip(*sums):
        np.testing.assert_array_equal(a, b)


def _levels_call(frames, column, history, up_queue, run_up, lags, frame_w=None, used=None,
                 level=np.inf):
    """Call multitau_levels on two levels: level 0 with ``history`` rows and the new ``frames``
    (its columns ``column ..``, the frames at uneven places of one buffer, as mapped from a file
    with gaps between its chunks), level 1 (lags 5..8, the top) with ``up_queue`` queued
    entries and no history, running when ``run_up``; with ``used``, gathering the frame
    statistics too. Return the kernel's outputs (the statistics: sums, saturated counts, pixel
    sums)."""
    cols = {name: j for j, name in enumerate(kernels.PLAN_COLUMNS)}
    n_pixels, b = history.shape[1], 8
    h, n = len(history), len(frames)
    w = np.ones(n, np.float32) if frame_w is None else frame_w
    pairs = (h + n) // 2
    rows = [b, b + len(up_queue) + pairs]
    bufs = np.zeros((sum(rows), n_pixels), np.float32)
    bufs[:h] = history
    bufs[b:b + len(up_queue)] = up_queue
    plan = np.zeros((2, len(cols)), np.int64)
    for lv, values in enumerate([
            dict(run=1, h=h, q=0, n_in=n, first=0, pairs=pairs, n_head=b, row=0,
                 first_lag=lags[0], n_lags=len(lags), lag_row=0),
            dict(run=int(run_up), h=0, q=len(up_queue), n_in=pairs, first=0, pairs=0, n_head=0,
                 row=b, first_lag=5, n_lags=4, lag_row=len(lags))]):
        for name, value in values.items():
            plan[lv, cols[name]] = value
    weights = np.ones((2, sum(rows) + n), np.float32)
    weights[0, h:h + n] = w
    weights[1, len(up_queue):len(up_queue) + pairs] = (weights[0, 0:2 * pairs:2]
                                                       * weights[0, 1:2 * pairs:2])
    G = np.zeros((len(lags) + 4, n_pixels))
    heads = np.zeros((2, b, n_pixels), np.float32)
    total = np.zeros(n_pixels)
    drops = (np.zeros((2, n_pixels)), np.zeros_like(G), np.zeros_like(G)) if (w == 0).any() \
        else (np.zeros((0, n_pixels)),) * 3
    row = frames.shape[1]
    starts = np.arange(n, dtype=np.int64) * (row + 20) + np.arange(n) % 4 * 5  # gaps 5-35
    buffer = np.full(int(starts[-1]) + row + 11 if n else 0, 60000, frames.dtype)
    for t in range(n):
        buffer[starts[t]:starts[t] + row] = frames[t]
    buffer.flags.writeable = False  # as mapped from a file
    acc = np.dtype(kernels.FRAME_SUM_TYPES[frames.dtype.name])
    used = np.zeros(0, bool) if used is None else used
    stats = (np.zeros(n if len(used) else 0, acc), np.zeros(n if len(used) else 0, np.int64),
             np.zeros(len(used), acc))
    kernels.multitau_levels(buffer, starts + column, w, plan, weights, bufs, G, heads, total,
                            *drops, used, float(level), acc.type(0), *stats)
    return bufs, G, heads, total, drops, stats


@pytest.mark.parametrize("h,n,first,n_lags", [(0, 40, 1, 8), (8, 128, 1, 8), (8, 16, 5, 4),
                                              (3, 9, 5, 3), (8, 1, 1, 8), (0, 5, 1, 7),
                                              (8, 33, 5, 1), (2, 20, 1, 6)])
def test_multitau_levels_kernel_is_its_definition(h, n, first, n_lags):
    """One level's lag products, history, first entries and pair sums; the level above
    queueing them (not running) or correlating them (running, as the top level)."""
    rng = np.random.default_rng(h * 100 + n)
    n_pixels = 1100  # four tiles and a part
    history = rng.uniform(0, 4, (h, n_pixels)).astype(np.float32)
    frames = rng.integers(0, 9, (n, n_pixels + 7), dtype=np.uint16)  # columns 3 .. 1102 used
    x32 = np.concatenate([history, frames[:, 3:3 + n_pixels]]).astype(np.float32)
    x = x32.astype(np.float64)
    lags = list(range(first, first + n_lags))
    pairs = (h + n) // 2
    up = x32[0:2 * pairs:2] + x32[1:2 * pairs:2]  # in float32, as the levels keep them
    for run_up in (False, True):
        queue = rng.integers(0, 9, (3, n_pixels)).astype(np.float32)
        used = rng.random(n_pixels) < 0.7
        bufs, G, heads, total, _, (sums, saturated, image) = _levels_call(
            frames, 3, history, queue, run_up, lags, used=used, level=6)
        mine = frames[:, 3:3 + n_pixels].astype(np.int64)  # frame_sums' definition
        np.testing.assert_array_equal(sums, mine[:, used].sum(1))
        np.testing.assert_array_equal(saturated, (mine[:, used] >= 6).sum(1))
        np.testing.assert_array_equal(image, mine.sum(0))
        for i, k in enumerate(lags):
            expected = sum((x[t - k] * x[t] for t in range(max(h, k), h + n)),
                           np.zeros(n_pixels))
            np.testing.assert_allclose(G[i], expected, rtol=1e-6)
        keep = min(8, h + n)
        np.testing.assert_array_equal(bufs[:keep], x[h + n - keep:h + n])  # new history
        upper = np.concatenate([queue, up])
        if run_up:  # the top level: its lags, its first entries, the sum of its entries
            for i, k in enumerate(range(5, 9)):
                expected = sum((upper[t - k] * upper[t] for t in range(k, len(upper))),
                               np.zeros(n_pixels))
                np.testing.assert_allclose(G[n_lags + i], expected, rtol=1e-6)
            np.testing.assert_allclose(total, upper.sum(0), rtol=1e-6)
            np.testing.assert_array_equal(heads[1][:min(8, len(upper))], upper[:8])
            keep = min(8, len(upper))
            np.testing.assert_array_equal(bufs[8:8 + keep], upper[len(upper) - keep:])
        else:  # queued behind the level's queue, nothing correlated
            np.testing.assert_array_equal(bufs[8:8 + len(upper)], upper)
            assert not G[n_lags:].any() and not total.any()


def test_multitau_levels_kernel_drops_pairs_with_an_excluded_frame():
    rng = np.random.default_rng(3)
    n_pixels, n = 300, 24
    frames = rng.integers(1, 9, (n, n_pixels)).astype(np.float32)
    w = np.ones(n, np.float32)
    w[[4, 9]] = 0  # frames 4 and 9: pairs (4, 5) and (8, 9) of the level above are excluded
    _, G, _, _, (dropped, ip_drop, if_drop), (sums, _, image) = _levels_call(
        frames, 0, np.zeros((0, n_pixels), np.float32), np.zeros((0, n_pixels), np.float32),
        False, list(range(1, 9)), w, used=np.ones(n_pixels, bool))
    np.testing.assert_array_equal(sums, frames.sum(1))  # excluded frames have statistics too
    np.testing.assert_array_equal(image, frames.sum(0))
    x = np.where(w[:, None] > 0, frames, 0).astype(np.float64)
    for i, k in enumerate(range(1, 9)):
        t = np.arange(k, n)
        np.testing.assert_allclose(G[i], (x[t - k] * x[t]).sum(0), rtol=1e-6)
        # first members whose partner is excluded leave IP; second members leave IF
        np.testing.assert_allclose(ip_drop[i], x[t - k][w[t] == 0].sum(0))
        np.testing.assert_allclose(if_drop[i], x[t][w[t - k] == 0].sum(0))
    np.testing.assert_allclose(dropped[0], x[4] + x[5] + x[8] + x[9])


def test_bin_sums_kernel_equals_pair_sums_then_numpy_binning():
    """The kernel makes IP and IF pixel by pixel as it bins them: the same sums as the float64
    IP / IF arrays of _Level.pair_sums binned by the numpy code, with and without excluded
    pairs, on levels whose lags all have their entries."""
    rng = np.random.default_rng(9)
    n_frames, n_pixels = 300, 3000
    frames = rng.poisson(rng.uniform(0.5, 3, n_pixels), (n_frames, n_pixels)).astype(np.uint16)
    static = rng.integers(0, 7, n_pixels)
    bins = multitau._Bins(static, np.array([1, 1, 2, 2, 3, 3]))
    for excluded in ([], [10, 11, 150, 299]):
        w = np.ones(n_frames, np.float32)
        w[excluded] = 0
        corr = MultiTauCorrelator(n_frames, n_pixels, threads=1, kernels="numba")
        for start in range(0, n_frames, 64):
            corr.feed(frames[start:start + 64], w[start:start + 64])
        compared = 0
        for level, total in corr.blocks[0].finished_levels():
            scale = float(2 ** level.level)
            ip, if_ = level.pair_sums(total)
            ref = multitau._BinSums.of(level.G, ip, if_, level.n_pairs.astype(float)[:, None],
                                       bins, scale)
            got = multitau._BinSums.of_level(level, total, bins)
            for name in ("G", "IP", "IF", "k", "m1", "m2"):
                np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-13,
                                           err_msg=name)
            compared += int(level.lags[-1]) <= min(level.h, level.n_head)
        assert compared >= 4  # the kernel ran on most levels
        assert (corr.blocks[0].levels[0].ip_drop is not None) == bool(excluded)


def test_choice_of_kernels(monkeypatch):
    monkeypatch.delenv("SPECKLE_CPU_KERNELS", raising=False)
    ahead = kernel_ahead.load("kernels")  # built by make setup (tests/test_kernel_ahead.py)
    assert ahead is not None and engine.compiled_kernels() is ahead
    monkeypatch.setenv("SPECKLE_AHEAD_KERNELS", "0")
    assert engine.compiled_kernels() is kernels
    assert engine.compiled_kernels("numpy") is None
    monkeypatch.setenv("SPECKLE_CPU_KERNELS", "numpy")
    assert engine.compiled_kernels() is None
    assert engine.compiled_kernels("numba") is kernels
    monkeypatch.setenv("SPECKLE_CPU_KERNELS", "fortran")
    with pytest.raises(InvalidInputError, match="auto, numba, numpy"):
        engine.compiled_kernels()


def test_without_numba_the_numpy_kernels_are_used(monkeypatch, series):
    real = engine.importlib.util.find_spec
    monkeypatch.setattr(engine.importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba" else real(name, *a))
    monkeypatch.delenv("SPECKLE_CPU_KERNELS", raising=False)
    assert engine.compiled_kernels() is None
    with pytest.raises(InvalidInputError, match="need numba"):
        engine.compiled_kernels("numba")
    ds, part = series
    corr = MultiTauCorrelator(ds.n_frames, 10)
    assert all(level.kernels is None for level in corr.blocks[0].levels)


# --- the shared cache -----------------------------------------------------------------------

LOAD = textwrap.dedent("""
    import os, sys, warnings
    warnings.simplefilter("error")
    assert not os.access(os.environ["SPECKLE_KERNEL_CACHE"], os.W_OK), "cache is writable"
    from speckle.xpcs import kernels
    stats = kernels.multitau_levels.stats
    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
""")


def run_read_only(cache: Path, home: Path, code: str):
    """Run ``code`` with ``cache`` as the kernel cache and no right to write it: as another
    user would (for root: without the capabilities that let root write anywhere)."""
    cache.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    env = {**os.environ, "SPECKLE_KERNEL_CACHE": str(cache), "HOME": str(home),
           "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_CACHE_DIR", None)
    try:
        return subprocess.run(prefix + [sys.executable, "-c", code], env=env, cwd=home,
                              capture_output=True, text=True, timeout=300)
    finally:
        cache.chmod(0o755)


def test_a_user_who_cannot_write_the_cache_loads_it_without_compiling(tmp_path):
    shared = tmp_path / "cache"
    shared.mkdir()
    for f in kernel_cache.cache_dir().glob("kernels.*.nb[ic]"):
        shutil.copy(f, shared)
    assert any(shared.iterdir()), "the kernels were imported, so their cache exists"
    done = run_read_only(shared, tmp_path, LOAD)
    assert done.returncode == 0, done.stderr
    hits, misses = map(int, done.stdout.split())
    assert (hits, misses) == (len(kernels.CASCADE_FRAME_TYPES), 0)  # one per frame dtype
    assert not (tmp_path / ".cache").exists()  # nothing compiled into the user's own cache


def test_a_stale_read_only_cache_warns_and_still_computes(tmp_path):
    empty = tmp_path / "stale"
    empty.mkdir()
    code = textwrap.dedent("""
        import warnings
        import numpy as np
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from speckle.xpcs import kernels
        assert any("not writable" in str(w.message) for w in caught), caught
        chunk = np.arange(12, dtype=np.uint16).reshape(4, 3)
        sums, saturated, image = np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(3)
        kernels.frame_sums(chunk, np.ones(3, bool), 10.0, 0, sums, saturated, image)
        print([sums.tolist(), saturated.tolist(), image.tolist()])
    """)
    done = run_read_only(empty, tmp_path, code)
    assert done.returncode == 0, done.stderr
    x = np.arange(12).reshape(4, 3)
    assert eval(done.stdout) == [x.sum(1).tolist(), (x >= 10).sum(1).tolist(),
                                 x.sum(0).astype(float).tolist()]
    assert list(empty.iterdir()) == []


def test_warming_opens_the_cache_to_every_user(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    index = folder / "kernels.x-1.py311.nbi"
    index.write_bytes(b"")
    index.chmod(0o600)
    monkeypatch.setenv("SPECKLE_KERNEL_CACHE", str(folder))
    assert str(folder) in engine.warm()
    assert folder.stat().st_mode & 0o777 == 0o755
    assert index.stat().st_mode & 0o777 == 0o644


def test_queues_sized_for_big_detectors_give_the_same_result(series, monkeypatch):
    # on a big detector the pieces and the batches of the higher levels shrink to bound memory;
    # forced here on a small one: pieces of 8 frames, higher levels run every 2 entries
    ds, part = series
    default = both(ds, part, exclude_frames=[5, 6, 300])
    monkeypatch.setattr(multitau, "_QUEUE_BYTES", 1)
    monkeypatch.setattr(multitau, "_COMPILED_PIECE_BYTES", 1)
    corr = MultiTauCorrelator(ds.n_frames, 10, kernels="numpy")
    assert corr.piece == 8 and corr.blocks[0].min_batch == 2
    assert MultiTauCorrelator(ds.n_frames, 10, kernels="numba").piece == 8
    for small, big in zip(both(ds, part, exclude_frames=[5, 6, 300]), default):
        np.testing.assert_allclose(small.g2, big.g2, rtol=1e-12)
        np.testing.assert_allclose(small.g2_err, big.g2_err, rtol=1e-9)



DEFERRED = textwrap.dedent("""
    import sys
    import numpy as np
    from speckle.xpcs.multitau import MultiTauCorrelator
    from speckle.xpcs.statistics import FrameStatistics
    frames = np.random.default_rng(3).poisson(2.0, (300, 16, 40)).astype(np.uint16)
    flat = frames.reshape(300, -1)
    stats = FrameStatistics(300, (16, 40))
    corr = MultiTauCorrelator(300, 640)
    assert "speckle.xpcs.kernels" not in sys.modules, "built only once numba had started"
    stats(0, frames[:100])  # the first chunk loads them
    assert "speckle.xpcs.kernels" in sys.modules
    stats(100, frames[100:])
    corr.feed(flat[:150])
    corr.feed(flat[150:])
    assert corr.blocks[0].kernels.multitau_levels is sys.modules["speckle.xpcs.kernels"].multitau_levels
    ref = MultiTauCorrelator(300, 640, kernels="numpy")
    ref.feed(flat)
    for got, want in zip(corr.result(), ref.result()):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(stats.sum_image, frames.sum(axis=0))
    np.testing.assert_array_equal(stats.intensity, flat.mean(axis=1))
    print("ok")
""")


def test_a_correlator_is_built_before_the_kernels_load():
    # numba's start-up (0.3-0.5 s) overlaps the correlator's allocation and the first read;
    # the kernels load at their first use, and give what the numpy code gives
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPECKLE_AHEAD_KERNELS": "0"}
    env.pop("SPECKLE_CPU_KERNELS", None)
    done = subprocess.run([sys.executable, "-c", DEFERRED], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
