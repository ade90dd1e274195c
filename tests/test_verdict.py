"""The XPCS quality verdict: every rule is driven with simulated data that must trigger it.

Each scenario below builds a small simulated measurement (Ornstein-Uhlenbeck speckle with a
known correlation time and contrast, see :mod:`speckle.xpcs.simulate`) with one defect, runs the
full analysis and checks that the rule for that defect fires at the documented level, and that
the clean measurement does not fire it. Results are cached per scenario, so the checks that go
over every scenario (actions, JSON) do not analyse anything twice.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import pytest

from speckle.io.dataset import ArrayDataset, Metadata
from speckle.xpcs.analysis import XpcsOptions, analyze
from speckle.xpcs.partitions import rectangles
from speckle.xpcs.simulate import ou_speckle
from speckle.xpcs.verdict import (
    CHANGING,
    LOW_CONTRAST,
    NO_CONTRAST,
    NOISY,
    PRIORITY,
    TOO_FAST,
    TOO_SLOW,
    BinVerdict,
    Finding,
    Rules,
    Verdict,
    expected_snr,
)

FRAME_TIME = 1e-3  # s
RULES = Rules()


# --------------------------------------------------------------------------------------------
# simulated measurements


def _frames(n, shape, tau, beta=0.25, counts=2.0, seed=0, poisson=True):
    """Simulated frames (uint16 counts, or float32 intensities with ``poisson=False``)."""
    dtype = np.uint16 if poisson else np.float32
    ds = ou_speckle(n, shape, tau, beta, counts, seed=seed, frame_time=FRAME_TIME,
                    dtype=dtype, poisson=poisson)
    return ds.read_frames()


def _counts(intensity, seed):
    """Photon counts (uint16) from float intensities."""
    return np.random.default_rng(seed).poisson(intensity).astype(np.uint16)


def _with_profile(profile, n=1000, shape=(32, 32), seed=10):
    """Speckle whose intensity follows ``profile`` (n,) frame by frame, then Poisson counts."""
    intensity = _frames(n, shape, 20, seed=seed, poisson=False)
    return _counts(intensity * np.asarray(profile, np.float32)[:, None, None], seed + 1)


def _zero_frames(which):
    f = _frames(1000, (32, 32), 20, seed=11).copy()
    f[which] = 0
    return f


def _saturate(which):
    f = _frames(1000, (32, 32), 20, seed=11).copy()
    f[which, 5, 5] = np.iinfo(np.uint16).max
    return f


STEP_FRAME = 600

SCENARIOS = {
    # name: (frames builder, rectangles or None for the whole frame, two-time map?)
    "clean": (lambda: _frames(3000, (48, 48), 20, 0.25, 2.0, seed=1), None, True),
    "contrast_bad": (lambda: _frames(1000, (32, 32), 20, 0.005, 50.0, seed=2), None, False),
    "contrast_marginal": (lambda: _frames(1000, (32, 32), 20, 0.035, 50.0, seed=3), None, False),
    # low counts: SNR ≈ c1 n sqrt(N_pix (T - 1)) / sqrt(1 + c1), c1 = β exp(-2/τ) ≈ 0.18:
    # 0.4; below 3 whatever the measured contrast (at most 0.01 sqrt(576 * 99) / sqrt(2) ≈ 1.7)
    "snr_bad": (lambda: _frames(100, (24, 24), 20, 0.2, 0.01, seed=4), None, False),
    # 0.018 sqrt(1024 * 99) / sqrt(1.18) ≈ 5.3
    "snr_marginal": (lambda: _frames(100, (32, 32), 20, 0.2, 0.1, seed=5), None, False),
    # g2 - 1 at the first lag: 0.25 exp(-2 / 0.2) ≈ 1e-5: over before the first lag
    "too_fast": (lambda: _frames(1000, (32, 32), 0.2, 0.25, 2.0, seed=6), None, False),
    # decays, but in about one frame time: the fit succeeds with tau < 2 frame times
    "too_fast_fitted": (lambda: _frames(1000, (32, 32), 1.0, 0.25, 5.0, seed=7), None, False),
    # 500 frames, tau = 20000 frames: no decay at all
    "too_slow": (lambda: _frames(500, (32, 32), 20000, 0.25, 2.0, seed=8), None, False),
    # tau = the whole run: the fit succeeds but tau > half the run
    "too_slow_fitted": (lambda: _frames(1000, (32, 32), 1000, 0.25, 2.0, seed=9), None, False),
    # tau = 30 % of the run
    "window_marginal": (lambda: _frames(1000, (32, 32), 300, 0.25, 2.0, seed=12), None, False),
    "empty_few": (lambda: _zero_frames([100, 400, 700]), None, False),
    "empty_many": (lambda: _zero_frames(slice(100, 130)), None, False),
    "saturated_few": (lambda: _saturate([100, 400, 700]), None, False),
    "saturated_many": (lambda: _saturate(slice(100, 130)), None, False),
    "drift_bad": (lambda: _with_profile(np.linspace(1.0, 1.4, 1000)), None, False),
    "drift_marginal": (lambda: _with_profile(np.linspace(1.0, 1.1, 1000)), None, False),
    # a short, low-count run: its intensity scatters by ~20 % per frame, no real drift
    "noisy_no_drift": (lambda: _frames(100, (8, 8), 5, 0.2, 0.5, seed=4), None, False),
    "jump": (lambda: _with_profile(np.where(np.arange(1000) < STEP_FRAME, 1.0, 1.3)),
             None, False),
    # the dynamics slow down 15-fold half way (ageing)
    "ageing": (lambda: np.concatenate([_frames(1000, (32, 32), 4, seed=13),
                                       _frames(1000, (32, 32), 60, seed=14)]), None, True),
    "stationary": (lambda: _frames(2000, (32, 32), 20, seed=15), None, True),
    # rows 0:16 good speckle, rows 16:32 no contrast
    "bad_bin_next_to_good": (
        lambda: np.concatenate([_frames(1000, (16, 32), 20, 0.25, 2.0, seed=16),
                                _frames(1000, (16, 32), 20, 0.005, 2.0, seed=17)], axis=1),
        ["0:16,0:32", "16:32,0:32"], False),
    # rows 8:16 never see a photon: no g2 at all there (NaN everywhere)
    "dark_bin": (lambda: np.concatenate([_frames(500, (8, 32), 20, seed=18),
                                         np.zeros((500, 8, 32), np.uint16)], axis=1),
                 ["0:8,0:32", "8:16,0:32"], False),
}


@lru_cache(maxsize=None)
def run(name):
    """Analyse one scenario: (frames, result)."""
    build, rois, twotime = SCENARIOS[name]
    frames = build()
    shape = frames.shape[1:]
    part = rectangles(shape, rois or [f"0:{shape[0]},0:{shape[1]}"])
    ds = ArrayDataset(frames, Metadata(frame_time=FRAME_TIME), source=f"simulated {name}")
    return frames, analyze(ds, part, XpcsOptions(device="cpu", twotime=twotime))


def verdict(name):
    return run(name)[1].verdict


def whole_run(name, rule):
    """The whole-measurement findings of ``rule`` (a list, empty when the rule is silent)."""
    return [f for f in verdict(name).findings if f.rule == rule]


def in_bin(name, rule, b=0):
    """The single finding of ``rule`` for bin ``b`` (0-based)."""
    found = [f for f in verdict(name).bins[b].findings if f.rule == rule]
    assert len(found) == 1, (name, rule, found)
    return found[0]


# --------------------------------------------------------------------------------------------
# clean data


def test_clean_data_is_good_with_every_rule_judged():
    v = verdict("clean")
    assert v.level == "good", v.reasons()
    assert v.reasons() == []
    assert all(f.level == "good" for f in v.findings)
    (b,) = v.bins
    assert b.level == "good"
    assert {f.rule for f in b.findings} == {"contrast", "signal_to_noise", "decay_window",
                                            "stationarity"}
    assert {f.rule for f in v.findings} == {"intensity_drift"}
    # the judged numbers are the simulated ones
    assert in_bin("clean", "contrast").value == pytest.approx(0.25, abs=0.02)
    assert in_bin("clean", "decay_window").value == pytest.approx(20 * FRAME_TIME, rel=0.1)


# --------------------------------------------------------------------------------------------
# per-bin rules


@pytest.mark.parametrize("name, level, beta", [("contrast_bad", "bad", 0.005),
                                               ("contrast_marginal", "marginal", 0.035)])
def test_contrast(name, level, beta):
    f = in_bin(name, "contrast")
    assert f.level == level, f
    assert f.value == pytest.approx(beta, abs=0.004)
    assert "contrast" in f.message and f.action
    assert verdict(name).bins[0].level == level
    assert in_bin("clean", "contrast").level == "good"


def test_contrast_thresholds():
    assert RULES.contrast_bad < 0.035 < RULES.contrast_marginal
    assert 0.005 < RULES.contrast_bad


def _bin_counts(name):
    frames, result = run(name)
    return float(frames.mean()), frames.shape[1] * frames.shape[2], frames.shape[0]


def _fitted_tau_frames(name):
    return run(name)[1].fits[0].params["tau"] / FRAME_TIME


@pytest.mark.parametrize("name, level", [("snr_bad", "bad"), ("snr_marginal", "marginal")])
def test_signal_to_noise(name, level):
    f = in_bin(name, "signal_to_noise")
    assert f.level == level, f
    assert f.action
    # the judged value is the noise model's, with the measured contrast, counts and tau
    beta = in_bin(name, "contrast").value
    counts, n_pix, n_frames = _bin_counts(name)
    assert f.value == pytest.approx(
        expected_snr(beta, counts, n_pix, n_frames, _fitted_tau_frames(name)), rel=1e-6)
    assert f"{n_pix} pixels, {n_frames} frames" in f.message
    good = in_bin("clean", "signal_to_noise")
    assert good.level == "good" and good.value > RULES.snr_marginal


def test_snr_of_the_clean_run_and_of_a_curve_without_fit():
    counts, n_pix, n_frames = _bin_counts("clean")
    beta = in_bin("clean", "contrast").value
    assert in_bin("clean", "signal_to_noise").value == pytest.approx(
        expected_snr(beta, counts, n_pix, n_frames, _fitted_tau_frames("clean")), rel=1e-6)
    # a fit that levels off describes a wiggle, not the decay: the run length stands in for tau
    assert "levels off" in in_bin("too_slow", "decay_window").message
    beta = in_bin("too_slow", "contrast").value
    counts, n_pix, n_frames = _bin_counts("too_slow")
    assert in_bin("too_slow", "signal_to_noise").value == pytest.approx(
        expected_snr(beta, counts, n_pix, n_frames, None), rel=1e-6)


@pytest.mark.parametrize("name", ["too_fast", "too_fast_fitted"])
def test_decay_window_too_fast(name):
    f = in_bin(name, "decay_window")
    assert f.level == "bad", f
    assert "shorter frame time" in f.action
    if name == "too_fast_fitted":
        assert f.value < RULES.min_frames_per_tau * FRAME_TIME
        assert "faster than" in f.message
    else:
        assert "before the first lag" in f.message


@pytest.mark.parametrize("name", ["too_slow", "too_slow_fitted"])
def test_decay_window_too_slow(name):
    f = in_bin(name, "decay_window")
    assert f.level == "bad", f
    assert "longer" in f.action
    frames, _ = run(name)
    if name == "too_slow_fitted":
        assert f.value > 0.5 * len(frames) * FRAME_TIME
        assert "longer than half the run" in f.message
    else:
        # depending on the noise the fit fails (no decay seen) or finds a time far too long
        assert "does not decay" in f.message or "longer than half the run" in f.message


def test_decay_window_marginal():
    f = in_bin("window_marginal", "decay_window")
    assert f.level == "marginal", f
    total = 1000 * FRAME_TIME
    assert RULES.max_fraction_of_run * total < f.value < 0.5 * total
    assert f.action
    good = in_bin("clean", "decay_window")
    assert good.level == "good"


def test_dark_bin_is_bad_and_named():
    v = verdict("dark_bin")
    assert v.bins[0].level == "good"
    assert v.bins[1].level == "bad"
    assert in_bin("dark_bin", "contrast", 1).level == "bad"
    assert in_bin("dark_bin", "decay_window", 1).level == "bad"
    assert v.level == "marginal"


# --------------------------------------------------------------------------------------------
# whole-measurement rules


@pytest.mark.parametrize("name, level, n", [("empty_few", "marginal", 3),
                                            ("empty_many", "bad", 30)])
def test_empty_frames(name, level, n):
    (f,) = whole_run(name, "empty_frames")
    assert f.level == level and f.value == n
    assert "100" in f.message and f.action
    assert whole_run("clean", "empty_frames") == []


@pytest.mark.parametrize("name, level, n", [("saturated_few", "marginal", 3),
                                            ("saturated_many", "bad", 30)])
def test_saturated_frames(name, level, n):
    (f,) = whole_run(name, "saturated_frames")
    assert f.level == level and f.value == n
    assert "[100," in f.message and f.action
    assert whole_run("clean", "saturated_frames") == []


def test_isolated_saturated_frames_are_not_a_drift():
    (f,) = whole_run("saturated_few", "intensity_drift")
    assert f.level == "good", f


@pytest.mark.parametrize("name, level, drift", [("drift_bad", "bad", 0.4 / 1.2),
                                                ("drift_marginal", "marginal", 0.1 / 1.05)])
def test_intensity_drift(name, level, drift):
    (f,) = whole_run(name, "intensity_drift")
    assert f.level == level, f
    assert f.value == pytest.approx(drift, abs=0.03)
    assert f.action
    (good,) = whole_run("clean", "intensity_drift")
    assert good.level == "good" and good.value < RULES.drift_marginal


def test_photon_noise_is_not_a_drift():
    (f,) = whole_run("noisy_no_drift", "intensity_drift")
    assert f.level == "good", f


def test_intensity_jump():
    (f,) = whole_run("jump", "intensity_jumps")
    assert f.level == "marginal"
    assert f.value == pytest.approx(0.3, abs=0.08)
    where = int(f.message.rsplit("frame", 1)[1])
    assert abs(where - STEP_FRAME) <= 25, f.message
    assert f.action
    # no jump reported on steady data, nor on a smooth ramp
    for name in ("clean", "stationary", "drift_bad", "drift_marginal"):
        assert whole_run(name, "intensity_jumps") == [], name


def test_stationarity():
    f = in_bin("ageing", "stationarity")
    assert f.level in ("marginal", "bad"), f
    assert f.value > RULES.stationarity_marginal
    assert f.action
    assert verdict("ageing").level in ("marginal", "bad")
    for name in ("stationary", "clean"):
        good = in_bin(name, "stationarity")
        assert good.level == "good", good
    assert verdict("stationary").level == "good", verdict("stationary").reasons()


# --------------------------------------------------------------------------------------------
# overall level, actions, serialisation


def test_bad_bin_next_to_good_bin_makes_the_run_marginal():
    v = verdict("bad_bin_next_to_good")
    assert [b.level for b in v.bins] == ["good", "bad"]
    assert in_bin("bad_bin_next_to_good", "contrast", 1).level == "bad"
    assert v.level == "marginal"
    assert "1 of 2" in v.summary


@pytest.mark.parametrize("name", ["empty_many", "saturated_many", "drift_bad"])
def test_whole_run_bad_finding_makes_the_run_bad(name):
    v = verdict(name)
    assert any(f.level == "bad" for f in v.findings)
    assert v.level == "bad"


def test_bad_bins_only_make_the_run_bad():
    for name in ("contrast_bad", "too_fast", "too_slow"):
        assert verdict(name).level == "bad", name


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_problem_has_an_action_and_the_verdict_is_json(name):
    v = verdict(name)
    findings = v.findings + [f for b in v.bins for f in b.findings]
    for f in findings:
        assert f.level in ("good", "marginal", "bad")
        if f.level != "good":
            assert f.action.strip(), f
            assert f.message.strip(), f
    assert len(v.reasons()) == sum(f.level != "good" for f in findings)
    text = json.dumps(v.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["level"] == v.level
    assert len(back["bins"]) == len(v.bins)


def test_masked_pixels_rule_reports_regions_on_the_beamstop():
    shape = (40, 40)
    mean = np.full(shape, 3.0)
    mean[:, :16] = 0.0  # a beamstop shadow over 40 % of the region
    ds = ou_speckle(400, shape, 10, beta=0.25, mean_counts=mean, seed=5, frame_time=1e-3)
    res = analyze(ds, rectangles(shape, ["0:40,0:40"]),
                  XpcsOptions(device="cpu", twotime=False))
    found = [f for f in res.verdict.findings if f.rule == "masked_pixels"]
    assert found and found[0].level == "marginal" and found[0].action
    assert res.parameters["masked_pixels"]["dead"] == 40 * 16
    # the beamstop does not dilute g2: the contrast of the lit part is recovered
    assert res.g2.g2[0, 0] == pytest.approx(1 + 0.25 * np.exp(-2 / 10), abs=0.03)


# --------------------------------------------------------------------------------------------
# what to read first: conclusion, action, problems grouped by kind


def _finding(rule, level, kind="", label="", action="do something"):
    return Finding(rule, level, f"{label}: {rule} is {level}", action, 1.0, kind)


def test_problems_group_bins_by_kind_and_rank_by_level_then_reach():
    labels = [f"q{i}" for i in range(5)]
    bins = []
    for i, label in enumerate(labels):
        found = [_finding("contrast", "good", label=label)]
        if i < 3:  # three bins too noisy (marginal)
            found.append(_finding("signal_to_noise", "marginal", NOISY, label, "count longer"))
        if i == 4:  # one bin decays too fast (bad)
            found.append(_finding("decay_window", "bad", TOO_FAST, label, "shorter frames"))
        bins.append(BinVerdict(i + 1, label, "good", found))
    glob = [Finding("intensity_drift", "marginal", "intensity changes by 7%", "normalise", 0.07)]
    v = Verdict("marginal", "summary words", glob, bins, "ring")
    problems = v.problems()
    # bad before marginal; among marginal ones the whole-run drift (all 5 rings) before 3 rings
    assert [p.rule for p in problems] == ["decay_window", "intensity_drift", "signal_to_noise"]
    assert problems[0].headline == f"1 of 5 rings (q4): {TOO_FAST}"
    assert problems[1].headline == "intensity changes by 7%" and problems[1].labels == []
    assert problems[2].headline == f"3 of 5 rings: {NOISY}"
    assert problems[2].labels == ["q0", "q1", "q2"] and len(problems[2].findings) == 3
    assert v.conclusion == f"1 of 5 rings (q4): {TOO_FAST}; 2 more problems"
    assert v.action == "shorter frames"
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["conclusion"] == v.conclusion and d["action"] == v.action
    assert [p["headline"] for p in d["problems"]] == [p.headline for p in problems]
    # the old interface is unchanged
    assert len(v.reasons()) == 5 and d["level"] == "marginal" and len(d["bins"]) == 5


def test_equal_problems_follow_the_priority_of_rules():
    bins = [BinVerdict(1, "a", "marginal", [_finding("stationarity", "marginal", CHANGING, "a"),
                                            _finding("contrast", "marginal", LOW_CONTRAST, "a")])]
    v = Verdict("marginal", "s", [], bins, "region")
    assert [p.rule for p in v.problems()] == ["contrast", "stationarity"]
    assert PRIORITY.index("contrast") < PRIORITY.index("stationarity")
    # a single bin is not counted
    assert v.problems()[0].headline == "Low speckle contrast"


def test_clean_data_conclude_fine_with_no_action():
    v = verdict("clean")
    assert v.problems() == []
    assert v.conclusion == v.summary and v.conclusion.startswith("Good data")
    assert v.action == ""
    assert v.to_dict()["action"] == ""


def test_simulated_bad_bin_leads_the_conclusion():
    v = verdict("bad_bin_next_to_good")
    assert v.noun == "region"
    assert v.conclusion.startswith(f"1 of 2 regions ({v.bins[1].label}): {NO_CONTRAST}")
    assert "coherence" in v.action


def test_slow_decay_in_every_region_is_one_problem():
    frames = _frames(500, (32, 32), 20000, 0.25, 2.0, seed=8)
    part = rectangles((32, 32), ["0:16,0:16", "0:16,16:32", "16:32,0:16", "16:32,16:32"])
    res = analyze(ArrayDataset(frames, Metadata(frame_time=FRAME_TIME)), part,
                  XpcsOptions(device="cpu", twotime=False))
    v = res.verdict
    assert v.level == "bad"
    first = v.problems()[0]
    assert first.headline == f"All 4 regions: {TOO_SLOW}", v.problems()
    assert first.level == "bad" and len(first.findings) == 4
    assert v.conclusion.startswith(first.headline)
    assert "longer" in v.action
