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
from speckle.io.imaging_result import read_imaging_result


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
                         "--trials", 2, "--keep", 1, "--beta", 0.9, "--positivity", "--seed", 3,
                         "--device", "cpu", "--png-dir", tmp_path / "png", "--json"], capsys)
    assert rc == 0, err
    summary = json.loads(text)
    result = read_imaging_result(out)
    assert result.kind == "cdi" and result.options.schedule == "40*HIO + 10*ER"
    assert result.options.rounds == 8 and result.options.trials == 2
    assert result.options.positivity is True
    assert result.reconstruction.shape == (64, 64) and np.iscomplexobj(result.reconstruction)
    assert result.support.dtype == bool and result.mask[31:34, 31:34].all()
    assert result.errors.shape == (400,) and result.trial_errors.shape == (2, 400)
    assert result.prtf[0].shape == result.prtf[1].shape
    assert normalized_error(obj, result.reconstruction) < 0.1
    assert summary["iterations"] == 400 and summary["masked_pixels"] == int(result.mask.sum())
    assert summary["final_error"] == pytest.approx(result.final_error)
    assert summary["support_pixels"] == int(result.support.sum())
    assert summary["trial_spread"] < 0.2 and summary["verdict"]["level"] in ("good", "marginal")
    assert summary["verdict"] == result.verdict.to_dict()
    names = {p.rsplit("/", 1)[-1] for p in summary["pictures"]}
    assert names == {"reconstruction.png", "errors.png", "prtf.png", "pattern.png"}
    for p in summary["pictures"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int32, np.float32])
def test_a_mask_of_any_natural_type_is_taken(data, tmp_path, capsys, dtype):
    folder, _ = data
    mask = np.load(folder / "mask.npy").astype(dtype)
    np.save(tmp_path / "mask.npy", mask)
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", tmp_path / "r.h5", "--mask",
                         tmp_path / "mask.npy", "--schedule", "5*ER", "--rounds", 1,
                         "--trials", 1, "--device", "cpu", "--json"], capsys)
    assert rc == 0, err
    result = read_imaging_result(tmp_path / "r.h5")
    np.testing.assert_array_equal(result.mask[30:35, 30:35], np.pad(np.ones((3, 3), bool), 1))


def test_rectangles_and_mask_zeros_without_json(data, tmp_path, capsys):
    folder, _ = data
    out = tmp_path / "r.h5"
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", out, "--mask-zeros",
                         "--support", "20:44,20:44", "--support", "10:12,10:12",
                         "--schedule", "20*ER", "--rounds", 1, "--no-shrinkwrap",
                         "--device", "cpu"], capsys)
    assert rc == 0, err
    assert "Fourier error" in text and str(out) in text
    result = read_imaging_result(out)
    assert result.initial_support.sum() == 24 * 24 + 4
    assert result.support_method == "rectangles"
    assert result.mask[31:34, 31:34].all() and result.mask.sum() >= 9  # and any zero count
    assert result.options.shrinkwrap is False


def test_defaults_give_a_prtf_and_one_trial_gives_none(data, tmp_path, capsys):
    folder, _ = data
    common = ["--schedule", "20*HIO + 5*ER", "--rounds", 2, "--seed", 1, "--device", "cpu",
              "--json"]
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", tmp_path / "a.h5", *common],
                        capsys)
    assert rc == 0, err
    result = read_imaging_result(tmp_path / "a.h5")
    assert result.options.trials == 4 and len(result.kept) == 2 and result.prtf is not None
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", tmp_path / "b.h5", "--trials",
                         1, *common], capsys)
    assert rc == 0, err
    summary = json.loads(text)
    result = read_imaging_result(tmp_path / "b.h5")
    # one estimate fits sqrt(I) by construction: no PRTF, no cut-off, and the verdict says why
    assert result.prtf is None and summary["prtf_cutoff_q_fraction"] is None
    assert summary["trial_spread"] is None and summary["verdict"]["level"] == "marginal"
    assert "One trial" in " ".join(summary["verdict"]["reasons"])


def test_background_and_mask_below(data, tmp_path, capsys):
    folder, _ = data
    pattern = np.load(folder / "pattern.npy")
    np.save(tmp_path / "pedestal.npy", pattern + 400.0)
    common = ["--schedule", "5*ER", "--rounds", 1, "--trials", 1, "--device", "cpu", "--json"]
    rc, text, err = run(["cdi", tmp_path / "pedestal.npy", "--out", tmp_path / "a.h5",
                         "--background", "400", "--mask-below", "400.5", *common], capsys)
    assert rc == 0, err
    result = read_imaging_result(tmp_path / "a.h5")
    assert result.background == 400.0 and json.loads(text)["background"] == 400.0
    # the pixels reading below 400.5 (before the pedestal is taken off): the beamstop's zeros
    # and the zero counts at high q
    np.testing.assert_array_equal(result.mask, pattern < 0.5)
    rc, text, err = run(["cdi", tmp_path / "pedestal.npy", "--out", tmp_path / "b.h5",
                         *common], capsys)  # the default background: auto
    assert rc == 0, err
    result = read_imaging_result(tmp_path / "b.h5")
    assert result.background == pytest.approx(np.percentile(pattern + 400.0, 1))
    rc, text, err = run(["cdi", folder / "pattern.npy", "--out", tmp_path / "c.h5",
                         *common], capsys)  # counts with zeros: auto subtracts nothing
    assert rc == 0, err
    assert read_imaging_result(tmp_path / "c.h5").background is None


def test_parse_support():
    assert parse_support(None) == ("auto", ())
    assert parse_support(["FTH"]) == ("fth", ())
    assert parse_support(["0:2,1:3"]) == ("rectangles", ((0, 2, 1, 3),))
    with pytest.raises(InvalidInputError, match="not both"):
        parse_support(["auto", "0:2,1:3"])
    with pytest.raises(InvalidInputError, match="ROW0:ROW1,COL0:COL1"):
        parse_support(["0-2,1-3"])


@pytest.mark.parametrize("extra, problem", [
    (["--schedule", "20*FOO"], "FOO"),
    (["--beta", "2"], "beta"),
    (["--rounds", "0"], "rounds"),
    (["--support", "0:100,0:10"], "leaves"),
    (["--support", "auto", "--support", "1:5,1:5"], "not both"),
    (["--mask", "WRONG_SHAPE"], "but the pattern is"),
    (["--support", "fth"], "cross-terms"),
    (["--trials", "0"], "trials"),
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
