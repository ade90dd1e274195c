"""``speckle cdi`` end to end: result file, JSON, pictures; refusals with exit 2, nothing
written."""

import json

import numpy as np
import pytest
from cli_helpers import run

from speckle.cli.cdi import parse_support
from speckle.errors import InvalidInputError
from speckle.imaging.align import normalized_error
from speckle.imaging.simulate import simulated_object, simulated_pattern
from speckle.io.images import read_image_result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cdi")
    obj = simulated_object((64, 64), complex_valued=False)
    pattern = simulated_pattern(obj, photons=1e8, seed=1)
    pattern[31:34, 31:34] = 0  # a beamstop, marked by zeros
    np.save(folder / "pattern.npy", pattern)
    mask = np.zeros(pattern.shape, np.uint8)
    mask[31:34, 31:34] = 1
    np.save(folder / "mask.npy", mask)
    return folder, obj


def test_a_pattern_becomes_a_result_file_json_and_pictures(data, tmp_path, capsys):
    folder, obj = data
    out = tmp_path / "result.h5"
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", out, "--mask",
                         folder / "mask.npy", "--schedule", "40*HIO + 10*ER", "--rounds", 8,
                         "--trials", 2, "--beta", 0.9, "--positivity", "--seed", 3,
                         "--device", "cpu", "--png-dir", tmp_path / "png", "--json"], capsys)
    assert rc == 0, err
    summary = json.loads(text)
    arrays, attrs = read_image_result(out)
    assert attrs["kind"] == "cdi" and attrs["schedule"] == "40*HIO + 10*ER"
    assert attrs["rounds"] == 8 and attrs["trials"] == 2 and attrs["positivity"] is True
    assert arrays["object"].shape == (64, 64) and np.iscomplexobj(arrays["object"])
    assert arrays["support"].dtype == bool and arrays["mask"].sum() == 9
    assert arrays["errors"].shape == (400,) and arrays["trial_errors"].shape == (2, 400)
    assert arrays["prtf"].shape == arrays["prtf_q"].shape
    assert normalized_error(obj, arrays["object"]) < 0.1
    assert summary["iterations"] == 400 and summary["masked_pixels"] == 9
    assert summary["final_error"] == pytest.approx(attrs["final_error"])
    assert summary["support_pixels"] == int(arrays["support"].sum())
    assert summary["trials_agree"] is True and summary["trial_spread"] < 0.2
    assert attrs["trial_spread"] == pytest.approx(summary["trial_spread"])
    names = {p.rsplit("/", 1)[-1] for p in summary["pictures"]}
    assert names == {"object.png", "errors.png", "prtf.png", "pattern.png"}
    for p in summary["pictures"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_rectangles_and_mask_zeros_without_json(data, tmp_path, capsys):
    folder, _ = data
    out = tmp_path / "r.h5"
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", out, "--mask-zeros",
                         "--support", "20:44,20:44", "--support", "10:12,10:12",
                         "--schedule", "20*ER", "--no-shrinkwrap", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert "final Fourier error" in text and str(out) in text
    arrays, attrs = read_image_result(out)
    assert arrays["initial_support"].sum() == 24 * 24 + 4
    np.testing.assert_array_equal(arrays["mask"][31:34, 31:34], True)
    assert arrays["mask"].sum() >= 9  # the beamstop, and any zero count
    assert attrs["shrinkwrap"] is False


def test_default_two_trials_and_no_prtf_from_one(data, tmp_path, capsys):
    folder, _ = data
    common = ["--schedule", "20*HIO + 5*ER", "--seed", 1, "--device", "cpu", "--json"]
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", tmp_path / "a.h5", *common],
                        capsys)
    assert rc == 0, err
    arrays, attrs = read_image_result(tmp_path / "a.h5")
    assert attrs["trials"] == 2 and "prtf" in arrays  # the default: a PRTF can be given
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", tmp_path / "b.h5", "--trials",
                         1, *common], capsys)
    assert rc == 0, err
    summary = json.loads(text)
    arrays, attrs = read_image_result(tmp_path / "b.h5")
    # one estimate fits sqrt(I) by construction: no PRTF, no cut-off, and it is said why
    assert "prtf" not in arrays and attrs["prtf_cutoff_q_fraction"] is None
    assert summary["prtf_cutoff_q_fraction"] is None
    assert summary["prtf_note"] == "PRTF needs ≥ 2 trials"
    assert summary["trial_spread"] is None and summary["trials_agree"] is None
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", tmp_path / "c.h5", "--trials",
                         1, *common[:-1]], capsys)
    assert rc == 0 and "PRTF needs ≥ 2 trials" in text


