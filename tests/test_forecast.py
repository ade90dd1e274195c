"""How much longer to count (speckle.xpcs.forecast), checked against analyses of longer
simulated runs: the run length forecast from a short run must give, when simulated and analysed,
the promised g2 signal-to-noise (within 30 %) and a decay inside the run."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest

from speckle.xpcs.analysis import XpcsOptions, analyze
from speckle.xpcs.forecast import DECAY_MARGIN, count_forecast
from speckle.xpcs.partitions import rectangles
from speckle.xpcs.simulate import ou_speckle
from speckle.xpcs.verdict import Rules

FRAME_TIME = 2e-3
RULES = Rules()


def _analyse(n_frames, side, tau, beta, counts, seed):
    ds = ou_speckle(n_frames, (side, side), tau, beta, counts, seed=seed, frame_time=FRAME_TIME)
    return analyze(ds, rectangles((side, side), [f"0:{side},0:{side}"]),
                   XpcsOptions(device="cpu", twotime=False))


@cache
def _short(n_frames, side, tau, beta, counts):
    return _analyse(n_frames, side, tau, beta, counts, seed=5)


def _forecast(*case):
    return _short(*case).verdict.bins[0].forecast


# (frames of the short run, region side, tau in frames, beta, counts per pixel per frame)
SHOT_NOISE = (300, 32, 20.0, 0.2, 0.05)
SPECKLE_NOISE = (100, 6, 30.0, 0.1, 5.0)  # few pixels, bright: the speckle itself is the noise


@pytest.mark.parametrize("case", [SHOT_NOISE, SPECKLE_NOISE], ids=["shot", "speckle"])
def test_forecast_frames_give_the_promised_signal_to_noise(case):
    n0, side, tau, beta, counts = case
    f = _forecast(*case)
    assert f.snr < RULES.snr_marginal, f  # the short run is too noisy
    assert f.frames_for_snr > 2 * n0 and f.more_frames == f.frames_needed - n0
    assert f.seconds_needed == pytest.approx(f.frames_needed * FRAME_TIME)
    # analyse 30 independent runs of the forecast length; the signal-to-noise they achieve is
    # the true first-lag correlation over the scatter of the measured one
    g2 = [_analyse(f.frames_for_snr, side, tau, beta, counts, seed=100 + k).g2.g2[0, 0]
          for k in range(30)]
    achieved = beta * math.exp(-2 / tau) / np.std(g2, ddof=1)
    assert achieved == pytest.approx(RULES.snr_marginal, rel=0.3), (f, achieved)


def test_forecast_frames_bring_the_decay_inside_the_run():
    case = (400, 16, 60.0, 0.2, 0.5)  # tau = 15 % of the run: marginal
    short = _short(*case)
    (decay,) = [x for x in short.verdict.bins[0].findings if x.rule == "decay_window"]
    assert decay.level == "marginal", decay
    f = short.verdict.bins[0].forecast
    fit = short.fits[0]
    upper = max(DECAY_MARGIN * fit.params["tau"], fit.params["tau"] + 2 * fit.errors["tau"])
    expected = math.ceil(upper / FRAME_TIME / RULES.max_fraction_of_run)
    assert f.frames_for_decay == expected and f.frames_needed == expected
    assert "the decay inside the run" in f.note and f"{expected:,} frames" in f.note
    # what the truth needs (tau = 60 frames, 10 % of the run: 600 frames), with the margin
    assert 600 <= expected <= 1.3 * 1.3 * 600
    # ten independent runs of that length all see the decay inside the run
    for k in range(10):
        longer = _analyse(f.frames_needed, *case[1:], seed=200 + k)
        (decay,) = [x for x in longer.verdict.bins[0].findings if x.rule == "decay_window"]
        assert decay.level == "good", decay
    assert longer.verdict.bins[0].forecast.more_frames == 0
    assert longer.verdict.bins[0].forecast.note == "long enough"


def test_a_decay_not_seen_yet_gives_a_lower_bound():
    res = _analyse(500, 16, 20000.0, 0.25, 2.0, seed=8)
    f = res.verdict.bins[0].forecast
    assert f.decay_lower_bound
    assert f.frames_for_decay == 500 * 5  # tau is at least half the run
    assert f.note.startswith("count at least 2,500 frames")
    assert "at least 2,500 frames" in res.verdict.action


@pytest.mark.parametrize("case, words", [
    ((1000, 16, 1.0, 0.25, 5.0), "shorter frame time"),     # decays within a frame or two
    ((500, 16, 20.0, 0.005, 50.0), "coherence"),            # no speckle contrast
])
def test_counting_longer_is_not_offered_when_it_cannot_help(case, words):
    f = _forecast(*case)
    assert f.frames_needed is None and f.more_frames is None and f.seconds_needed is None
    assert words in f.note and "does not help" in f.note


def test_a_flat_noisy_g2_may_hide_its_decay():
    common = {"beta": 0.2, "n_pixels": 256, "n_frames": 100, "frame_time": 1e-3, "tau": None,
              "tau_err": None, "decay": "unseen"}
    noisy = count_forecast(1, "a", counts=0.02, **common)
    assert noisy.frames_needed == noisy.frames_for_snr > 100
    assert "no decay is seen yet" in noisy.note and "shorter frame time" in noisy.note
    clear = count_forecast(1, "a", counts=5.0, **common)
    assert clear.frames_needed is None and "faster than a frame" in clear.note
    with pytest.raises(ValueError):
        count_forecast(1, "a", counts=1.0, **{**common, "decay": "sideways"})


def test_the_verdict_action_counts_and_the_forecast_is_in_json():
    res = _short(*SHOT_NOISE)
    v = res.verdict
    f = v.bins[0].forecast
    assert v.problems()[0].rule == "signal_to_noise"
    assert v.action.startswith(f"count longer: {f.frames_needed:,} frames in all")
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["bins"][0]["forecast"]["frames_needed"] == f.frames_needed
    assert d["bins"][0]["forecast"]["note"] == f.note


def test_the_result_file_keeps_the_conclusion_action_and_forecast(tmp_path):
    import h5py

    from speckle.io.aps_result import write_aps_result

    res = _short(*SHOT_NOISE)
    write_aps_result(res, tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        saved = json.loads(f["/xpcs/speckle/verdict"][()])
    v = res.verdict
    assert saved["conclusion"] == v.conclusion and saved["action"] == v.action
    assert saved["bins"][0]["forecast"]["frames_needed"] == v.bins[0].forecast.frames_needed
    assert [p["headline"] for p in saved["problems"]] == [p.headline for p in v.problems()]
