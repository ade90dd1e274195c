"""speckle.memory: big arrays in memory of their own, zero-filled and writable, reused from a
pool once they are gone."""

import gc
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from speckle import memory
from speckle.memory import fresh_zeros


@pytest.mark.parametrize("shape,dtype", [((3, 5), np.float64), ((2**20 + 3,), np.float32),
                                         ((64, 300, 300), ">u2"), (7, np.int64)])
@pytest.mark.parametrize("write", [True, False])
def test_fresh_zeros_are_zeros_of_the_shape_and_dtype_asked(shape, dtype, write):
    a = fresh_zeros(shape, dtype, write=write)
    assert a.shape == ((shape,) if np.isscalar(shape) else shape)
    assert a.dtype == np.dtype(dtype) and a.flags.c_contiguous and a.flags.writeable
    assert not a.any()
    a[...] = 3
    assert (a == 3).all()


def test_a_view_keeps_the_memory_of_a_big_array():
    a = fresh_zeros((1024, 1024), np.float64)  # 8 MB: mapped for it alone
    view = a[10:20]
    del a
    gc.collect()
    view[:] = 1  # the mapping lives as long as a view of it
    assert view.sum() == 10 * 1024


BIG = (512, 1024)  # 4 MiB of float64: from the pool


def _address(a):
    return a.__array_interface__["data"][0]


def test_the_memory_of_an_array_that_is_gone_is_reused_cleared():
    a = fresh_zeros(BIG, np.float64)
    where = _address(a)
    a[...] = 7
    del a
    gc.collect()
    b = fresh_zeros(BIG, np.float64, write=False)  # reused memory is cleared either way
    assert _address(b) == where
    assert not b.any()


def test_memory_still_viewed_is_not_handed_out_again():
    a = fresh_zeros(BIG, np.float64)
    view = a[3:5]
    del a
    gc.collect()
    b = fresh_zeros(BIG, np.float64)
    b[...] = 1
    assert not np.shares_memory(view, b)
    view[...] = 2
    assert (b == 1).all() and (view == 2).all()


def test_fresh_empty_poisoned_where_asked(monkeypatch):
    monkeypatch.setattr(memory, "_POISON", True)
    a = memory.fresh_empty(BIG, np.float32)
    assert np.isnan(a).all()
    del a
    gc.collect()
    b = memory.fresh_empty(BIG, np.float32)  # reused: poisoned again
    assert np.isnan(b).all()
    monkeypatch.setattr(memory, "_POISON", False)
    b[...] = 5
    where = _address(b)
    del b
    gc.collect()
    c = memory.fresh_empty(BIG, np.float32)  # reused as it was left: values unspecified
    assert _address(c) == where and c.shape == BIG and c.flags.writeable


def test_idle_memory_goes_back_to_the_system(monkeypatch):
    memory.release_pool()
    monkeypatch.setattr(memory, "IDLE_SECONDS", 1.0)
    a = fresh_zeros(BIG, np.float64)
    del a  # (no gc.collect: in a long session it may outlast the idle time)
    assert memory.pooled_bytes() >= 8 * BIG[0] * BIG[1]
    deadline = time.monotonic() + 10
    while memory.pooled_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert memory.pooled_bytes() == 0


def test_the_pool_keeps_at_most_its_cap(monkeypatch):
    memory.release_pool()
    monkeypatch.setattr(memory, "POOL_BYTES", 3 * 2**20)
    arrays = [fresh_zeros((2**20 // 8,), np.float64) for _ in range(5)]  # 1 MiB each
    del arrays
    gc.collect()
    assert 0 < memory.pooled_bytes() <= 3 * 2**20
    assert memory.release_pool() > 0 and memory.pooled_bytes() == 0
    big = fresh_zeros((4 * 2**20 // 8,), np.float64)  # larger than the cap: never pooled
    del big
    gc.collect()
    assert memory.pooled_bytes() == 0


def test_threads_get_memory_of_their_own():
    def work(k):
        out = []
        for _ in range(20):
            a = fresh_zeros((300, 300), np.float64)
            assert not a.any()
            a[...] = k
            out.append(a)
            assert (out[0] == k).all()
            if len(out) > 3:
                out.pop(0)
        return all((a == k).all() for a in out)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(1, 9)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")
def test_memory_shared_with_a_forked_child_is_not_handed_out_again():
    a = fresh_zeros(BIG, np.float64)
    idle = fresh_zeros(BIG, np.float64)
    del idle  # an idle mapping (and its expiry timer) in the parent
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_writes_later, args=(a,))
    child.start()
    del a  # the child still writes into its copy of this mapping
    gc.collect()
    b = fresh_zeros(BIG, np.float64)
    c = fresh_zeros(BIG, np.float64)
    child.join(60)
    assert child.exitcode == 0
    assert not b.any() and not c.any()


def _child_writes_later(a):
    fresh = fresh_zeros(BIG, np.float64)  # the pool works in the child
    assert not fresh.any()
    time.sleep(0.5)
    a[...] = 5
    os._exit(0)


def test_a_process_exits_while_its_arrays_go_back_to_the_pool():
    # arrays freed at exit (module globals) must not start the idle timer: its thread would
    # never run and the process would wait for it forever
    code = ("import numpy as np\nfrom speckle.memory import fresh_zeros\n"
            "kept = [fresh_zeros((512, 1024), np.float64) for _ in range(3)]\ndel kept[0]\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=60)
    assert done.returncode == 0, done.stderr


def test_idle_memory_goes_back_before_new_memory_is_mapped():
    # a user's memory limit counts idle and live memory alike: the pool never adds to the peak
    memory.release_pool()
    a = fresh_zeros(BIG, np.float64)
    del a
    assert memory.pooled_bytes() >= 8 * BIG[0] * BIG[1]
    other = fresh_zeros((BIG[0], BIG[1] // 2), np.float64)  # another size: new memory
    assert memory.pooled_bytes() == 0
    assert not other.any()
