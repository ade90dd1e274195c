"""TIFF reader: multi-page files (classic, BigTIFF, compressed) and numbered series."""

import numpy as np
import pytest
import tifffile

from speckle.io.open import open_dataset
from speckle.io.read_tiff import TiffDataset, open_tiff_series
from speckle.io.sniff import expand_series

FRAMES = np.random.default_rng(1).poisson(3.0, (9, 12, 14)).astype(np.uint16)


def write_series(folder, frames=FRAMES, name="img_{}.tif"):
    folder.mkdir(exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        tifffile.imwrite(folder / name.format(i), frame)
    return folder


@pytest.mark.parametrize("options", [{}, {"bigtiff": True}, {"compression": "zlib"}],
                         ids=["classic", "bigtiff", "zlib"])
def test_multipage_tiff_lazy_chunks_equal_full_read(tmp_path, options):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, FRAMES, **options)
    with open_dataset(path) as ds:
        assert isinstance(ds, TiffDataset)
        assert (ds.format, ds.shape, ds.dtype) == ("tiff", FRAMES.shape, np.uint16)
        full = ds.read_frames()
        np.testing.assert_array_equal(full, FRAMES)
        np.testing.assert_array_equal(np.concatenate([c for _, c in ds.iter_chunks(4)]), full)
        np.testing.assert_array_equal(ds.frame(5), FRAMES[5])


def test_single_image_tiff_is_one_frame(tmp_path):
    path = tmp_path / "image.tiff"
    tifffile.imwrite(path, FRAMES[0].astype(np.float32))
    with open_dataset(path) as ds:
        assert ds.shape == (1, 12, 14) and ds.dtype == np.float32
        np.testing.assert_array_equal(ds.frame(0), FRAMES[0])


def test_big_endian_tiff_comes_back_native(tmp_path):
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, FRAMES, byteorder=">")
    with open_dataset(path) as ds:
        assert ds.dtype.isnative
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)


def test_directory_series_sorted_by_number_not_by_name(tmp_path):
    folder = write_series(tmp_path / "scan")  # img_1 ... img_9: text order would put 1 first
    (tmp_path / "scan" / "notes.txt").write_text("not a frame")
    (tmp_path / "scan" / "._img_1.tif").write_bytes(b"\x00\x05\x16\x07")  # macOS litter
    with open_dataset(folder) as ds:
        assert (ds.format, ds.shape) == ("tiff-series", FRAMES.shape)
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)
        np.testing.assert_array_equal(np.concatenate([c for _, c in ds.iter_chunks(2)]), FRAMES)
        assert ds.metadata.extra["files"] == 9


def test_natural_sort_of_unpadded_numbers(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for i in (10, 2, 1, 33, 3):
        (folder / f"f{i}.TIF").write_bytes(b"")
    assert [p.name for p in expand_series(folder)] == [
        "f1.TIF", "f2.TIF", "f3.TIF", "f10.TIF", "f33.TIF"]


def test_glob_and_numbered_patterns(tmp_path):
    folder = write_series(tmp_path / "scan", name="img_{:05d}.tif")
    tifffile.imwrite(folder / "img_dark.tif", FRAMES[0])  # matched by the glob, not by %05d
    with open_dataset(folder / "img_%05d.tif") as ds:
        assert ds.shape == FRAMES.shape
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)
    with open_dataset(str(folder / "img_0000?.tif")) as ds:
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)
    with open_dataset(folder / "img_*.tif") as ds:
        assert ds.n_frames == 10


def test_series_of_multipage_files_concatenates_pages(tmp_path):
    folder = tmp_path / "chunks"
    folder.mkdir()
    tifffile.imwrite(folder / "part_2.tif", FRAMES[4:], photometric="minisblack")
    tifffile.imwrite(folder / "part_1.tif", FRAMES[:4], photometric="minisblack")
    with open_tiff_series(folder) as ds:
        assert ds.shape == FRAMES.shape
        np.testing.assert_array_equal(ds.read_frames(2, 7), FRAMES[2:7])
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)
        np.testing.assert_array_equal(ds.frame(0), FRAMES[0])  # going back re-opens part_1
