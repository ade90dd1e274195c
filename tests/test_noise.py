"""The expected noise of g2 at the first lag (speckle.xpcs.noise): analytic limits, and the
scatter of g2 over many independent simulated runs analysed as users analyse theirs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speckle.xpcs.analysis import XpcsOptions, analyze
from speckle.xpcs.noise import _fejer_sum, expected_snr, frames_for_snr, g2_noise
from speckle.xpcs.partitions import rectangles
from speckle.xpcs.simulate import ou_speckle

SHAPE = (32, 32)
N_PIX = SHAPE[0] * SHAPE[1]


@pytest.mark.parametrize("m", [0.01, 0.7, 30.0])
def test_without_speckle_the_error_is_pure_poisson(m):
    # beta = 0: Y_t = (c_t - m)(c_{t+1} - m) - m^2 has variance m^2 and no correlation between
    # neighbours, so the error of g2 is 1 / (m sqrt(N (T - 1))) whatever the counts
    for n_frames in (2, 101, 5000):
        assert g2_noise(m, 0.0, 20.0, 400, n_frames) == pytest.approx(
            1 / (m * math.sqrt(400 * (n_frames - 1))), rel=1e-9)


@pytest.mark.parametrize("beta, tau", [(0.2, 30.0), (0.5, 3.0), (1.0, 1000.0)])
def test_low_counts_tend_to_the_shot_noise_limit(beta, tau):
    # only the product of two Poisson counts fluctuates: var(c c') = m^2 g2(1)
    m, n_frames = 1e-5, 1000
    c1 = beta * math.exp(-2 / tau)
    limit = c1 * m * math.sqrt(N_PIX * (n_frames - 1)) / math.sqrt(1 + c1)
    assert expected_snr(beta, m, N_PIX, n_frames, tau) == pytest.approx(limit, rel=1e-3)


def test_a_frozen_speckle_pattern_is_not_averaged_by_counting_longer():
    # at high counts the noise is the speckle itself; with tau far beyond the run, ten times
    # more frames show the same pattern and gain little, while a fast decay gains sqrt(10)
    slow = [expected_snr(0.3, 100.0, N_PIX, t, 1e9) for t in (10_000, 100_000)]
    fast = [expected_snr(0.3, 100.0, N_PIX, t, 3.0) for t in (10_000, 100_000)]
    assert slow[1] / slow[0] < 1.1
    assert fast[1] / fast[0] == pytest.approx(math.sqrt(10), rel=0.01)


@pytest.mark.parametrize("x", [0.0, 0.3, 0.99, 1 - 1e-7, 1 - 1e-12])
@pytest.mark.parametrize("p", [2, 7, 1000])
def test_closed_form_sum_of_the_autocovariance(x, p):
    d = np.arange(1, p)
    assert _fejer_sum(x, p) == pytest.approx(np.sum((1 - d / p) * x ** d), rel=1e-7, abs=1e-12)


def test_frames_for_snr_is_the_first_run_length_that_reaches_it():
    n = frames_for_snr(10, 0.2, 0.05, 1000, 40.0)
    assert expected_snr(0.2, 0.05, 1000, n, 40.0) >= 10 > expected_snr(0.2, 0.05, 1000, n - 1, 40.0)
    assert frames_for_snr(10, 0.0, 0.05, 1000, 40.0) is None
    assert frames_for_snr(10, 0.2, 0.0, 1000, 40.0) is None
    # a bin already good needs no more than it has
    assert frames_for_snr(10, 0.25, 2.0, 2304, 20.0) < 100


def _scatter_snr(counts, beta, tau, n_frames, runs, seed):
    """Signal-to-noise of g2 at the first lag achieved over independent simulated runs."""
    g2 = []
    for k in range(runs):
        ds = ou_speckle(n_frames, SHAPE, tau, beta, counts, seed=seed + k, frame_time=1e-3)
        res = analyze(ds, rectangles(SHAPE, ["0:32,0:32"]), XpcsOptions(device="cpu",
                                                                           twotime=False))
        g2.append(res.g2.g2[0, 0])
    return beta * math.exp(-2 / tau) / np.std(g2, ddof=1)


@pytest.mark.parametrize("counts, beta, tau", [
    (0.02, 0.3, 30.0),   # shot noise
    (2.0, 0.2, 30.0),    # speckle noise, slow: Jakeman's low-count form said 289 instead of ~90
    (2.0, 0.2, 5.0),     # speckle noise, fast
])
def test_expected_snr_matches_the_scatter_of_simulated_runs(counts, beta, tau):
    achieved = _scatter_snr(counts, beta, tau, 1000, runs=30, seed=1000)
    predicted = expected_snr(beta, counts, N_PIX, 1000, tau)
    # 30 runs measure a standard deviation to about 13 %
    assert predicted == pytest.approx(achieved, rel=0.25), (predicted, achieved)