def test_background_and_mask_below(data, tmp_path, capsys):
    folder, _ = data
    pattern = np.load(folder / "pattern.npy")
    np.save(tmp_path / "pedestal.npy", pattern + 400.0)
    common = ["--schedule", "5*ER", "--trials", 1, "--device", "cpu", "--json"]
    rc, text, err = run(["cdi", tmp_path / "pedestal.npy", "--out", tmp_path / "a.h5",
                         "--background", "400", "--mask-below", "0.5", *common], capsys)
    assert rc == 0, err
    arrays, attrs = read_image_result(tmp_path / "a.h5")
    assert attrs["background"] == 400.0 and json.loads(text)["background"] == 400.0
    # the pixels below 0.5 counts after the pedestal: the beamstop's zeros and high-q zeros
    np.testing.assert_array_equal(arrays["mask"], pattern < 0.5)
    rc, text, err = run(["cdi", tmp_path / "pedestal.npy", "--out", tmp_path / "b.h5",
                         "--background", "p1", *common], capsys)
    assert rc == 0, err
    _, attrs = read_image_result(tmp_path / "b.h5")
    assert attrs["background"] == pytest.approx(np.percentile(pattern + 400.0, 1))


def test_parse_support():
    assert parse_support(None, (8, 8)) is None
    assert parse_support(["auto"], (8, 8)) is None
    assert parse_support(["0:2,1:3"], (8, 8)).sum() == 4
    with pytest.raises(InvalidInputError, match="not both"):
        parse_support(["auto", "0:2,1:3"], (8, 8))
    with pytest.raises(InvalidInputError, match="ROW0:ROW1,COL0:COL1"):
        parse_support(["0-2,1-3"], (8, 8))


@pytest.mark.parametrize("extra, problem", [
    (["--schedule", "20*FOO"], "FOO"),
    (["--beta", "2"], "beta"),
    (["--rounds", "0"], "rounds"),
    (["--support", "0:100,0:10"], "leaves"),
    (["--support", "auto", "--support", "1:5,1:5"], "not both"),
    (["--mask", "WRONG_SHAPE"], "but the pattern is"),
    (["--mask", "MISSING"], ""),
    (["--center", "500,500"], "outside"),
    (["--out", "NOFOLDER"], "does not exist"),
    (["--pattern", "MISSING"], ""),
    (["--background", "lots"], "background"),
    (["--background", "p101"], "p100"),
    (["--png-dir", "UNDER_A_FILE"], "png-dir"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(data, tmp_path, capsys, extra,
                                                            problem):
    folder, _ = data
    np.save(tmp_path / "small_mask.npy", np.zeros((8, 8)))
    pattern = folder / "pattern.npy"
    out = tmp_path / "out.h5"
    subs = {"WRONG_SHAPE": tmp_path / "small_mask.npy", "MISSING": tmp_path / "missing.npy",
            "NOFOLDER": tmp_path / "no" / "out.h5", "UNDER_A_FILE": folder / "mask.npy" / "png"}
    extra = [subs.get(e, e) for e in extra]
    if extra[0] == "--pattern":
        pattern, extra = extra[1], []
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, text, err = run(["cdi", pattern, "--out", out, "--png-dir", tmp_path / "png",
                         "--device", "cpu", "--schedule", "5*ER"] + extra, capsys)
    assert rc == 2, (text, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("speckle: error:") and problem in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no result, no temp, no png
