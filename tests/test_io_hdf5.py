"""HDF5/NeXus reader: dataset choice, detector compression, lazy reads, metadata and units."""

import h5py
import hdf5plugin
import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.io.open import open_dataset
from speckle.io.read_hdf5 import HDF5Dataset, open_hdf5

FRAMES = np.random.default_rng(0).poisson(2.0, (12, 16, 20)).astype(np.uint16)


def write_nexus(path, data=FRAMES, **dataset_kw):
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=data, **dataset_kw)
    return path


def assert_chunks_equal_full(ds, chunk):
    full = ds.read_frames()
    pieces = [frames for _, frames in ds.iter_chunks(chunk)]
    np.testing.assert_array_equal(np.concatenate(pieces), full)
    return full


def test_default_dataset_lazy_chunks_equal_full_read(tmp_path):
    path = write_nexus(tmp_path / "scan.h5", chunks=(1, 16, 20), compression="gzip")
    with open_dataset(path) as ds:
        assert isinstance(ds, HDF5Dataset)
        assert (ds.format, ds.shape, ds.dtype, ds.dataset_path) == (
            "hdf5", (12, 16, 20), np.uint16, "/entry/data/data")
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 5), FRAMES)
        np.testing.assert_array_equal(ds.frame(-1), FRAMES[-1])
        np.testing.assert_array_equal(ds.read_frames(3, 7), FRAMES[3:7])


@pytest.mark.parametrize("filter_kw", [
    hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
    hdf5plugin.LZ4(),
    hdf5plugin.Zstd(),
    hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.BITSHUFFLE),
], ids=["bitshuffle-lz4", "lz4", "zstd", "blosc"])
def test_detector_compression_filters(tmp_path, filter_kw):
    path = write_nexus(tmp_path / "eiger.h5", chunks=(1, 16, 20), **filter_kw)
    with open_dataset(path) as ds:
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 4), FRAMES)


def test_2d_dataset_is_one_frame_and_leading_ones_are_dropped(tmp_path):
    path = tmp_path / "image.h5"
    with h5py.File(path, "w") as f:
        f["image"] = FRAMES[0].astype(np.float32)
        f["stack"] = FRAMES[None, None, :3]
    with open_dataset(path, dataset="image") as ds:
        assert ds.shape == (1, 16, 20) and ds.dtype == np.float32
        np.testing.assert_array_equal(ds.frame(0), FRAMES[0])
    with open_dataset(path, dataset="/stack") as ds:
        assert ds.shape == (3, 16, 20)
        np.testing.assert_array_equal(ds.read_frames(1, 3), FRAMES[1:3])


def test_big_endian_data_come_back_native(tmp_path):
    path = write_nexus(tmp_path / "be.h5", data=FRAMES.astype(">i4"))
    with open_dataset(path) as ds:
        assert ds.dtype == np.dtype("int32") and ds.dtype.isnative
        assert ds.read_frames(0, 2).dtype.isnative


def test_soft_link_and_user_block(tmp_path):
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=1024) as f:
        f["/raw/frames"] = FRAMES
        f["/entry/data/data"] = h5py.SoftLink("/raw/frames")
    with open_dataset(path) as ds:
        np.testing.assert_array_equal(ds.read_frames(), FRAMES)


def test_nexus_default_chain_is_followed(tmp_path):
    path = tmp_path / "nexus.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "scan_1"
        entry = f.create_group("scan_1")
        entry.attrs.update(NX_class="NXentry", default="plot")
        plot = entry.create_group("plot")
        plot.attrs.update(NX_class="NXdata", signal="counts")
        plot["counts"] = FRAMES
        plot["decoy"] = FRAMES[:2]
    with open_dataset(path) as ds:
        assert ds.dataset_path == "/scan_1/plot/counts"
        assert ds.shape == FRAMES.shape


def test_nexus_nxdata_group_found_by_class_when_no_default_attribute(tmp_path):
    path = tmp_path / "nexus.h5"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        plot = entry.create_group("measurement")
        plot.attrs.update(NX_class="NXdata", signal="frames")
        plot["frames"] = FRAMES
    with open_dataset(path) as ds:
        assert ds.dataset_path == "/entry/measurement/frames"


