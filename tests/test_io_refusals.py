"""Every refusal of the readers: the right error type, one line, words a user can act on."""

import os
import struct
import zipfile

import h5py
import hdf5plugin
import numpy as np
import pytest
import tifffile
from astropy.io import fits

from speckle.errors import InvalidInputError, UnsafeFileError, UnsupportedFormatError
from speckle.io.open import open_dataset
from speckle.errors import DatasetNotFoundError

FRAMES = np.arange(4 * 8 * 6, dtype=np.uint16).reshape(4, 8, 6)


def refused(error, path, *words, **open_kw):
    """Open ``path``, expect ``error``; check the message is one line holding ``words``."""
    with pytest.raises(error) as info:
        open_dataset(path, **open_kw)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep if keep >= 0 else len(data) + keep])
    return path


# --- any file ---------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    message = refused(DatasetNotFoundError, tmp_path / "nope.h5", "no such file", "check the path")
    assert str(tmp_path / "nope.h5") in message
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_text_file_named_h5(tmp_path):
    path = tmp_path / "scan.h5"
    path.write_text("# motor positions\nx y\n1 2\n")
    refused(UnsupportedFormatError, path, str(path), 'looks like text starting with "# motor',
            "speckle reads HDF5/NeXus, TIFF", "FITS", ".npy")


