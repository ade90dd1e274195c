"""Intensity spikes, glitches and beam losses (speckle.xpcs.outliers and the verdict's
outlier_frames rule): planted at known frames and found, with no false alarm on clean photon
counting data nor on the real demo's own fluctuations."""

from __future__ import annotations

import numpy as np
import pytest

from speckle.cli.common import parse_frames
from speckle.demo import DEMO_RINGS, demo_metadata, demo_path
from speckle.io.dataset import ArrayDataset, Metadata
from speckle.io.open import open_dataset
from speckle.xpcs.analysis import XpcsOptions, analyze
from speckle.xpcs.geometry import Geometry
from speckle.xpcs.outliers import format_frames, outlier_frames, running_median
from speckle.xpcs.partitions import q_rings, rectangles
from speckle.xpcs.simulate import ou_speckle

SHAPE = (32, 32)


def _intensity(frames):
    return frames.reshape(len(frames), -1).mean(axis=1)


def _speckle(n=1000, counts=2.0, tau=20, beta=0.25, seed=3, shape=SHAPE):
    return ou_speckle(n, shape, tau, beta, counts, seed=seed).read_frames().astype(np.float64)


def _analyse(frames, exclude=()):
    ds = ArrayDataset(frames.astype(np.uint16), Metadata(frame_time=1e-3))
    return analyze(ds, rectangles(frames.shape[1:], [f"0:{frames.shape[1]},0:{frames.shape[2]}"]),
                   XpcsOptions(device="cpu", twotime=False, exclude_frames=tuple(exclude)))


