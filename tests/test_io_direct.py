"""Frames read straight from an HDF5 file's bytes, and chunks read ahead by a reader thread."""

import threading

import h5py
import hdf5plugin
import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.io.dataset import ArrayDataset
from speckle.io.direct_hdf5 import DirectFrames
from speckle.io.frame_rows import FrameRows
from speckle.io.read_hdf5 import open_hdf5
from speckle.xpcs.multitau import multitau_g2
from speckle.xpcs.partitions import rectangles
from speckle.xpcs.statistics import FrameStatistics

FRAMES = np.random.default_rng(5).poisson(3.0, (23, 12, 10)).astype(np.uint16)


def write(path, data=FRAMES, userblock=0, **kw):
    with h5py.File(path, "w", userblock_size=userblock) as f:
        f.create_dataset("/entry/data/data", data=data, **kw)
    return path


@pytest.mark.parametrize("layout", [
    {}, {"chunks": (1, 12, 10)}, {"chunks": (4, 12, 10)}, {"chunks": (23, 12, 10)},
    {"userblock": 512}, {"userblock": 1024, "chunks": (5, 12, 10)},
], ids=str)
def test_direct_reads_equal_hdf5_reads(tmp_path, layout):
    ds = open_hdf5(write(tmp_path / "f.h5", **layout))
    assert ds._direct is not None
    for start, stop in [(0, 23), (0, 1), (3, 9), (4, 8), (22, 23), (7, 21)]:
        np.testing.assert_array_equal(ds.read_frames(start, stop), FRAMES[start:stop])
    np.testing.assert_array_equal(ds.frame(-1), FRAMES[-1])
    ds.close()
    ds.close()


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_direct_reads_of_every_dtype(tmp_path, dtype):
    data = FRAMES.astype(dtype)
    with open_hdf5(write(tmp_path / "f.h5", data, chunks=(2, 12, 10))) as ds:
        assert ds._direct is not None and ds.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ds.read_frames(1, 20), data[1:20])


@pytest.mark.parametrize("layout", [
    {"compression": "gzip"}, {"chunks": (1, 6, 10)}, {"dtype": ">u2"},
    dict(hdf5plugin.Bitshuffle(cname="lz4"), chunks=(1, 12, 10)),
], ids=["gzip", "split frames", "big-endian", "bitshuffle-lz4"])
def test_other_layouts_are_read_through_hdf5(tmp_path, layout):
    ds = open_hdf5(write(tmp_path / "f.h5", **layout))
    assert ds._direct is None
    np.testing.assert_array_equal(ds.read_frames(2, 19), FRAMES[2:19])


def test_chunks_never_written_are_read_through_hdf5(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("/entry/data/data", (6, 4, 4), np.uint16, chunks=(1, 4, 4),
                             fillvalue=7)
        d[:3] = 1  # frames 3..5 never written
    with open_hdf5(path) as ds:
        assert ds._direct is None
        assert ds.read_frames(2, 4)[:, 0, 0].tolist() == [1, 7]


def test_a_truncated_file_is_refused_with_one_line(tmp_path):
    path = write(tmp_path / "f.h5", np.zeros((400, 64, 64), np.uint16))
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 5000)  # the end of the frames is gone
    with pytest.raises(InvalidInputError, match="damaged or truncated") as err:
        open_hdf5(path).read_frames(0, 400)
    assert "\n" not in str(err.value)


def test_chunks_of_a_stream_are_aligned_with_the_file(tmp_path):
    with open_hdf5(write(tmp_path / "f.h5", chunks=(4, 12, 10))) as ds:
        assert ds.default_chunk_frames(chunk_bytes=12 * 10 * 2 * 7) == 4
        assert ds.default_chunk_frames(chunk_bytes=1) == 4  # never less than one file chunk
        assert ds.default_chunk_frames() == 23


class Failing(ArrayDataset):
    """Frames whose fourth chunk cannot be read."""

    def _read(self, start, stop):
        if start >= 9:
            raise InvalidInputError("frame 9 is damaged")
        return super()._read(start, stop)


def reader_threads():
    return sum(t.name == "speckle-reader" for t in threading.enumerate())


def test_reading_ahead_gives_the_same_chunks_and_raises_in_order():
    plain = list(ArrayDataset(FRAMES).iter_chunks(3))
    ahead = list(ArrayDataset(FRAMES).iter_chunks(3, prefetch=True))
    assert [f for f, _ in ahead] == [f for f, _ in plain] == list(range(0, 23, 3))
    for (_, a), (_, b) in zip(plain, ahead):
        np.testing.assert_array_equal(a, b)
    got = []
    with pytest.raises(InvalidInputError, match="frame 9"):
        for first, _ in Failing(FRAMES).iter_chunks(3, prefetch=True):
            got.append(first)
    assert got == [0, 3, 6]
    assert reader_threads() == 0


