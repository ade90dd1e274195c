"""open_dataset: detection by content (never by extension), dispatch, metadata overrides."""

import zipfile

import h5py
import numpy as np
import pytest
import tifffile
from astropy.io import fits

from speckle.errors import InvalidInputError
from speckle.io.dataset import Dataset
from speckle.io.open import open_dataset
from speckle.io.sniff import describe_content, is_series_pattern, sniff_format

FRAMES = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6)


def make_hdf5(path, **file_kw):
    with h5py.File(path, "w", **file_kw) as f:
        f["/entry/data/data"] = FRAMES


def make_tiff(path, **kw):
    tifffile.imwrite(path, FRAMES, photometric="minisblack", **kw)


def make_fits(path):
    fits.PrimaryHDU(FRAMES.astype(np.int16)).writeto(path)


def make_npy(path):
    with open(path, "wb") as fh:
        np.save(fh, FRAMES)


def make_zip(path):
    with open(path, "wb") as fh:
        np.savez_compressed(fh, frames=FRAMES)


# Every maker writes under a misleading name: detection must not look at it.
MAKERS = {
    "hdf5": (make_hdf5, "data.tif", "hdf5"),
    "hdf5-userblock-512": (lambda p: make_hdf5(p, userblock_size=512), "x.dat", "hdf5"),
    "hdf5-userblock-4096": (lambda p: make_hdf5(p, userblock_size=4096), "x", "hdf5"),
    "tiff": (make_tiff, "frames.h5", "tiff"),
    "bigtiff": (lambda p: make_tiff(p, bigtiff=True), "frames.fits", "tiff"),
    "tiff-big-endian": (lambda p: make_tiff(p, byteorder=">"), "frames.npy", "tiff"),
    "fits": (make_fits, "image.npz", "fits"),
    "npy": (make_npy, "frames.fits", "npy"),
    "zip": (make_zip, "frames.h5", "zip"),
}


@pytest.mark.parametrize("key", MAKERS)
def test_format_is_detected_by_content_not_extension(tmp_path, key):
    maker, name, expected = MAKERS[key]
    path = tmp_path / name
    maker(path)
    assert sniff_format(path) == expected
    with open_dataset(path) as ds:
        assert isinstance(ds, Dataset)
        assert ds.shape == FRAMES.shape
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)
        assert ds.source == str(path)


def test_hdf5_named_tif_opens_as_hdf5(tmp_path):
    path = tmp_path / "mislabelled.tif"
    make_hdf5(path)
    with open_dataset(path) as ds:
        assert ds.format == "hdf5"


def test_directories_and_patterns_are_tiff_series(tmp_path):
    assert sniff_format(tmp_path) == "tiff-series"
    assert sniff_format(tmp_path / "img_*.tif") == "tiff-series"
    assert sniff_format(tmp_path / "img_%05d.tif") == "tiff-series"
    assert is_series_pattern("a/b_[0-9].tif") and not is_series_pattern("a/b_1.tif")


def test_zip_of_one_npy_and_npz_are_the_same_container(tmp_path):
    np.save(tmp_path / "frames.npy", FRAMES)
    with zipfile.ZipFile(tmp_path / "frames.npy.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(tmp_path / "frames.npy", "frames.npy")
    with open_dataset(tmp_path / "frames.npy.zip") as ds:
        assert ds.format == "npz"
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)


@pytest.mark.parametrize("head, words", [
    (b"", "empty"),
    (b"frame,counts\n1,2\n", 'looks like text starting with "frame,counts 1,2"'),
    ("température\n".encode() * 9, "looks like text"),
    (b"\x1f\x8b\x08\x00rest", "gzip-compressed data: decompress it first (gunzip)"),
    (b"<!DOCTYPE html><html>", "web page"),
    (b"\x89PNG\r\n\x1a\n....", "PNG picture"),
    (b"###CBF: VERSION", "CBF image"),
    (b"\x00\x01\x02\x03\xff\xfe", "unrecognised binary data (first bytes 00 01 02 03 ff fe)"),
])
def test_describe_content(head, words):
    assert words in describe_content(head)


def test_metadata_overrides_are_validated_and_close_the_file(tmp_path):
    path = tmp_path / "a.h5"
    make_hdf5(path)
    with pytest.raises(InvalidInputError, match="unknown metadata field 'frametime'"):
        open_dataset(path, metadata={"frametime": 1e-3})
    with pytest.raises(InvalidInputError, match="frame time must be positive"):
        open_dataset(path, metadata={"frame_time": -1})
    with pytest.raises(InvalidInputError, match="must be a dict"):
        open_dataset(path, metadata=[("frame_time", 1e-3)])
    with h5py.File(path, "a"):  # the refused opens left no handle behind
        pass


def test_home_directory_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_npy(tmp_path / "a.npy")
    with open_dataset("~/a.npy") as ds:
        assert ds.shape == FRAMES.shape
