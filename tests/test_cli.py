"""The `speckle xpcs` command: JSON summary, outputs, and clean refusals of bad input."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from cli_helpers import run as cli_run

from speckle.xpcs.simulate import ou_speckle


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "speckle", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """1500 frames of simulated speckle, tau = 15 ms, beta = 0.3, saved as .npy."""
    folder = tmp_path_factory.mktemp("cli")
    ds = ou_speckle(1500, (32, 40), tau_frames=15, beta=0.3, mean_counts=2, seed=21)
    path = folder / "stack.npy"
    np.save(path, ds.read_frames())
    return path


def test_json_summary_and_outputs(stack, tmp_path):
    out = tmp_path / "result.h5"
    proc = run("xpcs", stack, "--frame-time", "1ms", "--roi", "0:16,0:40", "--roi", "16:32,0:40",
               "--out", out, "--csv-dir", tmp_path / "csv", "--png-dir", tmp_path / "png",
               "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["verdict"] in ("good", "marginal", "bad")
    assert [b["label"] for b in summary["bins"]] == ["ROI 1 [0:16, 0:40]", "ROI 2 [16:32, 0:40]"]
    for b in summary["bins"]:
        assert b["tau_s"] == pytest.approx(0.015, rel=0.1)
        assert b["beta"] == pytest.approx(0.3, rel=0.1)
        assert b["verdict"] in ("good", "marginal", "bad")
    with h5py.File(out, "r") as f:
        g2 = f["/xpcs/multitau/normalized_g2"][()]
    assert g2.shape[1] == 2 and np.isfinite(g2[0]).all()
    assert (tmp_path / "csv" / "g2.csv").stat().st_size > 0
    assert (tmp_path / "csv" / "fits.csv").stat().st_size > 0
    assert (tmp_path / "png" / "g2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_human_output_names_the_verdict(stack, tmp_path):
    proc = run("xpcs", stack, "--frame-time", "1ms", "--out", tmp_path / "r.h5", "--no-twotime")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("verdict: ")


@pytest.mark.parametrize("args, words", [
    (["--roi", "0:99,0:10"], "outside"),
    (["--roi", "garbage"], "ROW0:ROW1,COL0:COL1"),
    (["--frame-time", "-1"], "positive"),
    (["--frame-time", "3 parsecs"], "unit"),
    (["--exclude-frames", "a-b"], "frame list"),
    (["--q-rings", "4"], "energy"),
])
def test_bad_parameters_exit_2_with_one_line(stack, tmp_path, args, words):
    out = tmp_path / "r.h5"
    proc = run("xpcs", stack, "--out", out, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("speckle: error:")
    assert words in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_bad_file_keeps_an_existing_result(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("this is not a detector file\n")
    out = tmp_path / "result.h5"
    out.write_bytes(b"previous result")
    proc = run("xpcs", bad, "--out", out)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"previous result"


def test_missing_input_file(tmp_path):
    proc = run("xpcs", tmp_path / "nope.h5", "--out", tmp_path / "r.h5")
    assert proc.returncode == 2
    assert "nope.h5" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_q_rings_report_a_diffusive_relaxation(tmp_path):
    """Brownian motion: tau(q) = 1 / (D q^2) per pixel; the command reports Gamma ~ q^2."""
    from speckle.xpcs.geometry import Geometry

    shape, center = (96, 96), (48, 48)
    geometry = Geometry(energy=780.0, distance=0.5, pixel_size=(20e-6, 20e-6),
                        beam_center=center)
    q = geometry.q_map(shape)
    D, dt = 2e-14, 1e-3
    tau_frames = np.clip(1 / (D * np.maximum(q, 1e6) ** 2) / dt, 1, 1e6)
    ds = ou_speckle(3000, shape, tau_frames, beta=0.3, mean_counts=3, seed=8)
    path = tmp_path / "brownian.npy"
    np.save(path, ds.read_frames())
    ring_q = np.percentile(q, [20, 80]) * 1e-10  # 1/Å
    proc = run("xpcs", path, "--frame-time", "1ms", "--energy", "780", "--distance", "0.5",
               "--pixel-size", "20um", "--beam-center", "48,48", "--q-rings", "5",
               "--q-min", ring_q[0], "--q-width", (ring_q[1] - ring_q[0]) / 5, "--no-twotime",
               "--out", tmp_path / "r.h5", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    relax = summary["relaxation"]
    assert relax["exponent"] == pytest.approx(2.0, abs=0.15)
    assert relax["regime"] == "diffusive"


@pytest.fixture(scope="module")
def spiky(tmp_path_factory):
    """300 noisy frames (tau = 40 frames, 13 % of the run) with spikes at frames 50 and 200."""
    frames = ou_speckle(300, (32, 32), tau_frames=40, beta=0.25, mean_counts=0.05,
                        seed=4).read_frames().astype(np.int64)
    rng = np.random.default_rng(9)
    for f in (50, 200):
        frames[f] += rng.poisson(0.15, frames[f].shape)  # four times the counts
    path = tmp_path_factory.mktemp("spiky") / "spiky.npy"
    np.save(path, frames.astype(np.uint16))
    return path


def test_human_output_leads_with_the_conclusion_and_what_to_do(spiky, tmp_path, capsys):
    common = [spiky, "--frame-time", "2ms", "--no-twotime", "--roi", "0:16,0:32",
              "--roi", "16:32,0:32"]
    rc, out, err = cli_run(["xpcs", *common, "--out", tmp_path / "a.h5", "--json"], capsys)
    assert rc == 0, err
    summary = json.loads(out)
    rc, human, err = cli_run(["xpcs", *common, "--out", tmp_path / "b.h5"], capsys)
    assert rc == 0, err
    lines = human.splitlines()
    assert lines[0] == f"verdict: {summary['verdict'].upper()} — {summary['conclusion']}"
    assert lines[1] == f"do first: {summary['action']}"
    assert lines[2] == "problems:"
    for p in summary["problems"]:
        assert p["headline"] in human
    assert "--exclude-frames 50,200" in human
    assert "(--details: the reasons bin by bin)" in human
    detail = next(p for p in summary["problems"] if p["bins"])["details"][0]
    assert detail not in human
    rc, full, err = cli_run(["xpcs", *common, "--out", tmp_path / "c.h5", "--details"], capsys)
    assert rc == 0, err
    assert f"· {detail}" in full
    # one line per region with its count forecast
    for b in summary["bins"]:
        (line,) = [x for x in lines if x.strip().startswith(b["label"])]
        assert f"{b['count_longer']['frames_needed']:,} frames" in line


def test_json_has_the_conclusion_problems_frames_and_count_forecast(spiky, tmp_path, capsys):
    common = [spiky, "--frame-time", "2ms", "--no-twotime", "--json"]
    rc, out, err = cli_run(["xpcs", *common, "--out", tmp_path / "a.h5"], capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["exclude_frames"] == [50, 200]
    rules = [p["rule"] for p in summary["problems"]]
    assert "outlier_frames" in rules and "signal_to_noise" in rules
    assert summary["action"] == summary["problems"][0]["action"]
    assert summary["conclusion"].startswith(summary["problems"][0]["headline"])
    (b,) = summary["bins"]
    c = b["count_longer"]
    assert c["frames"] == 300 and c["frames_needed"] > 300 and c["note"].startswith("count ")
    assert c["seconds_needed"] == pytest.approx(c["frames_needed"] * 2e-3)
    assert b["snr"] == pytest.approx(c["snr"]) and b["snr"] < 10
    # leaving the flagged frames out clears them
    rc, out, err = cli_run(["xpcs", *common, "--out", tmp_path / "b.h5",
                            "--exclude-frames", "50,200"], capsys)
    assert rc == 0, err
    again = json.loads(out)
    assert again["exclude_frames"] == []
    assert "outlier_frames" not in [p["rule"] for p in again["problems"]]