def test_empty_and_gzipped_files(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    refused(UnsupportedFormatError, tmp_path / "empty.h5", "empty")
    (tmp_path / "data.h5.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(40))
    refused(UnsupportedFormatError, tmp_path / "data.h5.gz", "gzip", "gunzip")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipe_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    refused(InvalidInputError, tmp_path / "pipe", "not a regular file")


def test_bad_max_bytes(tmp_path):
    np.save(tmp_path / "a.npy", FRAMES)
    refused(InvalidInputError, tmp_path / "a.npy", "max_bytes must be positive", max_bytes=0)


# --- HDF5 -------------------------------------------------------------------------------------

def test_hdf5_external_link_is_refused_without_opening_the_target(tmp_path):
    path = tmp_path / "master.h5"
    with h5py.File(path, "w") as f:
        f["/entry/data/data"] = h5py.ExternalLink("/etc/never_opened.h5", "/x")
    refused(UnsafeFileError, path, "'/entry/data/data' is an external link to "
            "/etc/never_opened.h5:/x", "open that file directly")


def test_hdf5_external_link_in_a_parent_group_or_named(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["/data/data"] = FRAMES
    path = tmp_path / "master.h5"
    with h5py.File(path, "w") as f:
        f["entry"] = h5py.ExternalLink(str(other), "/")
        f["frames"] = h5py.ExternalLink(str(other), "/data/data")
    refused(UnsafeFileError, path, "'/entry' is an external link")
    refused(UnsafeFileError, path, "'/frames' is an external link", dataset="frames")


def test_hdf5_virtual_dataset_reading_another_file(tmp_path):
    other = tmp_path / "source.h5"
    with h5py.File(other, "w") as f:
        f["x"] = FRAMES
    path = tmp_path / "vds.h5"
    with h5py.File(path, "w") as f:
        layout = h5py.VirtualLayout(FRAMES.shape, FRAMES.dtype)
        layout[:] = h5py.VirtualSource(str(other), "x", shape=FRAMES.shape)
        f.create_virtual_dataset("/entry/data/data", layout)
    refused(UnsafeFileError, path, "virtual dataset reading from another file", "source.h5",
            "open the source files directly")


def test_hdf5_external_raw_storage(tmp_path):
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", FRAMES.shape, FRAMES.dtype,
                         external=[("/etc/passwd", 0, FRAMES.nbytes)])
    refused(UnsafeFileError, path, "keeps its raw data in an external file", "/etc/passwd")


def test_hdf5_truncated(tmp_path):
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as f:
        f["/entry/data/data"] = np.zeros((20, 64, 64), np.uint16)
    truncate(path, -4000)
    refused(InvalidInputError, path, "the HDF5 file is damaged or truncated", "copy it again")


def test_hdf5_filter_not_installed(tmp_path):
    path = tmp_path / "zstd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=FRAMES, chunks=(1, 8, 6), **hdf5plugin.Zstd())
    raw = bytearray(path.read_bytes())
    at = raw.find(struct.pack("<H", hdf5plugin.ZSTD_ID) + b"p\x00")  # filter pipeline entry
    assert at > 0
    raw[at:at + 2] = struct.pack("<H", 32099)  # an unregistered filter id
    path.write_bytes(raw)
    refused(UnsupportedFormatError, path, "HDF5 filter 32099", "not installed",
            "install hdf5plugin")


@pytest.mark.parametrize("make, words", [
    (lambda: np.array([[b"ab", b"cd"], [b"ef", b"gh"]]), "text"),
    (lambda: np.array([["ab", "cd"], ["ef", "gh"]], dtype=h5py.string_dtype()), "text"),
    (lambda: np.zeros((2, 3, 3), [("a", "i4"), ("b", "f8")]), "table of records"),
    (lambda: np.zeros((2, 3, 3), np.complex64), "not real numbers"),
    (lambda: np.zeros((2, 3, 3), bool), "not real numbers"),
])
def test_hdf5_non_numeric_data(tmp_path, make, words):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["/entry/data/data"] = make()
    refused(InvalidInputError, path, "dataset '/entry/data/data'", words)


def test_hdf5_shapes(tmp_path):
    path = tmp_path / "shapes.h5"
    with h5py.File(path, "w") as f:
        f["four"] = np.zeros((2, 3, 4, 5), np.uint8)
        f["one"] = np.zeros(10, np.uint8)
        f.create_dataset("empty", (0, 4, 4), np.uint8)
        f.create_dataset("huge", (10**9, 10**5, 10**5), np.uint8, chunks=(1, 64, 64))
        f["big"] = FRAMES
    refused(InvalidInputError, path, "4 dimensions", "select or reshape", dataset="four")
    refused(InvalidInputError, path, "not images", dataset="one")
    refused(InvalidInputError, path, "empty", dataset="empty")
    refused(UnsafeFileError, path, "beyond any detector data", dataset="huge")
    refused(UnsafeFileError, path, "above the limit of 100 B", "raise max_bytes",
            dataset="big", max_bytes=100)


def test_hdf5_soft_link_loop(tmp_path):
    path = tmp_path / "loop.h5"
    with h5py.File(path, "w") as f:
        f["a"] = h5py.SoftLink("/b")
        f["b"] = h5py.SoftLink("/a")
    refused(InvalidInputError, path, "too many soft links", dataset="a")


# --- TIFF -------------------------------------------------------------------------------------

def write_series(folder, n=5, shape=(8, 6)):
    folder.mkdir()
    for i in range(n):
        tifffile.imwrite(folder / f"img_{i:03d}.tif", np.zeros(shape, np.uint16))
    return folder


def test_tiff_series_mismatched_frame_names_the_file(tmp_path):
    folder = write_series(tmp_path / "scan")
    tifffile.imwrite(folder / "img_003.tif", np.zeros((8, 7), np.uint16))
    refused(InvalidInputError, folder, "img_003.tif page 0", "(8, 7) uint16",
            "does not match the first frame (8, 6) uint16", "remove or fix this file")
    tifffile.imwrite(folder / "img_003.tif", np.zeros((8, 6), np.float32))
    refused(InvalidInputError, folder / "img_*.tif", "img_003.tif", "float32")


def test_tiff_series_with_a_non_tiff_member(tmp_path):
    folder = write_series(tmp_path / "scan")
    (folder / "img_002.tif").write_text("oops")
    refused(UnsupportedFormatError, folder, "img_002.tif", "not a TIFF image",
            'looks like text starting with "oops"', "remove it from the series")


def test_tiff_series_not_found(tmp_path):
    (tmp_path / "empty").mkdir()
    refused(DatasetNotFoundError, tmp_path / "empty", "holds no TIFF files")
    refused(DatasetNotFoundError, tmp_path / "img_%04d.tif", "no file matches")


def test_tiff_truncated_page_list_and_pixel_data(tmp_path):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((6, 40, 50), np.uint16))
    refused(InvalidInputError, truncate(stack, -3000), "the TIFF file is damaged or truncated",
            "copy it again")
    image = tmp_path / "image.tif"
    tifffile.imwrite(image, np.zeros((40, 50), np.uint16))
    refused(InvalidInputError, truncate(image, -100), "damaged or truncated",
            "page 0 needs 4256 bytes")


def test_tiff_colour_and_dataset_argument(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((8, 6, 3), np.uint8), photometric="rgb")
    refused(InvalidInputError, path, "colour or multi-sample image", "photometric='minisblack'")
    tifffile.imwrite(path, FRAMES, photometric="minisblack")
    refused(InvalidInputError, path, "does not apply to TIFF", dataset="/entry/data/data")


# --- FITS -------------------------------------------------------------------------------------

def test_fits_truncated_data_and_header(tmp_path):
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((4, 40, 50), np.int16)).writeto(path)
    refused(InvalidInputError, truncate(path, -4000), "the FITS file is damaged or truncated",
            "needs 18880 bytes", "copy it again")
    refused(InvalidInputError, truncate(path, 1000), "the FITS file is damaged or truncated")