def test_stopping_early_stops_the_reader_thread():
    chunks = ArrayDataset(FRAMES).iter_chunks(1, prefetch=True)
    next(chunks)
    assert reader_threads() == 1
    chunks.close()
    assert reader_threads() == 0


def test_correlation_of_a_file_read_directly_equals_the_array(tmp_path):
    frames = np.random.default_rng(2).poisson(2.0, (300, 16, 16)).astype(np.uint16)
    part = rectangles((16, 16), ["0:8,0:16", "8:16,0:16"])
    with open_hdf5(write(tmp_path / "f.h5", frames, chunks=(7, 16, 16))) as ds:
        assert ds._direct is not None
        from_file = multitau_g2(ds, part, chunk_frames=50, device="cpu")
    in_memory = multitau_g2(frames, part, device="cpu")
    np.testing.assert_allclose(from_file.g2, in_memory.g2, rtol=1e-12)


def test_read_frames_fills_the_buffer_given_where_the_reader_reads_in_place(tmp_path):
    buf = np.zeros((10, *FRAMES.shape[1:]), FRAMES.dtype)
    with open_hdf5(write(tmp_path / "f.h5", FRAMES, chunks=(4, 12, 10))) as ds:
        got = ds.read_frames(3, 9, out=buf)
        assert np.shares_memory(got, buf)
        np.testing.assert_array_equal(got, FRAMES[3:9])
    with open_hdf5(write(tmp_path / "g.h5", FRAMES, chunks=(4, 6, 10))) as ds:  # via HDF5
        got = ds.read_frames(3, 9, out=buf)
        assert not np.shares_memory(got, buf)
        np.testing.assert_array_equal(got, FRAMES[3:9])


@pytest.mark.parametrize("prefetch", [True, False])
def test_reused_buffers_hold_each_chunk_until_the_next_is_asked_for(tmp_path, prefetch):
    import time

    with open_hdf5(write(tmp_path / "f.h5", FRAMES, chunks=(2, 12, 10))) as ds:
        ds._direct.maps = False  # read, not mapped (as where the file system cannot map)
        assert ds.reads_in_place
        seen, buffers = [], set()
        for first, chunk in ds.iter_chunks(2, prefetch=prefetch, reuse=True):
            time.sleep(0.02)  # the reader thread runs ahead meanwhile
            np.testing.assert_array_equal(chunk, FRAMES[first:first + 2])
            seen.append(first)
            buffers.add(chunk.__array_interface__["data"][0])
    assert seen == list(range(0, 23, 2))
    assert len(buffers) == (3 if prefetch else 1)


MANY = np.random.default_rng(9).poisson(2.0, (300, 16, 16)).astype(np.uint16)


def gapped(ds) -> bool:
    """Whether HDF5 put something (its chunk index) between the frames' chunks."""
    d = ds._direct
    return bool(np.any(d.offsets[1:] != d.offsets[:-1] + d.sizes[:-1]))


@pytest.mark.parametrize("layout,between", [({}, False), ({"chunks": (5, 16, 16)}, False),
                                            ({"chunks": (1, 16, 16)}, True)], ids=str)
def test_streams_map_the_frames_where_they_lie_in_the_file(tmp_path, layout, between):
    with open_hdf5(write(tmp_path / "f.h5", MANY, **layout)) as ds:
        assert ds._direct.maps and not ds.reads_in_place and gapped(ds) == between
        kinds = set()
        for first, chunk in ds.iter_chunks(40, prefetch=True, reuse=True, rows=True):
            kinds.add(type(chunk))
            np.testing.assert_array_equal(np.asarray(chunk), MANY[first:first + len(chunk)])
            values = chunk.buffer if isinstance(chunk, FrameRows) else chunk
            assert not values.flags.writeable and not values.flags.owndata  # the file's pages
        assert kinds == ({FrameRows, np.ndarray} if between else {np.ndarray})
        buffers = set()  # without rows, frames with gaps between them are copied into buffers
        for first, chunk in ds.iter_chunks(40, prefetch=True, reuse=True):
            assert isinstance(chunk, np.ndarray)
            np.testing.assert_array_equal(chunk, MANY[first:first + len(chunk)])
            if chunk.flags.writeable:
                buffers.add(chunk.__array_interface__["data"][0])
        assert len(buffers) == (3 if between else 0)


def test_a_file_cut_short_after_it_was_opened_is_refused_when_mapped(tmp_path):
    path = write(tmp_path / "f.h5", MANY, chunks=(1, 16, 16))
    with open_hdf5(path) as ds:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)  # another program rewrites the file
        with pytest.raises(InvalidInputError, match="damaged or truncated") as err:
            for _ in ds.iter_chunks(100, prefetch=True, reuse=True, rows=True):
                pass
        assert "\n" not in str(err.value)


