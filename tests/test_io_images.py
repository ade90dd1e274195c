"""Image input (one 2D float64 image from any reader) and imaging result files (atomic HDF5)."""

import json
import os

import h5py
import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.io import images
from speckle.io.dataset import ArrayDataset
from speckle.io.images import read_image, read_image_result, write_image_result

RNG = np.random.default_rng(7)


# -- read_image ------------------------------------------------------------------------------

def test_real_fth_fits_matches_astropy(shared_data):
    from astropy.io import fits

    path = shared_data / "als-demo" / "fth.fits"
    image, md = read_image(path, metadata={"energy": 778.0})
    with fits.open(path) as hdul:
        truth = np.asarray(hdul[0].data, dtype=np.float64)
    assert image.shape == (512, 512) and image.dtype == np.float64
    np.testing.assert_array_equal(image, truth)
    assert md.energy == 778.0


def test_multi_frame_npy_is_averaged_and_frame_selects(tmp_path):
    stack = RNG.poisson(5.0, (7, 9, 11)).astype(np.uint16)
    path = tmp_path / "stack.bin"  # the format comes from the content, not the name
    np.save(path.with_suffix(".npy"), stack)
    path = path.with_suffix(".npy")
    mean, _ = read_image(path)
    np.testing.assert_allclose(mean, stack.astype(float).sum(0) / 7, rtol=1e-14)
    third, _ = read_image(path, frame=3)
    np.testing.assert_array_equal(third, stack[3].astype(float))
    last, _ = read_image(path, frame=-1)
    np.testing.assert_array_equal(last, stack[6].astype(float))
    with pytest.raises(InvalidInputError, match="frame 7 does not exist.*7 frame"):
        read_image(path, frame=7)
    with pytest.raises(InvalidInputError, match="whole number"):
        read_image(path, frame=1.5)


def test_average_skips_non_finite_values():
    stack = np.ones((3, 4, 5))
    stack[0, 1, 1] = np.nan
    stack[1, 1, 1] = 4.0
    stack[:, 2, 2] = np.inf  # never finite: missing
    image, _ = read_image(stack)
    assert image[1, 1] == pytest.approx((4.0 + 1.0) / 2)
    assert np.isnan(image[2, 2])
    assert np.count_nonzero(np.isnan(image)) == 1


def test_dataset_source_is_left_open_and_unchanged():
    ds = ArrayDataset(np.arange(12.0).reshape(3, 4))
    image, md = read_image(ds, metadata={"distance": 2.0})
    np.testing.assert_array_equal(image, np.arange(12.0).reshape(3, 4))
    assert md.distance == 2.0 and ds.metadata.distance is None
    assert ds.read_frames().shape == (1, 3, 4)


@pytest.mark.parametrize("data, message", [
    (np.full((4, 4), np.nan), "no finite value"),
    (np.full((2, 3, 3), np.inf), "no finite value"),
    (np.ones((1, 1)), "single pixel"),
    (np.ones((0, 4)), "shape"),
    (np.ones((2, 2, 2, 2)), "shape"),
])
def test_unusable_images_are_refused(data, message):
    with pytest.raises(InvalidInputError, match=message):
        read_image(data)


def test_missing_file_and_bad_metadata_are_refused(tmp_path):
    with pytest.raises(InvalidInputError):
        read_image(tmp_path / "absent.fits")
    with pytest.raises(InvalidInputError, match="dict"):
        read_image(np.ones((3, 3)), metadata=[("energy", 1)])
    with pytest.raises(InvalidInputError, match="positive"):
        read_image(np.ones((3, 3)), metadata={"energy": -1})


# -- write_image_result / read_image_result --------------------------------------------------

def example_arrays():
    return {
        "image": RNG.normal(size=(6, 5)) + 1j * RNG.normal(size=(6, 5)),
        "support": RNG.random((6, 5)) > 0.5,
        "errors": np.array([0.5, 0.25, np.nan]),
        "counts": np.arange(4, dtype=np.int32),
        "weight": np.float32(2.5),
        "half.precision-16": np.ones(3, np.float16),
    }