def test_fits_without_image(tmp_path):
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(),
                  fits.BinTableHDU.from_columns([fits.Column("t", "E", array=[1.0])])]
                 ).writeto(path)
    refused(InvalidInputError, path, "holds no image data", "1 BinTableHDU")


def test_fits_four_dimensions(tmp_path):
    path = tmp_path / "4d.fits"
    fits.PrimaryHDU(np.zeros((2, 3, 4, 5), np.float32)).writeto(path)
    refused(InvalidInputError, path, "HDU 0 has 4 dimensions")


# --- NumPy ------------------------------------------------------------------------------------

def test_npy_truncated(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, FRAMES)
    refused(InvalidInputError, truncate(path, -10), "damaged or truncated",
            "declares (4, 8, 6) uint16 = 384 bytes, only 374 follow")
    refused(InvalidInputError, truncate(path, 20), "unreadable .npy header")


class _Payload:
    """Unpickling this would create a file: proof that speckle never unpickles."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_npy_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([[_Payload(marker)] * 2] * 2, dtype=object), allow_pickle=True)
    refused(UnsafeFileError, path, "Python objects (pickled data)", "never loads")
    np.savez(tmp_path / "evil.npz", frames=np.array([[_Payload(marker)] * 2] * 2, dtype=object))
    refused(UnsafeFileError, tmp_path / "evil.npz", "pickled")
    assert not marker.exists()


@pytest.mark.parametrize("array, words", [
    (np.zeros((2, 3, 3), [("a", "i4"), ("b", "f8")]), "table of records"),
    (np.zeros((2, 3, 3), np.complex128), "not real numbers"),
    (np.array([["a", "b"], ["c", "d"]]), "not real numbers"),
])
def test_npy_non_numeric(tmp_path, array, words):
    np.save(tmp_path / "a.npy", array)
    refused(InvalidInputError, tmp_path / "a.npy", words)


def set_declared_size(path, size):
    """Patch the uncompressed size of the first member in the ZIP central directory."""
    raw = bytearray(path.read_bytes())
    at = raw.rfind(b"PK\x01\x02")
    raw[at + 24:at + 28] = struct.pack("<L", size)
    path.write_bytes(raw)


def test_zip_bomb_declared_size_and_ratio(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, frames=np.zeros((64, 64, 64), np.uint8))
    set_declared_size(path, 3 * 2**30)
    refused(UnsafeFileError, path, "compression ratio", "zip bomb")
    refused(UnsafeFileError, path, "declares 3.0 GiB uncompressed, above the limit of 1.0 GiB",
            "raise max_bytes", max_bytes=2**30)


def test_zip_member_smaller_than_its_npy_header_declares(tmp_path):
    header = np.lib.format.header_data_from_array_1_0(np.zeros((100, 64, 64), np.uint16))
    path = tmp_path / "short.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("frames.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, header)
        member.write(bytes(1000))
    refused(InvalidInputError, path, "damaged or truncated", "declares (100, 64, 64) uint16 = "
            "819200 bytes, only 1000 follow")


def test_zip_without_arrays_and_non_npy_member(tmp_path):
    path = tmp_path / "tiffs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.tif", b"II*\x00")
        archive.writestr("b.txt", b"hello")
    refused(UnsupportedFormatError, path, "holds no NumPy .npy array", "a.tif, b.txt")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("c.npy", b"just text")
    refused(UnsupportedFormatError, path, "member c.npy: not a NumPy array",
            'looks like text starting with "just text"')


def test_zip_encrypted_and_truncated(tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, frames=FRAMES)
    raw = bytearray(path.read_bytes())
    at = raw.rfind(b"PK\x01\x02")
    raw[at + 8] |= 0x1  # central directory: general purpose flag, bit 0 = encrypted
    path.write_bytes(raw)
    refused(UnsafeFileError, path, "encrypted", "password")
    np.savez_compressed(path, frames=FRAMES)
    refused(InvalidInputError, truncate(path, -30), "the ZIP archive is damaged or truncated")


def test_zip_corrupt_compressed_data_detected_on_read(tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, frames=np.random.default_rng(0).integers(0, 9, (8, 64, 64)))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(raw)
    with pytest.raises(InvalidInputError, match="the ZIP archive is damaged or truncated"):
        with open_dataset(path) as ds:
            ds.read_frames()


def test_zip_fortran_stack_cannot_stream(tmp_path):
    np.savez_compressed(tmp_path / "f.npz", frames=np.asfortranarray(FRAMES))
    refused(InvalidInputError, tmp_path / "f.npz", "Fortran order", "np.ascontiguousarray")


def test_npy_dataset_argument(tmp_path):
    np.save(tmp_path / "a.npy", FRAMES)
    refused(InvalidInputError, tmp_path / "a.npy", "does not apply to a .npy file",
            dataset="frames")
