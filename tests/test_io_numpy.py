"""NumPy reader: .npy (memory-mapped), .npz and zipped .npy (stored or streamed), real XPCS data."""

import zipfile

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.io.open import open_dataset
from speckle.io.read_numpy import NpyDataset, ZipStreamDataset

FRAMES = np.random.default_rng(3).poisson(1.0, (11, 16, 12)).astype(np.uint16)


def assert_chunks_equal_full(ds, chunk):
    full = ds.read_frames()
    np.testing.assert_array_equal(np.concatenate([c for _, c in ds.iter_chunks(chunk)]), full)
    return full


def zip_one(path, array, member="frames.npy", compression=zipfile.ZIP_DEFLATED):
    npy = path.with_suffix(".tmp.npy")
    np.save(npy, array)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.write(npy, member)
    npy.unlink()
    return path


def test_real_xpcs_zip(shared_data):
    with open_dataset(shared_data / "xpcs" / "img_stack5301_5401.npy.zip") as ds:
        assert isinstance(ds, ZipStreamDataset)
        assert (ds.format, ds.shape, ds.dtype) == ("npz", (100, 256, 256), np.uint16)
        assert ds.metadata.extra["member"] == "img_stack5301_5401.npy"
        full = assert_chunks_equal_full(ds, 16)
        assert full.mean() == pytest.approx(0.67, abs=0.005)
        np.testing.assert_array_equal(ds.frame(3), full[3])  # backwards: the stream restarts
        np.testing.assert_array_equal(ds.read_frames(90, 95), full[90:95])


def test_npy_is_memory_mapped_and_lazy(tmp_path):
    path = tmp_path / "frames.bin"  # the extension does not matter
    np.save(tmp_path / "frames.npy", FRAMES)
    (tmp_path / "frames.npy").rename(path)
    with open_dataset(path) as ds:
        assert isinstance(ds, NpyDataset) and isinstance(ds._array, np.memmap)
        assert (ds.format, ds.shape, ds.dtype) == ("npy", FRAMES.shape, np.uint16)
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 4), FRAMES)
        chunk = ds.read_frames(2, 4)
        assert not isinstance(chunk, np.memmap) and chunk.base is None  # detached from the file


@pytest.mark.parametrize("array", [
    FRAMES[0].astype(np.float32),
    np.asfortranarray(FRAMES),
    FRAMES.astype(">f8"),
    FRAMES[None, None],
], ids=["2d", "fortran", "big-endian", "leading-ones"])
def test_npy_layouts(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    with open_dataset(tmp_path / "a.npy") as ds:
        assert ds.dtype.isnative
        expected = array.reshape((-1, *array.shape[-2:]))
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 3), expected)


def test_npz_compressed_streams_and_stored_is_memory_mapped(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", frames=FRAMES)
    np.savez(tmp_path / "s.npz", frames=FRAMES)
    with open_dataset(tmp_path / "c.npz") as ds:
        assert isinstance(ds, ZipStreamDataset) and ds.format == "npz"
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 5), FRAMES)
    with open_dataset(tmp_path / "s.npz") as ds:
        assert isinstance(ds, NpyDataset) and ds.format == "npz"
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 5), FRAMES)


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA, zipfile.ZIP_STORED])
def test_zip_of_one_npy_any_compression(tmp_path, compression):
    path = zip_one(tmp_path / "stack.zip", FRAMES, compression=compression)
    with open_dataset(path) as ds:
        assert ds.format == "npz"
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 4), FRAMES)


def test_several_arrays_need_a_name(tmp_path):
    path = tmp_path / "many.npz"
    np.savez(path, dark=FRAMES[0], frames=FRAMES)
    with pytest.raises(InvalidInputError, match=r"holds 2 arrays \(dark.npy, frames.npy\): "
                                                r"choose one with dataset='dark'"):
        open_dataset(path)
    with open_dataset(path, dataset="frames") as ds:
        assert ds.shape == FRAMES.shape
    with open_dataset(path, dataset="dark.npy") as ds:
        assert ds.shape == (1, 16, 12)
    with pytest.raises(InvalidInputError, match="no member 'flat'.*arrays: dark.npy, frames.npy"):
        open_dataset(path, dataset="flat")


def test_compressed_fortran_2d_array_reads_correctly(tmp_path):
    image = np.asfortranarray(FRAMES[0].astype(np.int32))
    np.savez_compressed(tmp_path / "f.npz", image=image)
    with open_dataset(tmp_path / "f.npz") as ds:
        np.testing.assert_array_equal(ds.frame(0), image)


def test_overrides_apply_to_npz(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", frames=FRAMES)
    with open_dataset(tmp_path / "c.npz", metadata={"frame_time": 1.30068e-3,
                                                    "pixel_size": 108e-6,
                                                    "beam_center": (143, 123)}) as ds:
        assert ds.metadata.frame_time == 1.30068e-3
        assert ds.metadata.pixel_size == (108e-6, 108e-6)
        assert ds.metadata.beam_center == (143.0, 123.0)
        assert ds.metadata.extra["member"] == "frames.npy"


STACK = np.random.default_rng(3).poisson(2.0, (90, 12, 14)).astype(np.uint16)


@pytest.mark.parametrize("stored", ["npy", "npz-stored"])
def test_streams_map_npy_frames_where_they_lie(tmp_path, stored):
    if stored == "npy":
        path = tmp_path / "f.npy"
        np.save(path, STACK)
    else:
        path = tmp_path / "f.npz"
        np.savez(path, frames=STACK)
    with open_dataset(path) as ds:
        assert isinstance(ds, NpyDataset)
        for first, chunk in ds.iter_chunks(16, prefetch=True, reuse=True, ramp=True):
            np.testing.assert_array_equal(chunk, STACK[first:first + len(chunk)])
            assert not chunk.flags.writeable and not chunk.flags.owndata  # the file's pages
        frame = ds.frame(5)  # random access still copies: it may outlive the file
        assert frame.flags.owndata or frame.base.flags.owndata


@pytest.mark.parametrize("array", [np.asfortranarray(STACK), STACK.astype(">u2")],
                         ids=["fortran", "big-endian"])
def test_npy_not_stored_as_frames_in_native_order_is_read(tmp_path, array):
    path = tmp_path / "f.npy"
    np.save(path, array)
    with open_dataset(path) as ds:
        assert ds._map(0, 10) is None
        for first, chunk in ds.iter_chunks(16, prefetch=True, reuse=True):
            np.testing.assert_array_equal(chunk, STACK[first:first + len(chunk)])


def test_npy_cut_short_after_it_was_opened_is_refused_when_mapped(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, STACK)
    with open_dataset(path) as ds:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
        with pytest.raises(InvalidInputError, match="damaged or truncated") as err:
            for _ in ds.iter_chunks(40, prefetch=True, reuse=True):
                pass
        assert "\n" not in str(err.value)