def test_round_trip_arrays_and_attrs(tmp_path):
    arrays = example_arrays()
    attrs = {"kind": "cdi", "schedule": "99*HIO + 1*ER", "beta": 0.8, "trials": 3,
             "real": False, "params": {"sigma": 1.0, "rects": [[0, 2, 1, 3]], "none": None},
             "center": (255.5, 256.25), "nan_value": float("nan"), "grid": np.arange(3)}
    out = write_image_result(tmp_path / "r.h5", arrays, attrs)
    assert out == tmp_path / "r.h5"
    back, back_attrs = read_image_result(out)
    assert set(back) == set(arrays)
    for name, value in arrays.items():
        assert back[name].dtype == np.asarray(value).dtype, name
        assert back[name].shape == np.shape(value), name
        np.testing.assert_array_equal(back[name], value)
    assert np.iscomplexobj(back["image"]) and back["support"].dtype == bool
    assert back_attrs.pop("nan_value") != back_attrs.get("nan_value", 0.0)  # NaN survives
    assert back_attrs == {"kind": "cdi", "schedule": "99*HIO + 1*ER", "beta": 0.8, "trials": 3,
                          "real": False,
                          "params": {"sigma": 1.0, "rects": [[0, 2, 1, 3]], "none": None},
                          "center": [255.5, 256.25], "grid": [0, 1, 2]}
    assert type(back_attrs["real"]) is bool and type(back_attrs["trials"]) is int


def test_layout_is_readable_without_speckle(tmp_path):
    big = RNG.normal(size=(300, 300))  # large enough to be compressed
    write_image_result(tmp_path / "r.h5", {"field": big}, {"kind": "fth", "opts": {"a": 1}})
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["speckle"].attrs["kind"] == "fth"
        assert f.attrs["creator"].startswith("speckle ")
        assert json.loads(f["speckle"].attrs["opts"]) == {"a": 1}
        assert f["speckle/field"].compression == "gzip"
        np.testing.assert_array_equal(f["speckle/field"][()], big)


def hidden_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_failure_in_the_middle_leaves_the_older_file(tmp_path, monkeypatch):
    path = tmp_path / "r.h5"
    write_image_result(path, {"old": np.zeros(3)}, {"kind": "fth"})
    before = path.read_bytes()
    calls = []
    real_write = images._write_array

    def fail_on_second(group, name, data):
        calls.append(name)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(group, name, data)

    monkeypatch.setattr(images, "_write_array", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        write_image_result(path, {"a": np.ones(3), "b": np.ones(3)}, {"kind": "cdi"})
    assert len(calls) == 2  # the first dataset had been written when it failed
    assert path.read_bytes() == before
    assert hidden_files(tmp_path) == []
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        write_image_result(tmp_path / "new.h5", {"a": np.ones(3), "b": np.ones(3)},
                           {"kind": "cdi"})
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]


class Unconvertible:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("cannot copy from the device")


def test_unconvertible_array_leaves_no_file(tmp_path):
    path = tmp_path / "r.h5"
    write_image_result(path, {"old": np.zeros(3)}, {"kind": "fth"})
    before = path.read_bytes()
    with pytest.raises(InvalidInputError, match="'bad' cannot be converted"):
        write_image_result(path, {"good": np.ones(3), "bad": Unconvertible()}, {"kind": "fth"})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]


@pytest.mark.parametrize("arrays, attrs, message", [
    ({"a/b": np.ones(2)}, {"kind": "fth"}, "name 'a/b' is not allowed"),
    ({"": np.ones(2)}, {"kind": "fth"}, "not allowed"),
    ({".hidden": np.ones(2)}, {"kind": "fth"}, "not allowed"),
    ({3: np.ones(2)}, {"kind": "fth"}, "not allowed"),
    ({"a": np.array(["x", "y"])}, {"kind": "fth"}, "only bools and numbers"),
    ({"a": np.array([{}, 1], dtype=object)}, {"kind": "fth"}, "only bools and numbers"),
    ({"a": np.ones(2)}, {}, "kind"),
    ({"a": np.ones(2)}, {"kind": "xpcs"}, "kind"),
    ({"a": np.ones(2)}, {"kind": "fth", "_json": "x"}, "reserved"),
    ({"a": np.ones(2)}, {"kind": "fth", "a/b": 1}, "not allowed"),
    ({"a": np.ones(2)}, {"kind": "fth", "z": 1j}, "complex"),
    ({"a": np.ones(2)}, {"kind": "fth", "big": 2**70}, "64 bits"),
    ({"a": np.ones(2)}, {"kind": "fth", "huge": "x" * 70_000}, "larger than"),
    ({"a": np.ones(2)}, {"kind": "fth", "nul": "a\x00b"}, "NUL"),
    ([np.ones(2)], {"kind": "fth"}, "mapping"),
])
def test_bad_results_are_refused_before_writing(tmp_path, arrays, attrs, message):
    with pytest.raises(InvalidInputError, match=message):
        write_image_result(tmp_path / "r.h5", arrays, attrs)
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_image_result(tmp_path / "no" / "r.h5", {"a": np.ones(2)}, {"kind": "fth"})


