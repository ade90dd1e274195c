"""FITS reader: the ALS demo files, cubes, scaling, HDU choice, header metadata, orientation."""

import numpy as np
import pytest
from astropy.io import fits

from speckle.errors import InvalidInputError
from speckle.io.open import open_dataset
from speckle.io.read_fits import FitsDataset

CUBE = np.random.default_rng(2).integers(0, 60000, (6, 10, 8)).astype(np.uint16)


@pytest.mark.parametrize("name, mean", [("fth.fits", 5268.400392087044),
                                        ("cdi.fits", 8379.976473138086)])
def test_als_demo_files(shared_data, name, mean):
    path = shared_data / "als-demo" / name
    with open_dataset(path) as ds:
        assert isinstance(ds, FitsDataset)
        assert (ds.format, ds.shape, ds.dtype, ds.hdu_index) == ("fits", (1, 512, 512),
                                                                 np.float64, 0)
        assert ds.dtype.isnative  # stored big-endian (BITPIX -64), handed out native
        frame = ds.frame(0)
    assert frame.mean() == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("name", ["fth.fits", "cdi.fits"])
def test_orientation_row_zero_is_first_stored_row(shared_data, name):
    """The array is used as stored: no flip (the demo headers carry no orientation cards)."""
    path = shared_data / "als-demo" / name
    header = fits.getheader(path)
    assert list(header) == ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2"]
    raw = np.frombuffer(path.read_bytes(), ">f8", count=512 * 512, offset=2880)
    with open_dataset(path) as ds:
        frame = ds.frame(0)
    np.testing.assert_array_equal(frame, raw.reshape(512, 512))  # row 0 = first stored row
    np.testing.assert_array_equal(frame, fits.getdata(path))     # exactly what astropy gives


def test_cube_with_bzero_is_uint16_and_lazy_chunks_equal_full(tmp_path):
    path = tmp_path / "cube.fits"
    hdu = fits.PrimaryHDU(CUBE)
    hdu.header["EXPTIME"] = (0.25, "seconds")
    hdu.header["OBJECT"] = "speckle test"
    hdu.writeto(path)
    assert fits.getheader(path)["BZERO"] == 32768
    with open_dataset(path) as ds:
        assert (ds.shape, ds.dtype) == (CUBE.shape, np.uint16)
        full = ds.read_frames()
        np.testing.assert_array_equal(full, CUBE)
        np.testing.assert_array_equal(np.concatenate([c for _, c in ds.iter_chunks(4)]), full)
        assert ds.metadata.count_time == 0.25
        assert ds.metadata.extra["OBJECT"] == "speckle test"


def test_first_image_extension_and_choice_by_name_or_index(tmp_path):
    path = tmp_path / "mef.fits"
    fits.HDUList([
        fits.PrimaryHDU(),
        fits.BinTableHDU.from_columns([fits.Column("t", "E", array=np.arange(3.0))]),
        fits.ImageHDU(CUBE[:2].astype(np.float32), name="SCI"),
        fits.ImageHDU(CUBE[0].astype(np.int32), name="DARK"),
    ]).writeto(path)
    with open_dataset(path) as ds:
        assert ds.hdu_index == 2 and ds.shape == (2, 10, 8)
    for key in ("dark", 3, "3"):
        with open_dataset(path, dataset=key) as ds:
            assert ds.hdu_index == 3 and ds.dtype == np.int32
            np.testing.assert_array_equal(ds.frame(0), CUBE[0])
    with pytest.raises(InvalidInputError, match="HDU 1 holds no image data; HDUs: 0 PRIMARY"):
        open_dataset(path, dataset=1)
    with pytest.raises(InvalidInputError, match="no HDU 'FLAT'"):
        open_dataset(path, dataset="FLAT")


def test_tile_compressed_image(tmp_path):
    path = tmp_path / "comp.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(CUBE.astype(np.int16) // 2)]).writeto(path)
    with open_dataset(path) as ds:
        assert ds.shape == CUBE.shape
        np.testing.assert_array_equal(ds.read_frames(2, 5), CUBE[2:5].astype(np.int16) // 2)


def test_exposure_keyword_and_overrides(tmp_path):
    path = tmp_path / "img.fits"
    hdu = fits.PrimaryHDU(CUBE[0].astype(np.float32))
    hdu.header["EXPOSURE"] = 2.0
    hdu.writeto(path)
    with open_dataset(path, metadata={"count_time": 1.5, "frame_time": 2.5}) as ds:
        assert (ds.metadata.count_time, ds.metadata.frame_time) == (1.5, 2.5)
