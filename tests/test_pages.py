"""Memory mapped without holding the interpreter lock (speckle.pages)."""

import threading
import time

import numpy as np
import pytest

from speckle.pages import AVAILABLE, Pages

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="no memory mappings on this platform")


def test_anonymous_pages_are_zeros_and_writable_and_go_with_their_arrays():
    a = np.asarray(Pages(3 * 4096)).view(np.float64)
    assert a.shape == (1536,) and not a.any() and a.flags.writeable
    a[:] = 2.5
    assert a.sum() == 2.5 * 1536
    del a  # unmapped with the last array (no error, no leak to observe but the next mapping)
    assert not np.asarray(Pages(4096, populate=False)).any()


def test_a_file_is_mapped_read_only_from_an_offset(tmp_path):
    data = np.arange(20000, dtype=np.uint32)
    path = tmp_path / "f.bin"
    data.tofile(path)
    with open(path, "rb") as f:
        pages = np.asarray(Pages(8192 * 2, fd=f.fileno(), offset=8192))
    view = pages.view(np.uint32)
    np.testing.assert_array_equal(view, data[2048:2048 + 4096])
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0] = 1


def test_a_refused_mapping_raises_oserror():
    with pytest.raises(OSError):
        Pages(4096, fd=999999)  # no such file descriptor


def test_mapping_lets_other_threads_run():
    """Python's mmap holds the interpreter lock while it maps and clears every page; here the
    other threads go on meanwhile."""
    done = threading.Event()
    longest = 0.0

    def mapper():
        for _ in range(4):
            Pages(256 * 2**20)  # 256 MB, every page mapped and cleared in the call
        done.set()

    thread = threading.Thread(target=mapper)
    last = time.perf_counter()
    thread.start()
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    thread.join()
    assert longest < 0.05  # one mapping takes 0.1 s here; the switch interval is 5 ms