def test_named_nxdata_group_reads_its_signal(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("results/plot")
        g.attrs["signal"] = "img"
        g["img"] = FRAMES
    with open_hdf5(path, dataset="/results/plot") as ds:
        assert ds.dataset_path == "/results/plot/img"


def test_missing_default_lists_candidate_datasets(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["/scan/frames"] = FRAMES
        f["/scan/dark"] = FRAMES[0]
        f["/scan/temperature"] = np.arange(12.0)
        f["/scan/names"] = np.array([b"a", b"b"])
    with pytest.raises(InvalidInputError) as info:
        open_dataset(path)
    message = str(info.value)
    assert "/scan/frames (12, 16, 20) uint16" in message and "/scan/dark" in message
    assert "temperature" not in message and "names" not in message
    assert "dataset='/scan/frames'" in message and "\n" not in message


def test_missing_named_dataset_lists_candidates(tmp_path):
    path = write_nexus(tmp_path / "scan.h5")
    with pytest.raises(InvalidInputError, match=r"'/entry/data/frames' does not exist.*"
                                                r"/entry/data/data \(12, 16, 20\)"):
        open_dataset(path, dataset="/entry/data/frames")
    with pytest.raises(InvalidInputError, match="is a group, not a dataset"):
        open_dataset(path, dataset="/entry")


def write_detector_metadata(f, **fields):
    det = f.create_group("/entry/instrument/detector")
    det.attrs["NX_class"] = "NXdetector"
    for name, (value, units) in fields.items():
        group = det
        if name in ("energy", "incident_energy", "wavelength"):
            group = f.require_group("/entry/instrument/monochromator")
        group[name] = value
        if units is not None:
            group[name].attrs["units"] = units


def test_metadata_units_are_converted_to_si(tmp_path):
    path = write_nexus(tmp_path / "meta.h5")
    with h5py.File(path, "a") as f:
        write_detector_metadata(
            f, frame_time=(1.30068, "ms"), count_time=(np.array([500.0, 500.0]), "us"),
            distance=(2230.0, "mm"), x_pixel_size=(108.0, "um"), y_pixel_size=(0.11, "mm"),
            beam_center_x=(123.0, "pixel"), beam_center_y=(143.0, "pixel"),
            energy=(8.0, "keV"))
    with open_dataset(path) as ds:
        md = ds.metadata
    assert md.frame_time == pytest.approx(1.30068e-3)
    assert md.count_time == pytest.approx(5e-4)
    assert md.distance == pytest.approx(2.23)
    assert md.pixel_size == pytest.approx((1.1e-4, 1.08e-4))
    assert md.beam_center == (143.0, 123.0)
    assert md.energy == pytest.approx(8000.0)
    assert md.extra["nexus_detector"] == "/entry/instrument/detector"
    assert md.extra["hdf5_dataset"] == "/entry/data/data"


def test_metadata_wavelength_si_default_and_length_beam_centre(tmp_path):
    path = write_nexus(tmp_path / "meta.h5")
    with h5py.File(path, "a") as f:
        write_detector_metadata(
            f, frame_time=(0.002, None), distance=(b"5.0", None), x_pixel_size=(75e-6, "m"),
            y_pixel_size=(75e-6, "m"), beam_center_x=(1.5, "mm"), beam_center_y=(3.0, "mm"),
            wavelength=(1.546, "Angstrom"))
    with open_dataset(path) as ds:
        md = ds.metadata
    assert md.frame_time == 0.002 and md.distance == 5.0
    assert md.beam_center == pytest.approx((40.0, 20.0))
    assert md.wavelength == pytest.approx(1.546e-10)


def test_metadata_assumed_and_unknown_units_are_recorded(tmp_path):
    path = write_nexus(tmp_path / "meta.h5")
    with h5py.File(path, "a") as f:
        write_detector_metadata(f, frame_time=(3.0, "fortnights"), distance=(0.0, "m"),
                                energy=(7.35, None))
    with open_dataset(path) as ds:
        md = ds.metadata
    assert md.frame_time is None and md.distance is None
    assert md.energy == pytest.approx(7350.0)
    assert "taken as keV" in md.extra["assumed_units"]
    assert "fortnights" in md.extra["ignored_metadata"]


def test_metadata_through_external_link_is_not_followed(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["t"] = 0.5
    path = write_nexus(tmp_path / "meta.h5")
    with h5py.File(path, "a") as f:
        write_detector_metadata(f, count_time=(0.1, "s"))
        f["/entry/instrument/detector/frame_time"] = h5py.ExternalLink(str(other), "/t")
    with open_dataset(path) as ds:
        assert ds.metadata.frame_time is None and ds.metadata.count_time == 0.1


def test_overrides_win_over_file_metadata(tmp_path):
    path = write_nexus(tmp_path / "meta.h5")
    with h5py.File(path, "a") as f:
        write_detector_metadata(f, frame_time=(1.0, "ms"), distance=(2.0, "m"))
    with open_dataset(path, metadata={"frame_time": 2e-3, "distance": None,
                                      "energy": 700.0}) as ds:
        assert ds.metadata.frame_time == 2e-3
        assert ds.metadata.distance == 2.0
        assert ds.metadata.energy == 700.0


def test_virtual_dataset_inside_the_same_file_is_allowed(tmp_path):
    path = tmp_path / "vds.h5"
    with h5py.File(path, "w") as f:
        f["a"] = FRAMES[:6]
        f["b"] = FRAMES[6:]
        layout = h5py.VirtualLayout(FRAMES.shape, FRAMES.dtype)
        layout[:6] = h5py.VirtualSource(f["a"])
        layout[6:] = h5py.VirtualSource(f["b"])
        f.create_virtual_dataset("/entry/data/data", layout)
    with open_dataset(path) as ds:
        np.testing.assert_array_equal(assert_chunks_equal_full(ds, 5), FRAMES)


def test_close_is_idempotent(tmp_path):
    ds = open_dataset(write_nexus(tmp_path / "scan.h5"))
    ds.close()
    ds.close()
