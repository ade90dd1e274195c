"""``speckle fth`` and ``speckle propagate`` end to end: results, JSON, refusals with exit 2 and
nothing written. (``speckle cdi`` is tested beside its module.)"""

import json

import numpy as np
import pytest
from cli_helpers import assert_refused, run
from test_fth import magnetic_pair, simulate_fth

from speckle.cli.fth import parse_distances, parse_signed_length
from speckle.imaging.fth import reconstruct
from speckle.io.images import read_image_result

UM = 1e-6


# -- speckle fth -----------------------------------------------------------------------------

def test_fth_demo_hologram_to_result_json_and_pictures(shared_data, tmp_path, capsys):
    out = tmp_path / "fth.h5"
    rc, text, _ = run(["fth", shared_data / "als-demo" / "fth.fits", "--out", out,
                       "--png-dir", tmp_path / "png", "--json"], capsys)
    assert rc == 0
    summary = json.loads(text)
    arrays, attrs = read_image_result(out)
    assert attrs["kind"] == "fth" and attrs["layout_version"] == 1
    assert arrays["reconstruction"].shape == (512, 512)
    assert np.iscomplexobj(arrays["reconstruction"])
    assert abs(attrs["center"][0] - 256) < 2 and abs(attrs["center"][1] - 256) < 2
    assert summary["center"] == attrs["center"]
    # the demo's two apertures beside the central one: one twin pair of cross-terms
    assert len(summary["cross_terms"]) == 2 and summary["verdict"]["level"] == "good"
    assert summary["cross_terms"][0]["twin"] == 1 and summary["verdict"] == attrs["verdict"]
    assert {p.split("/")[-1] for p in summary["pictures"]} >= {
        "hologram.png", "reconstruction.png", "cross_term_1.png"}
    for p in summary["pictures"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_fth_center_and_apodization_options(tmp_path, capsys):
    hologram, _ = simulate_fth(photons=1e9)
    np.save(tmp_path / "h.npy", hologram)
    rc, _, _ = run(["fth", tmp_path / "h.npy", "--out", tmp_path / "r.h5", "--center",
                    "127.5,128.25", "--apodization", "0.2"], capsys)
    assert rc == 0
    arrays, attrs = read_image_result(tmp_path / "r.h5")
    assert attrs["center"] == [127.5, 128.25] and attrs["options"]["apodization"] == 0.2
    want = reconstruct(hologram, center=(127.5, 128.25), apodization=0.2).image
    assert np.allclose(arrays["reconstruction"], want)


def test_fth_negative_helicity_gives_real_magnetic_contrast(tmp_path, capsys):
    pos, neg, magnetic = magnetic_pair()
    np.save(tmp_path / "pos.npy", pos)
    np.save(tmp_path / "neg.npy", neg)
    rc, text, _ = run(["fth", tmp_path / "pos.npy", "--negative", tmp_path / "neg.npy",
                       "--out", tmp_path / "m.h5", "--json"], capsys)
    assert rc == 0
    arrays, attrs = read_image_result(tmp_path / "m.h5")
    assert attrs["helicity_factor"] == pytest.approx(pos.sum() / (pos + neg).sum())
    assert "charge_reconstruction" in arrays and "phase_rotation_rad" in attrs
    r0, r1, c0, c1 = attrs["cross_terms"][0]["box"]
    term = arrays["reconstruction"][r0:r1, c0:c1]
    assert np.linalg.norm(term.imag) < 0.05 * np.linalg.norm(term.real)
    assert json.loads(text)["helicity_factor"] == pytest.approx(attrs["helicity_factor"])


def test_fth_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    hologram, _ = simulate_fth()
    np.save(tmp_path / "h.npy", hologram)
    np.save(tmp_path / "small.npy", hologram[:100, :100])
    out = tmp_path / "r.h5"
    for extra in (["--apodization", "2"], ["--center", "row,col"], ["--center", "900,3"],
                  ["--helicity-factor", "0.5"], ["--negative", tmp_path / "small.npy"],
                  ["--negative", tmp_path / "missing.npy"], ["--png-dir", tmp_path / "h.npy"]):
        assert_refused(["fth", tmp_path / "h.npy", "--out", out, *extra], capsys, tmp_path)
    assert_refused(["fth", tmp_path / "nothing.fits", "--out", out], capsys, tmp_path)
    assert_refused(["fth", tmp_path / "h.npy", "--out", tmp_path / "no" / "r.h5"], capsys,
                   tmp_path)


def test_fth_unwritable_png_folder_is_refused_before_any_work(tmp_path, capsys):
    hologram, _ = simulate_fth()
    np.save(tmp_path / "h.npy", hologram)
    (tmp_path / "file.txt").write_text("a file, not a folder")
    # under a regular file no folder can be made (chmod would not stop root)
    assert_refused(["fth", tmp_path / "h.npy", "--out", tmp_path / "r.h5",
                    "--png-dir", tmp_path / "file.txt" / "sub"], capsys, tmp_path)
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("failing", ["second_png", "hdf5"])
def test_fth_a_failure_while_writing_leaves_nothing(tmp_path, capsys, monkeypatch, failing):
    import speckle.io.images
    import speckle.plots

    hologram, _ = simulate_fth()
    np.save(tmp_path / "h.npy", hologram)
    calls = []
    real_save_png = speckle.plots.save_png

    def save_png(fig, path, **kw):
        calls.append(path)
        if failing == "second_png" and len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real_save_png(fig, path, **kw)

    def write_image_result(*args, **kwargs):
        raise OSError(28, "No space left on device", str(args[0]))

    monkeypatch.setattr(speckle.plots, "save_png", save_png)
    if failing == "hdf5":
        monkeypatch.setattr(speckle.io.images, "write_image_result", write_image_result)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = run(["fth", tmp_path / "h.npy", "--out", tmp_path / "r.h5",
                      "--png-dir", tmp_path / "pics" / "fth"], capsys)
    assert rc == 2 and "No space left" in err
    assert calls  # the pictures were being written...
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # ...and none is left


# -- speckle propagate -----------------------------------------------------------------------

def test_propagate_parses_signed_distances_and_units():
    assert np.allclose(parse_distances("-5um:5um:101"), np.linspace(-5e-6, 5e-6, 101))
    assert np.allclose(parse_distances("0:2um:3"), [0, 1e-6, 2e-6])
    assert np.allclose(parse_distances("1um,-250nm"), [1e-6, -2.5e-7])
    assert parse_signed_length("-0um") == 0.0
    assert parse_signed_length("+1.5e-6") == 1.5e-6


def test_propagate_refocuses_an_fth_result(tmp_path, capsys):
    defocus, pixel = 3 * UM, 30e-9
    hologram, _ = simulate_fth("phase", pixel=pixel, defocus=defocus, ref_radius=1.0,
                               photons=1e8, seed=1)
    np.save(tmp_path / "h.npy", hologram)
    assert run(["fth", tmp_path / "h.npy", "--out", tmp_path / "fth.h5"], capsys)[0] == 0
    _, attrs = read_image_result(tmp_path / "fth.h5")
    r0, r1, c0, c1 = next(t["box"] for t in attrs["cross_terms"] if t["col"] < 128)
    rc, text, _ = run(["propagate", tmp_path / "fth.h5", "--out", tmp_path / "p.h5",
                       "--energy", "778eV", "--pixel-size", "30nm", "--distances",
                       "-6um:6um:61", "--region", f"{r0}:{r1},{c0}:{c1}", "--json",
                       "--png-dir", tmp_path / "png"], capsys)
    assert rc == 0
    summary = json.loads(text)
    assert abs(summary["focus_distance_m"] + defocus) < 0.5 * UM
    arrays, attrs = read_image_result(tmp_path / "p.h5")
    assert attrs["kind"] == "propagation" and attrs["region"] == [r0, r1, c0, c1]
    assert arrays["distances"].shape == (61,) and arrays["sharpness_edge_sparsity"].shape == (61,)
    assert arrays["focused"].shape == (r1 - r0, c1 - c0) and np.iscomplexobj(arrays["focused"])
    assert len(summary["pictures"]) == 3


def test_propagate_takes_a_plain_image_as_a_real_field(tmp_path, capsys):
    image = np.zeros((48, 48))
    image[16:32, 16:32] = 1.0
    np.save(tmp_path / "img.npy", image)
    rc, text, _ = run(["propagate", tmp_path / "img.npy", "--out", tmp_path / "p.h5",
                       "--energy", "0.778keV", "--pixel-size", "20nm", "--distances",
                       "-2um:2um:21", "--metric", "brenner", "--json"], capsys)
    assert rc == 0
    arrays, _ = read_image_result(tmp_path / "p.h5")
    assert np.allclose(arrays["field"], image)
    assert abs(json.loads(text)["focus_distance_m"]) < 0.2 * UM  # a sharp square is in focus


def test_propagate_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    np.save(tmp_path / "img.npy", np.ones((32, 32)))
    base = ["propagate", tmp_path / "img.npy", "--out", tmp_path / "p.h5"]
    good = {"--energy": "778eV", "--pixel-size": "20nm", "--distances": "-1um:1um:5"}
    for key, bad in (("--distances", "-5um:5um"), ("--distances", "1um:2um:0"),
                     ("--distances", "1s:2s:3"), ("--energy", "abc"), ("--energy", "-5eV"),
                     ("--pixel-size", "0nm")):
        args = {**good, key: bad}
        assert_refused(base + [x for kv in args.items() for x in kv], capsys, tmp_path)
    flat = [x for kv in good.items() for x in kv]
    for extra in (["--region", "0:40,0:10"], ["--region", "a:b"], ["--metric", "sharpest"],
                  ["--region", "0:4,0:4"], ["--region", "0:32,0:7"]):
        assert_refused(base + flat + extra, capsys, tmp_path)
    rc, _, err = run(base + flat + ["--region", "0:4,0:4"], capsys)
    assert rc == 2 and "at least 8 × 8" in err
    np.save(tmp_path / "rnd.npy", np.random.default_rng(0).random((32, 32)))
    rc, _, err = run(["propagate", tmp_path / "rnd.npy", "--out", tmp_path / "p.h5", *flat,
                      "--region", "0:8,0:8"], capsys)  # the smallest accepted
    assert rc == 0, err
    np.save(tmp_path / "nan.npy", np.full((32, 32), np.nan))
    assert_refused(["propagate", tmp_path / "nan.npy", "--out", tmp_path / "p.h5", *flat],
                   capsys, tmp_path)