def test_reading_something_else_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file"):
        read_image_result(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InvalidInputError, match="cannot be read as HDF5"):
        read_image_result(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["entry/data"] = np.ones(3)
    with pytest.raises(InvalidInputError, match="no /speckle group"):
        read_image_result(tmp_path / "other.h5")
    with h5py.File(tmp_path / "linked.h5", "w") as f:
        f["speckle/a"] = np.ones(3)
        f["speckle/b"] = h5py.ExternalLink("elsewhere.h5", "/x")
    with pytest.raises(InvalidInputError, match="is a link"):
        read_image_result(tmp_path / "linked.h5")


def test_image_result_kind_recognises_results_only(tmp_path):
    from speckle.io.images import image_result_kind

    result = write_image_result(tmp_path / "r.h5", {"object": np.ones((4, 4), complex)},
                                {"kind": "cdi"})
    assert image_result_kind(result) == "cdi"
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["speckle"] = np.zeros(3)  # a dataset, not the result group
    (tmp_path / "text.h5").write_text("not hdf5")
    for path in ("other.h5", "text.h5", "missing.h5"):
        assert image_result_kind(tmp_path / path) is None


# -- masks in every natural form -------------------------------------------------------------

def _mask():
    m = np.zeros((6, 7), bool)
    m[1, 2] = m[4, 0:3] = True
    return m


@pytest.mark.parametrize("form", ["bool.npy", "uint8.npy", "int32.npy", "float.npy", "nan.npy",
                                  "bool.h5", "uint16.tif", "float.fits", "stack.npy"])
def test_a_mask_is_read_in_every_natural_form(tmp_path, form):
    import tifffile
    from astropy.io import fits

    from speckle.io.images import read_mask

    m = _mask()
    name, ext = form.split(".")
    path = tmp_path / form
    values = {"bool": m, "uint8": m.astype(np.uint8), "int32": m * 5, "float": m * 0.5,
              "nan": np.where(m, np.nan, 0.0), "uint16": m.astype(np.uint16),
              "stack": np.stack([m & (np.arange(7) < 2), m & (np.arange(7) >= 2)])}[name]
    if ext == "npy":
        np.save(path, values)
    elif ext == "h5":
        with h5py.File(path, "w") as f:
            f["mask"] = values
    elif ext == "tif":
        tifffile.imwrite(path, values)
    else:
        fits.PrimaryHDU(values).writeto(path)
    got = read_mask(path, (6, 7))
    assert got.dtype == bool
    np.testing.assert_array_equal(got, m)  # a stack: unmeasured where any frame is


def test_a_mask_of_another_shape_or_type_is_refused(tmp_path):
    from speckle.io.images import read_mask

    np.save(tmp_path / "m.npy", _mask())
    with pytest.raises(InvalidInputError, match="6×7 but the pattern is 8×8"):
        read_mask(tmp_path / "m.npy", (8, 8))
    with pytest.raises(InvalidInputError, match="not <U1"):
        read_mask(np.array([["a"]]))
    np.testing.assert_array_equal(read_mask(_mask().astype(float)), _mask())


# -- the imaging result layout ------------------------------------------------------------------

def test_an_imaging_result_comes_back_as_the_same_result(tmp_path):
    from speckle.imaging import RefocusOptions, run_refocus
    from speckle.io.imaging_result import LAYOUT_VERSION, read_imaging_result, \
        write_imaging_result

    field = np.zeros((32, 32), complex)
    field[10:20, 12:22] = np.exp(1j * np.linspace(0, 1, 10))[None, :]
    result = run_refocus(field, RefocusOptions(energy=778, pixel_size=(20e-9, 25e-9),
                                               distances=(-1e-6, 1e-6, 9)))
    path = write_imaging_result(result, tmp_path / "r.h5")
    _, attrs = read_image_result(path)
    assert attrs["kind"] == "propagation" and attrs["layout_version"] == LAYOUT_VERSION
    assert attrs["verdict"] == result.verdict.to_dict()
    again = read_imaging_result(path)
    assert again.options == result.options and again.region == (0, 32, 0, 32)
    assert again.focus_distance == result.focus_distance
    np.testing.assert_array_equal(again.focused, result.focused)
    assert sorted(again.sharpness) == sorted(result.sharpness)


def test_a_result_without_a_layout_version_is_refused_clearly(tmp_path):
    from speckle.io.imaging_result import read_imaging_result

    write_image_result(tmp_path / "old.h5", {"object": np.ones((4, 4), complex)},
                       {"kind": "cdi"})
    with pytest.raises(InvalidInputError, match="layout version None.*read_image_result"):
        read_imaging_result(tmp_path / "old.h5")