def test_a_ramped_stream_starts_short_in_whole_chunks_of_the_file(tmp_path):
    with open_hdf5(write(tmp_path / "f.h5", MANY, chunks=(4, 16, 16))) as ds:
        got = list(ds.iter_chunks(64, prefetch=True, reuse=True, ramp=True, rows=True))
        assert [first for first, _ in got] == [0, 8, 24, 56, 120, 184, 248]
        np.testing.assert_array_equal(np.concatenate([np.asarray(c) for _, c in got]), MANY)
    assert [f for f, _ in ArrayDataset(MANY).iter_chunks(16, ramp=True)][:5] == [0, 2, 6, 14, 30]


def test_correlation_and_statistics_of_frames_with_gaps_between_them(tmp_path):
    part = rectangles((16, 16), ["0:8,0:16", "8:16,0:16"])
    with open_hdf5(write(tmp_path / "f.h5", MANY, chunks=(1, 16, 16))) as ds:
        assert gapped(ds)
        stats = FrameStatistics(len(MANY), (16, 16), 65535.0, used=part.mask)
        from_file = multitau_g2(ds, part, device="cpu", consumers=(stats,))
    expected = FrameStatistics(len(MANY), (16, 16), 65535.0, used=part.mask, kernels="numpy")
    expected(0, MANY)
    in_memory = multitau_g2(MANY, part, device="cpu")
    np.testing.assert_allclose(from_file.g2, in_memory.g2, rtol=1e-12)
    np.testing.assert_array_equal(stats.sum_image, expected.sum_image)
    np.testing.assert_allclose(stats.intensity, expected.intensity, rtol=1e-15)


def test_frame_rows_hand_out_runs_copies_and_pixels():
    frames = np.arange(6 * 2 * 3, dtype=np.uint16).reshape(6, 2, 3)
    starts = np.array([0, 6, 15, 21, 27, 40])  # gaps after frames 1 and 4
    buffer = np.zeros(46, np.uint16)
    for t, a in enumerate(starts):
        buffer[a:a + 6] = frames[t].ravel()
    rows = FrameRows(buffer, starts, (2, 3))
    assert rows.shape == (6, 2, 3) and len(rows) == 6 and rows.dtype == np.uint16
    runs = list(rows.runs())
    assert [(first, len(run)) for first, run in runs] == [(0, 2), (2, 3), (5, 1)]
    assert all(np.shares_memory(run, buffer) for _, run in runs)
    np.testing.assert_array_equal(np.asarray(rows), frames)
    np.testing.assert_array_equal(np.asarray(rows[1:4]), frames[1:4])
    np.testing.assert_array_equal(rows.flat().take([5, 0]), frames.reshape(6, 6)[:, [5, 0]])
    with pytest.raises(ValueError, match="outside"):
        FrameRows(buffer, [41], (2, 3))
    with pytest.raises(TypeError):
        rows[::2]


def test_where_the_system_refuses_mappings_the_frames_are_read(tmp_path, monkeypatch):
    import speckle.io.direct_hdf5 as direct

    def refused(*args, **kwargs):
        raise OSError(19, "No such device")  # as a file system without mmap answers

    monkeypatch.setattr(direct, "map_file_range", refused)
    with open_hdf5(write(tmp_path / "f.h5", MANY, chunks=(1, 16, 16))) as ds:
        assert ds._direct.maps
        seen = 0
        for first, chunk in ds.iter_chunks(40, prefetch=True, reuse=True, rows=True):
            np.testing.assert_array_equal(chunk, MANY[first:first + len(chunk)])
            seen += len(chunk)
        assert seen == len(MANY)
        assert not ds._direct.maps and ds.reads_in_place  # read from then on


def test_frames_out_of_order_or_far_apart_in_the_file_are_read_not_mapped(tmp_path):
    reverse = tmp_path / "reverse.h5"
    with h5py.File(reverse, "w") as f:  # chunks written last frame first
        d = f.create_dataset("/entry/data/data", MANY.shape, MANY.dtype, chunks=(1, 16, 16))
        for i in reversed(range(len(MANY))):
            d[i] = MANY[i]
    with open_hdf5(reverse) as ds:
        assert ds._direct is not None and not ds._direct.maps and ds.reads_in_place
        for first, chunk in ds.iter_chunks(64, prefetch=True, reuse=True, rows=True):
            assert isinstance(chunk, np.ndarray)
            np.testing.assert_array_equal(chunk, MANY[first:first + len(chunk)])
    # frames 10 kB apart, 3 MB in all (another dataset between them: more than a mapping
    # may span)
    raw = tmp_path / "apart.bin"
    frame_bytes = MANY[0].nbytes
    offsets = np.arange(len(MANY), dtype=np.int64) * (frame_bytes + 10_000)
    with open(raw, "wb") as f:
        for frame, at in zip(MANY, offsets):
            f.seek(int(at))
            f.write(frame.tobytes())
    apart = DirectFrames(raw, "apart", MANY.shape, MANY.dtype, 1, offsets,
                         np.full(len(MANY), frame_bytes, np.int64))
    assert not apart.maps
    np.testing.assert_array_equal(apart.read(5, 200), MANY[5:200])
    apart.close()
