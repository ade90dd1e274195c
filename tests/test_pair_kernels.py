"""The two-time maps' exact integer products (speckle.xpcs.pair_kernels) against their
definition, and the maps they give against the float32 reference on every code path."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speckle.xpcs import twotime
from speckle.xpcs.engine import compiled_kernels
from speckle.xpcs.partitions import Partition
from speckle.xpcs.simulate import ou_speckle
from speckle.xpcs.twotime import EXACT_MAX_VALUE, twotime_maps

pairs = compiled_kernels("numba", "pair_kernels")


def definition(a, b):
    """C(t1, t2) = <a(t1) b(t2)>_p / (<a(t1)>_p <b(t2)>_p) in float64 from int64 sums."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    n = a.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a @ b.T) * n / np.outer(a.sum(axis=1), b.sum(axis=1)).astype(np.float64)


def words_of(values, rows, lanes):
    """``values`` (time, pixels) as int32 words of ``lanes`` values (2: int16, 4: bytes), rows
    padded to ``rows``."""
    t, n = values.shape
    held = np.zeros((rows, -(-n // lanes) * lanes), np.int16 if lanes == 2 else np.uint8)
    held[:t, :n] = values
    return held.view(np.int32)


def run_kernel(a, b, same, group, width, lanes=2, threads=2):
    """The map of ``a`` against ``b`` from pair_products, its panels shared by ``threads``
    callers as twotime shares them; ``group`` at most the bound against overflow."""
    ta, tb, n = len(a), len(b), a.shape[1]
    largest = max(int(np.abs(a.astype(np.int64)).max()), int(np.abs(b.astype(np.int64)).max()))
    group = min(group, (2**31 - 1) // max(1, lanes * largest**2))
    rows = -(-ta // pairs.PAIR_ROWS) * pairs.PAIR_ROWS
    a32 = words_of(a, rows, lanes)
    b32 = a32 if same else words_of(b, len(b), lanes)
    words = a32.shape[1]
    sa, sb = np.empty(ta), np.empty(tb)
    pairs.row_sums(a32, 0, words, ta, lanes, sa)
    pairs.row_sums(b32, 0, words, tb, lanes, sb)
    n_panels = -(-tb // width)
    G = np.full((rows, n_panels * width), 12345, np.int32)  # garbage: the kernel clears it
    total = np.full(G.shape, -7, np.int64)
    out = np.full((ta, tb), -1.0, np.float32)
    for share in np.array_split(np.arange(n_panels), threads):
        pairs.pair_products(a32, b32, lanes, 0, words, ta, tb, same, group, width, share, G,
                            total, sa, sb, float(n), out)
    return out, sa, sb


@pytest.mark.parametrize("lanes,low,high", [(2, -300, 3000), (4, 0, 127)])
@pytest.mark.parametrize("same", [True, False])
@pytest.mark.parametrize("ta,tb,n,group,width", [
    (1, 1, 1, 10**6, 16),          # smallest: one step, one pixel
    (7, 7, 5, 10**6, 16),          # rows not a multiple of the tile, pixels not of the word
    (50, 37, 999, 10**6, 32),      # several panels, ragged edges (int16: groups of 119 words)
    (130, 130, 2048, 64, 128),     # several blocks of words, grouped int64 sums
    (97, 41, 1301, 3, 16),         # groups of 3 words: most of the work in int64
])
def test_pair_products_is_the_definition(same, ta, tb, n, group, width, lanes, low, high):
    rng = np.random.default_rng(ta * 1000 + n)
    a = rng.integers(low, high + 1, (ta, n)).astype(np.int16)
    b = a if same else rng.integers(0, high + 1, (tb, n)).astype(np.int16)
    if same:
        tb = ta
    out, sa, sb = run_kernel(a, b, same, group, width, lanes)
    np.testing.assert_array_equal(sa, a.sum(axis=1, dtype=np.int64))
    np.testing.assert_array_equal(sb, b.sum(axis=1, dtype=np.int64))
    # float32 of the exact value: within half an ulp of float32 (2**-24 relative)
    np.testing.assert_allclose(out, definition(a, b), rtol=2.0**-23, atol=0)


def test_pair_products_compiled_for_a_cpu_without_vnni(tmp_path):
    """numba told to compile for a generic x86-64 (no AVX, no VNNI): the kernels still compile
    (plain vector code for the bytes' and int16 products) and give the exact maps."""
    script = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
from test_pair_kernels import definition, run_kernel, pairs
assert not pairs.BYTE_PRODUCTS
rng = np.random.default_rng(0)
a = rng.integers(0, 128, (23, 77)).astype(np.int16)
for lanes in (2, 4):
    out, _, _ = run_kernel(a, a, True, 10**6, 16, lanes)
    np.testing.assert_allclose(out, definition(a, a), rtol=2.0**-23)
print("exact")
""".format(tests=str(Path(__file__).parent))
    env = dict(os.environ, NUMBA_CPU_NAME="x86-64", SPECKLE_KERNEL_CACHE=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("exact")


def test_pair_products_at_the_overflow_bound():
    """Values of EXACT_MAX_VALUE summed in int32 over the largest group the bound allows: the
    products of one group reach 2**31 - 1 at most and the map is still exact."""
    largest = EXACT_MAX_VALUE
    group = (2**31 - 1) // (2 * largest * largest)
    n = 2 * group * 3 + 1  # three full groups and one word more
    a = np.full((9, n), largest, np.int16)
    a[::2, ::3] = -largest
    out, _, _ = run_kernel(a, a, True, group, 16)
    np.testing.assert_allclose(out, definition(a, a), rtol=2.0**-23)
    b = np.full((9, 4 * 33025 + 3), 127, np.int16)  # bytes: 4 * 127**2 per word, 33025 words
    out, _, _ = run_kernel(b, b, True, 10**9, 16, lanes=4)
    np.testing.assert_allclose(out, definition(b, b), rtol=2.0**-23)


def partition(shape, n_bins, seed, odd=True):
    """Random dynamic bins over ``shape``; some pixels in none."""
    rng = np.random.default_rng(seed)
    dyn = rng.integers(0, n_bins + 1, shape)
    if odd and (dyn == 1).sum() % 2 == 0:  # bin 1 has an odd number of pixels (a spare column)
        dyn[np.argwhere(dyn != 1)[0][0], np.argwhere(dyn != 1)[0][1]] = 1
    sta = np.where(dyn > 0, 1, 0)
    return Partition(dyn, sta, np.arange(1.0, n_bins + 1), np.array([1.0]),
                     [f"b{i}" for i in range(1, n_bins + 1)], "qring")


def maps_by_definition(frames, part, bins, bin_frames):
    steps = len(frames) // bin_frames
    flat = frames[:steps * bin_frames].reshape(steps, bin_frames, -1).astype(np.int64).sum(1)
    return {b: definition(flat[:, part.dynamic_map.ravel() == b],
                          flat[:, part.dynamic_map.ravel() == b]) for b in bins}


@pytest.mark.parametrize("dtype,top", [(np.uint16, 40), (np.uint8, 250), (np.int16, 9),
                                       (np.uint16, 60000), (np.int32, 100)])
@pytest.mark.parametrize("bin_frames,memory_limit", [(1, 2e9), (3, 2e9), (1, 20_000)])
def test_twotime_exact_and_float_paths_agree_with_the_definition(dtype, top, bin_frames,
                                                                   memory_limit):
    """Integer frames of every kind (counts past EXACT_MAX_VALUE take the float path), binned
    or not, in memory or blocked: compiled and numpy kernels both give the definition."""
    rng = np.random.default_rng(top)
    frames = rng.integers(0, top + 1, (61, 9, 11)).astype(dtype)
    frames[:, 2, 3] = 0      # a dead pixel
    frames[:, 4, 4] = top    # a hot one
    part = partition((9, 11), 3, seed=top)
    want = maps_by_definition(frames, part, (1, 2, 3), bin_frames)
    for kernels in ("numba", "numpy"):
        maps = twotime_maps(frames, part, bin_frames=bin_frames, memory_limit=memory_limit,
                            kernels=kernels, device="cpu")
        for b in (1, 2, 3):
            np.testing.assert_allclose(maps[b], want[b], rtol=3e-6, err_msg=f"{kernels} {b}")


def test_twotime_exact_path_is_taken_and_beats_float32_rounding():
    """Counts of a bright speckle pattern: the compiled path's maps are float32 of the exact
    value (the numpy path's float32 sums round more)."""
    ds = ou_speckle(200, (24, 24), tau_frames=8, beta=0.3, mean_counts=200, seed=3)
    frames = ds.read_frames()
    assert frames.dtype.kind == "u" and frames.max() <= EXACT_MAX_VALUE
    part = partition((24, 24), 2, seed=5)
    want = maps_by_definition(frames, part, (1, 2), 1)
    exact = twotime_maps(frames, part, kernels="numba", device="cpu")
    for b in (1, 2):
        np.testing.assert_allclose(exact[b], want[b], rtol=2.0**-23, atol=0)


def test_twotime_bins_in_any_order_and_repeated():
    rng = np.random.default_rng(11)
    frames = rng.poisson(3, (40, 8, 8)).astype(np.uint16)
    part = partition((8, 8), 4, seed=2)
    maps = twotime_maps(frames, part, bins=[3, 1, 3], kernels="numba", device="cpu")
    assert sorted(maps) == [1, 3]
    want = maps_by_definition(frames, part, (1, 3), 1)
    for b in (1, 3):
        np.testing.assert_allclose(maps[b], want[b], rtol=3e-7)


def test_bin_columns_start_even_and_spare_columns_hold_zero():
    rng = np.random.default_rng(4)
    dyn = rng.integers(0, 5, (13, 7))
    take, columns, spare = twotime._bin_columns(dyn.ravel(), [1, 2, 3, 4])
    assert len(take) % 2 == 0
    for b, cols in columns.items():
        assert cols.start % 2 == 0
        np.testing.assert_array_equal(np.sort(take[cols]), np.flatnonzero(dyn.ravel() == b))
    frames = rng.integers(1, 9, (5, 13, 7)).astype(np.uint16)
    held = twotime._binned_pixels(twotime.as_dataset(frames), take, spare, 0, 5, 1, None, None,
                                  rows=6)
    assert held.shape == (6, len(take))
    assert not held[:, spare].any() and not held[5:].any()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 40), st.integers(1, 6), st.integers(1, 9), st.integers(0, 3),
       st.integers(1, 3), st.integers(0, 2**16 - 1))
def test_twotime_compiled_equals_numpy_on_random_shapes(t, rows, cols, top_exp, bin_frames,
                                                        seed):
    """Random small shapes, counts and binnings: the compiled kernels' maps equal the numpy
    reference's (NaN where a time step of a bin has no counts, in both)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 10**top_exp + 1, (t, rows, cols)).astype(np.uint16)
    dyn = rng.integers(0, 3, (rows, cols))
    dyn.flat[0] = 1
    n_bins = int(dyn.max())
    part = Partition(dyn, np.where(dyn > 0, 1, 0), np.arange(1.0, n_bins + 1), np.array([1.0]),
                     ["a", "b"][:n_bins], "qring")
    bins = [b for b in range(1, n_bins + 1) if (dyn == b).any()]
    if t // bin_frames < 2:
        bin_frames = 1
    numba_maps = twotime_maps(frames, part, bins=bins, bin_frames=bin_frames, kernels="numba",
                              device="cpu")
    numpy_maps = twotime_maps(frames, part, bins=bins, bin_frames=bin_frames, kernels="numpy",
                              device="cpu")
    for b in bins:
        np.testing.assert_allclose(numba_maps[b], numpy_maps[b], rtol=3e-6, equal_nan=True)


def test_each_bin_takes_its_own_path(monkeypatch):
    """A saturated pixel (65535) sends only its own bin to the float32 product; a bin of small
    counts (bytes where the CPU has VNNI) and one of counts past a byte (int16) are exact."""
    lanes = []
    real = twotime._ExactProducts._words

    def words(self, name, values, cols, n_lanes):
        lanes.append((cols.stop - cols.start, n_lanes))
        return real(self, name, values, cols, n_lanes)

    monkeypatch.setattr(twotime._ExactProducts, "_words", words)
    rng = np.random.default_rng(21)
    frames = rng.poisson(300, (90, 12, 12)).astype(np.uint16)  # counts past a byte
    dyn = np.zeros((12, 12), int)
    dyn[:4], dyn[4:8], dyn[8:] = 1, 2, 3
    frames[:, :4] = rng.poisson(0.7, (90, 4, 12))  # bin 1: photon counting, bytes
    frames[:, 9, 9] = 65535  # bin 3: a saturated pixel
    part = Partition(dyn, np.where(dyn > 0, 1, 0), np.arange(1.0, 4), np.array([1.0]),
                     ["a", "b", "c"], "qring")
    assert frames[:, 4:8].max() > 127
    want = maps_by_definition(frames, part, (1, 2, 3), 1)
    maps = twotime_maps(frames, part, kernels="numba", device="cpu")
    for b in (1, 2):  # exact: float32 of the exact value
        np.testing.assert_allclose(maps[b], want[b], rtol=2.0**-23, atol=0)
    np.testing.assert_allclose(maps[3], want[3], rtol=3e-6)
    assert lanes == [(48, 4 if pairs.BYTE_PRODUCTS else 2), (48, 2)]  # bin 3: not exact


def test_a_bin_without_pixels_gives_a_map_of_nan_on_both_paths():
    rng = np.random.default_rng(0)
    frames = rng.poisson(2, (30, 6, 6)).astype(np.uint16)
    dyn = np.ones((6, 6), int)
    dyn[:, 3:] = 3  # bin 2: no pixel (all masked, say)
    part = Partition(dyn, np.where(dyn > 0, 1, 0), np.array([1.0, 2.0, 3.0]), np.array([1.0]),
                     ["a", "b", "c"], "qring")
    want = maps_by_definition(frames, part, (1, 3), 1)
    for kernels in ("numba", "numpy"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy: the mean of no pixels
            maps = twotime_maps(frames, part, kernels=kernels, device="cpu")
        assert maps[2].shape == (30, 30) and np.isnan(maps[2]).all()
        for b in (1, 3):
            np.testing.assert_allclose(maps[b], want[b], rtol=3e-6)
