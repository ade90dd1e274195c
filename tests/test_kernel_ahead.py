"""The kernels built ahead of time (:mod:`speckle.xpcs.kernel_ahead`): built by ``make setup``,
loaded without numba, the same results as numba's kernels, strict about the arguments they
take, and never used when built from other sources or for another CPU."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from speckle.xpcs import engine, kernel_ahead
from speckle.xpcs.kernel_interface import cache_dir
from speckle.xpcs.multitau import multitau_g2
from speckle.xpcs.partitions import Partition
from speckle.xpcs.simulate import ou_speckle
from speckle.xpcs.twotime import twotime_maps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ahead():
    """The installed extension's correlator kernels (``make setup`` builds them)."""
    module = kernel_ahead.load("kernels")
    assert module is not None, (f"no ahead-of-time kernels in {cache_dir()}: run "
                                "python -m speckle.xpcs.engine (make setup does)")
    return module


def jit(monkeypatch, module="kernels"):
    """numba's module of the same kernels (the ahead-of-time ones turned off)."""
    monkeypatch.setenv("SPECKLE_AHEAD_KERNELS", "0")
    jitted = engine.compiled_kernels("numba", module)
    monkeypatch.delenv("SPECKLE_AHEAD_KERNELS")
    return jitted


def test_the_installed_kernels_load_without_numba_in_a_millisecond_or_so():
    code = textwrap.dedent("""
        import sys, time
        import numpy
        t = time.perf_counter()
        from speckle.xpcs import engine
        k, p = engine.compiled_kernels(), engine.compiled_kernels(module="pair_kernels")
        took = time.perf_counter() - t
        assert type(k).__name__ == type(p).__name__ == "AheadModule", (k, p)
        assert "numba" not in sys.modules and "llvmlite" not in sys.modules
        print(took)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 0.1  # numba's cache: 0.3-0.5 s


def messy_series(dtype, seed=3):
    """Poisson speckle with dead and hot pixels, a beam stop and an odd shape."""
    shape = (37, 53)
    ds = ou_speckle(301, shape, tau_frames=6, beta=0.25, mean_counts=3, seed=seed)
    frames = ds.read_frames().astype(np.float64)
    frames[:, 5, 7] = 0  # dead
    frames[:, 20, 30] = 250  # hot
    if np.dtype(dtype).kind == "f":
        frames = frames * 0.37
    y, x = np.indices(shape)
    r = np.hypot(y - 18.2, x - 26.7)
    sta = np.digitize(r, np.linspace(3, r.max() + 1e-9, 7)).astype(np.int32)  # 0: beam stop
    dyn = np.where(sta > 0, (sta - 1) // 2 + 1, 0).astype(np.int32)
    part = Partition(dyn, sta, [np.nan] * 3, [np.nan] * 6, ["a", "b", "c"], "qring")
    return frames.astype(dtype), part


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
def test_multitau_ahead_equals_numba(ahead, monkeypatch, dtype):
    frames, part = messy_series(dtype)
    options = dict(device="cpu", kernels="numba", chunk_frames=41,
                   exclude_frames=[0, 7, 8, 150, 300])
    got = multitau_g2(frames, part, **options)
    monkeypatch.setenv("SPECKLE_AHEAD_KERNELS", "0")
    ref = multitau_g2(frames, part, **options)
    np.testing.assert_array_equal(got.n_pairs, ref.n_pairs)
    np.testing.assert_allclose(got.g2, ref.g2, rtol=1e-12)
    np.testing.assert_allclose(got.g2_err, ref.g2_err, rtol=1e-9, atol=1e-12)


def test_frame_sums_ahead_equal_numba_and_the_definition(ahead, monkeypatch):
    rng = np.random.default_rng(5)
    chunk = rng.poisson(2.0, (61, 999)).astype(np.uint16)
    chunk[:, 3] = 65535
    used = rng.random(999) > 0.1
    results = []
    for module in (ahead, jit(monkeypatch)):
        out = np.zeros(61, np.int64), np.zeros(61, np.int64), np.zeros(999)
        module.frame_sums(chunk, used, 10.0, np.int64(0), *out)
        results.append(out)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    sums, saturated, image = results[0]
    np.testing.assert_array_equal(sums, chunk[:, used].sum(1, dtype=np.int64))
    np.testing.assert_array_equal(saturated, (chunk[:, used] >= 10).sum(1))
    np.testing.assert_array_equal(image, chunk.sum(0, dtype=np.int64))


def test_twotime_maps_ahead_equal_numba(ahead, monkeypatch):
    frames, part = messy_series("uint16", seed=8)
    got = twotime_maps(frames, part, kernels="numba")
    monkeypatch.setenv("SPECKLE_AHEAD_KERNELS", "0")
    ref = twotime_maps(frames, part, kernels="numba")
    assert got.keys() == ref.keys()
    for key in got:
        np.testing.assert_array_equal(got[key], ref[key])


def test_arguments_no_overload_takes_are_refused(ahead):
    used, out = np.ones(10, bool), (np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(10))
    ahead.frame_sums(np.ones((4, 10), np.uint16), used, 1.0, np.int64(0), *out)
    assert out[0].tolist() == [10] * 4
    bad = {
        "a dtype with no overload": (np.ones((4, 10), np.float16), used),
        "another byte order": (np.ones((4, 10), ">u2"), used),
        "strided frames": (np.ones((4, 20), np.uint16)[:, ::2], used),
        "a missing dimension": (np.ones(40, np.uint16), used),
        "a list": ([[1] * 10] * 4, used),
    }
    for what, (chunk, mask) in bad.items():
        with pytest.raises(TypeError, match="no compiled overload"):
            ahead.frame_sums(chunk, mask, 1.0, np.int64(0), *out)
        assert out[0].tolist() == [10] * 4, what
    read_only = np.zeros(10)
    read_only.flags.writeable = False  # an output the kernel would write
    with pytest.raises(TypeError, match="no compiled overload"):
        ahead.frame_sums(np.ones((4, 10), np.uint16), used, 1.0, np.int64(0), out[0], out[1],
                         read_only)
    with pytest.raises(TypeError, match="no compiled overload"):
        ahead.frame_sums(np.ones((4, 10), np.uint16), used, 1.0)  # too few


def test_the_kernels_release_the_interpreter_lock(ahead):
    chunk = np.ones((3000, 65536), np.uint8)
    used = np.ones(65536, bool)
    done = threading.Event()

    def work():
        for _ in range(3):
            out = np.zeros(3000, np.int64), np.zeros(3000, np.int64), np.zeros(65536)
            ahead.frame_sums(chunk, used, 1.0, np.int64(0), *out)
        done.set()

    thread = threading.Thread(target=work)
    start = time.perf_counter()
    thread.start()
    counted = 0
    while not done.is_set():
        counted += 1
    thread.join()
    took = time.perf_counter() - start
    # a kernel holding the lock would leave this loop a few switches (5 ms each) at most
    assert counted > 200 * (took / 0.005), (counted, took)


def copy_of_the_extension(folder):
    source = cache_dir()
    manifest = json.loads((source / kernel_ahead.MANIFEST).read_text())
    shutil.copy(source / manifest["extension"], folder)
    (folder / kernel_ahead.MANIFEST).write_text(json.dumps(manifest))
    return manifest


@pytest.mark.parametrize("change", ["sources", "cpu", "python", "bytes", "missing", "garbled",
                                    "elsewhere"])
def test_an_extension_built_from_other_sources_or_for_another_machine_is_not_used(
        ahead, tmp_path, change):
    manifest = copy_of_the_extension(tmp_path)
    assert kernel_ahead.usable(tmp_path) == manifest  # the copy as it is: used
    path = tmp_path / manifest["extension"]
    if change == "sources":
        manifest["sources"] = "0" * 64
    elif change == "cpu":
        manifest["cpu_flags"].append("avx10_9")
    elif change == "python":
        manifest["python"] = "cpython-399"
    elif change == "bytes":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    elif change == "missing":
        path.unlink()
    elif change == "elsewhere":  # a manifest naming a file outside its folder
        (tmp_path / "sub").mkdir()
        shutil.copy(path, tmp_path / "sub" / path.name)
        (tmp_path / "sub" / kernel_ahead.MANIFEST).write_text(json.dumps(manifest))
        manifest["extension"] = f"sub/{path.name}"
    (tmp_path / kernel_ahead.MANIFEST).write_text(
        "{not json" if change == "garbled" else json.dumps(manifest))
    assert kernel_ahead.usable(tmp_path) is None
    assert kernel_ahead._load_extension(tmp_path) is None


def test_a_user_who_cannot_write_the_cache_loads_them(ahead, tmp_path):
    from test_kernels import run_read_only

    shared = tmp_path / "cache"
    shared.mkdir()
    copy_of_the_extension(shared)
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from speckle.xpcs import engine
        k = engine.compiled_kernels()
        out = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2)
        k.frame_sums(np.ones((2, 2), np.uint8), np.ones(2, bool), 1.0, 0, *out)
        print(type(k).__name__, out[0].tolist(), "numba" in sys.modules)
    """)
    done = run_read_only(shared, tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["AheadModule", "[2,", "2]", "False"]
    assert sorted(p.name for p in shared.iterdir()) == sorted(
        [kernel_ahead.MANIFEST, json.loads((cache_dir() / kernel_ahead.MANIFEST).read_text())
         ["extension"]])  # nothing written


def test_a_process_without_them_uses_numba_s_kernels(tmp_path):
    code = textwrap.dedent("""
        from speckle.xpcs import engine
        print(type(engine.compiled_kernels()).__name__, engine.compiled_kernels().__name__)
    """)
    for env in ({"SPECKLE_AHEAD_KERNELS": "0"}, {"SPECKLE_KERNEL_CACHE": str(tmp_path)}):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["module", "speckle.xpcs.kernels"], env


def test_build_writes_an_extension_that_loads(tmp_path):
    path = kernel_ahead.build(tmp_path)
    manifest = json.loads(path.read_text())
    assert set(manifest["modules"]) == {"kernels", "pair_kernels"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers
    modules = kernel_ahead._load_extension(tmp_path)
    assert modules is not None
    k = modules["kernels"]
    out = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(3)
    k.frame_sums(np.arange(6, dtype=np.uint8).reshape(2, 3), np.ones(3, bool), 4.0, 0, *out)
    assert [o.tolist() for o in out] == [[3, 12], [0, 2], [3.0, 5.0, 7.0]]
    assert modules["pair_kernels"].PAIR_ROWS == 6