@pytest.mark.parametrize("n,k", [(11, 5), (12, 5), (3000, 5), (7, 2), (5, 2), (4, 1)])
def test_running_median_is_scipys_mirrored_median_filter(n, k):
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(n)
    y = rng.poisson(5.0, n).astype(float) + rng.normal(0, 1, n)
    y[n // 2] = 1e6  # a spike: the median ignores it
    expected = median_filter(y, size=2 * k + 1, mode="mirror")
    np.testing.assert_array_equal(running_median(y, k), expected)


def test_the_analysis_does_not_import_scipy_ndimage():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from speckle.xpcs.analysis import analyze, XpcsOptions; "
            "from speckle.xpcs.partitions import rectangles; "
            "f = np.random.default_rng(0).poisson(2, (64, 8, 8)).astype(np.uint16); "
            "analyze(f, rectangles((8, 8), ['0:8,0:8']), XpcsOptions(device='cpu')); "
            "print('scipy.ndimage' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_planted_spikes_are_found_at_their_frames():
    rng = np.random.default_rng(7)
    frames = _speckle()
    planted = {0: 1.3, 17: 1.3, 250: 2.0, 251: 1.5, 252: 1.4, 640: 1.25, 999: 1.35}
    for f, gain in planted.items():
        frames[f] = rng.poisson(frames[f] * gain)
    odd = outlier_frames(_intensity(frames), SHAPE[0] * SHAPE[1])
    assert odd.spikes == sorted(planted) and odd.drops == []
    for f, gain in planted.items():
        assert odd.departure[f] == pytest.approx(gain - 1, abs=0.1), f


def test_beam_dump_dip_and_glitch_are_found():
    frames = _speckle()
    frames[400:440] *= 0.03                      # beam dump: 40 frames
    frames[700] = np.floor(frames[700] * 0.4)    # one frame at 40 %
    frames[820, 10:14, :] = 50                   # readout glitch: four bright rows
    odd = outlier_frames(_intensity(frames), SHAPE[0] * SHAPE[1])
    assert odd.drops == [*range(400, 440), 700]
    assert odd.spikes == [820]
    assert odd.departure[420] == pytest.approx(-0.97, abs=0.02)
    assert format_frames(odd.frames) == "400-439,700,820"


@pytest.mark.parametrize("kwargs", [
    {},                                                   # 2 counts per pixel
    {"counts": 0.01},                                     # 10 counts per frame in all
    {"counts": 0.001, "n": 3000},                         # one count per frame in all
    {"counts": 50.0, "beta": 0.8, "tau": 300},            # bright, slow, strong speckle
    {"counts": 5.0, "shape": (3, 3), "beta": 1.0},        # nine pixels of full speckle
    {"counts": 0.3, "tau": 0.5, "n": 5000, "seed": 11},   # fast, long
])
def test_no_false_alarm_on_clean_photon_counting(kwargs):
    shape = kwargs.pop("shape", SHAPE)
    frames = _speckle(shape=shape, **kwargs)
    odd = outlier_frames(_intensity(frames), shape[0] * shape[1])
    assert odd.frames == [], odd


def test_no_false_alarm_on_drifts_and_steps():
    frames = _speckle(n=2000)
    t = np.arange(2000)[:, None, None]
    ramp = np.random.default_rng(1).poisson(frames * (1 + 0.6 * t / 2000))
    step = np.random.default_rng(2).poisson(frames * np.where(t < 900, 1.0, 1.4))
    for data in (ramp, step):
        assert outlier_frames(_intensity(data), SHAPE[0] * SHAPE[1]).frames == []


def _demo():
    md = demo_metadata("xpcs")
    rings = DEMO_RINGS["xpcs"]
    ds = open_dataset(str(demo_path("xpcs")), metadata=md)
    part = q_rings(ds.frame_shape, Geometry.from_metadata(ds.metadata),
                   q_min=rings["q_min"] * 1e10, q_width=rings["q_width"] * 1e10,
                   n_rings=rings["n_rings"], static_per_dynamic=rings["static_per_ring"])
    return ds, part


def test_the_real_demo_has_three_spikes_and_nothing_else():
    # frames 3, 10 and 32 are 32-38 % above their neighbours; the other 97 frames wander by a
    # few per cent (the whole-detector mean also has a spike at 20, outside the rings)
    ds, part = _demo()
    with ds:
        res = analyze(ds, part, XpcsOptions(device="cpu", twotime=False))
        (f,) = [x for x in res.verdict.findings if x.rule == "outlier_frames"]
        assert f.frames == [3, 10, 32] and res.verdict.exclude_frames == [3, 10, 32]
        assert f.level == "marginal"
        assert "3 frames with an intensity spike (+32 to +38 %): 3,10,32" == f.message
        assert f.action == "exclude frames 3,10,32 and analyse again"
        # excluded, they are no longer judged, and nothing else is found
        again = analyze(ds, part, XpcsOptions(device="cpu", twotime=False,
                                              exclude_frames=(3, 10, 32)))
    assert [x for x in again.verdict.findings if x.rule == "outlier_frames"] == []
    assert again.verdict.exclude_frames == []


def test_verdict_names_the_frames_and_excluding_them_clears_it():
    frames = _speckle()
    rng = np.random.default_rng(5)
    for f in (120, 121, 555):
        frames[f] = rng.poisson(frames[f] * 1.5)
    frames[800:860] = 0.0  # shutter closed: empty frames
    v = _analyse(frames).verdict
    assert v.exclude_frames == [120, 121, 555, *range(800, 860)]
    (odd,) = [x for x in v.findings if x.rule == "outlier_frames"]
    assert odd.frames == [120, 121, 555] and "120-121,555" in odd.message
    (empty,) = [x for x in v.findings if x.rule == "empty_frames"]
    assert "800-859" in empty.action
    clean = _analyse(frames, exclude=v.exclude_frames).verdict
    assert clean.exclude_frames == []
    assert not any(x.rule in ("outlier_frames", "empty_frames") for x in clean.findings)


def test_many_outliers_are_bad():
    frames = _speckle(n=200)
    frames[::8] = np.random.default_rng(3).poisson(frames[::8] * 1.6)  # 25 of 200 frames
    (odd,) = [x for x in _analyse(frames).verdict.findings if x.rule == "outlier_frames"]
    assert odd.level == "bad" and odd.value == 25


@pytest.mark.parametrize("frames, text", [([3], "3"), ([5, 3, 4, 9], "3-5,9"), ([], ""),
                                          ([0, 1, 2, 10, 12, 13], "0-2,10,12-13")])
def test_frame_lists_read_back_by_the_command_line(frames, text):
    assert format_frames(frames) == text
    assert sorted(parse_frames(text)) == sorted(set(frames))


def test_the_intensity_plot_circles_the_flagged_frames_and_crosses_the_left_out():
    from speckle.plots import plot_intensity

    frames = _speckle(n=300)
    rng = np.random.default_rng(5)
    for f in (40, 41, 200):
        frames[f] = rng.poisson(frames[f] * 1.6)
    res = _analyse(frames, exclude=[41])
    assert res.verdict.exclude_frames == [40, 200]
    ax = plot_intensity(res).axes[0]
    marks = {line.get_label(): line for line in ax.lines}
    flagged, left_out = marks["flagged: 40,200"], marks["left out: 41"]
    assert list(flagged.get_xdata()) == pytest.approx([40e-3, 200e-3])
    assert list(left_out.get_xdata()) == pytest.approx([41e-3])
    assert list(flagged.get_ydata()) == pytest.approx(res.intensity_vs_time[[40, 200]])
