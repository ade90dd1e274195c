"""How noisy is g2 at the first lag? The expected signal-to-noise of an XPCS measurement.

The estimator is the one the correlators compute at a lag of one frame,
``g2 = <c(t) c(t+1)> / (<c(t)> <c(t+1)>)``, averaged over the ``T - 1`` frame pairs and the
``N`` pixels of a bin. Its variance follows from the moments of the photon counts ``c``:

- counts are Poisson given the intensity ``λ`` (``E[c²|λ] = λ² + λ``);
- the intensity is speckle of contrast β on a flat part, ``λ = m (1 - √β + √β |E|²)``, with
  ``E`` a circular complex Gaussian field whose correlation is ``g1(t) = exp(-t/τ)`` (the model
  of :mod:`speckle.xpcs.simulate`), so that ``g2(t) = 1 + β g1(t)²``. Moments of ``|E|²`` at
  several times are permanents of the matrix of ``g1`` between those times (Gaussian moment
  theorem);
- to first order in the fluctuations (delta method) the error of g2 is that of the mean of
  ``Y_t = c_t c_{t+1} - (1 + c₁) m (c_t + c_{t+1})``, ``c₁ = β g1(1)²``, divided by ``m²``; the
  variance of a mean of ``P`` correlated terms is ``(1/P) Σ_d (1 - |d|/P) γ(d)`` with ``γ`` the
  autocovariance of ``Y``. For ``d ≥ 2`` the four times are distinct and ``γ(d)`` is
  ``a₂ u² + a₄ u⁴`` with ``u = exp(-d/τ)``, so the sum has a closed form for any run length.

Pixels are taken as independent (speckle no larger than a pixel; larger speckle gives fewer
independent pixels and a lower signal-to-noise). Limits, checked in the tests: without speckle
(β = 0) the error is exactly ``1 / (m sqrt(N (T - 1)))``; at low counts the signal-to-noise tends
to ``c₁ m sqrt(N (T - 1)) / sqrt(1 + c₁)`` (shot noise only, Jakeman's low-count limit); at high
counts the speckle itself is the noise and only ``T/τ`` independent speckle patterns average it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter

import numpy as np

__all__ = ["expected_snr", "frames_for_snr", "g2_noise"]


def _permanent(m):
    """The permanent of a small square matrix (lists): closed forms up to 3 x 3, expansion
    along the first row above (the moments here need at most 4 x 4)."""
    k = len(m)
    if k == 1:
        return m[0][0]
    if k == 2:
        return m[0][0] * m[1][1] + m[0][1] * m[1][0]
    if k == 3:
        return (m[0][0] * (m[1][1] * m[2][2] + m[1][2] * m[2][1])
                + m[0][1] * (m[1][0] * m[2][2] + m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] + m[1][1] * m[2][0]))
    return sum(m[0][j] * _permanent([row[:j] + row[j + 1:] for row in m[1:]]) for j in range(k))


def _intensity_moment(labels, corr, beta, memo):
    """``E[Π λ(t_i)] / m^k`` for a list of time labels (repeats allowed), ``corr[i][j]`` the
    field correlation between labels; ``memo`` keeps the values for this ``corr`` by the labels
    in order (the moment does not depend on it)."""
    key = tuple(sorted(labels))
    if key in memo:
        return memo[key]
    b = math.sqrt(beta)
    a = 1.0 - b
    k = len(labels)
    total = 0
    for r in range(k + 1):
        for sub in itertools.combinations(key, r):
            speckle = _permanent([[corr[i][j] for j in sub] for i in sub]) if r else 1.0
            total = total + a ** (k - r) * b ** r * speckle
    memo[key] = total
    return total


def _count_moment(labels, corr, m, beta, memo):
    """``E[Π c(t_i)]`` for Poisson counts; equal labels are the same frame (``memo``: as for
    :func:`_intensity_moment`)."""
    options = [[[t]] if n == 1 else [[t, t], [t]] for t, n in Counter(labels).items()]
    total = 0
    for choice in itertools.product(*options):
        times = [t for part in choice for t in part]
        total = total + m ** len(times) * _intensity_moment(times, corr, beta, memo)
    return total


@functools.lru_cache(maxsize=1024)
def _autocovariance(m, beta, tau_frames):
    """``γ(0)``, ``γ(1)`` and the coefficients of ``u²`` and ``u⁴`` in ``γ(d ≥ 2)``,
    ``u = exp(-d/τ)`` (the only powers: a correlation that links frames 0, 1 to d, d + 1 enters
    a permanent an even number of times)."""
    r = math.exp(-1.0 / tau_frames)
    k = (1 + beta * r * r) * m
    terms = [((0, 1), 1.0), ((0,), -k), ((1,), -k)]

    def covariance(shift, corr, memo):
        second = sum(wa * wb * _count_moment(list(ta) + [shift(t) for t in tb], corr, m, beta,
                                             memo)
                     for ta, wa in terms for tb, wb in terms)
        return second - mean ** 2

    # the correlations between labels, as matrices: frames 0 .. 3 in a row ...
    frames = [[math.exp(-abs(i - j) / tau_frames) for j in range(4)] for i in range(4)]

    def generic(u):
        # ... and frames 0, 1 and d, d + 1 (labels 2, 3): correlations 1, r, u, u r, u / r
        cross = {(0, 2): u, (0, 3): u * r, (1, 2): u / r, (1, 3): u}
        return [[(1.0, r)[abs(i - j)] if (i < 2) == (j < 2) else cross[(min(i, j), max(i, j))]
                 for j in range(4)] for i in range(4)]

    in_a_row = {}  # the moments for ``frames``, shared
    mean = _count_moment([0, 1], frames, m, beta, in_a_row) - 2 * k * m
    g0 = covariance(lambda t: t, frames, in_a_row)
    g1 = covariance(lambda t: t + 1, frames, in_a_row)
    at_one, at_half = (covariance(lambda t: t + 2, generic(u), {}) for u in (1.0, 0.5))
    # at_one = a2 + a4, at_half = a2 / 4 + a4 / 16
    a4 = (at_one - 4 * at_half) / (1 - 4 / 16)
    return g0, g1, at_one - a4, a4


def _fejer_sum(x: float, p: int) -> float:
    """``Σ_{d=1}^{p-1} (1 - d/p) x^d`` for 0 <= x < 1, stable for x near 1."""
    eps = -math.log(x) if x > 0 else math.inf
    if p * eps < 1e-4:
        return (p - 1) / 2 - eps * (p * p - 1) / 6
    one_minus = -math.expm1(-eps)
    tail = x * (-math.expm1(-(p - 1) * eps)) / one_minus if x > 0 else 0.0
    return x / one_minus * ((p - 1) - tail) / p


class _Model:
    """The variance of g2 at the first lag for one bin, as a function of the run length."""

    def __init__(self, counts, beta, tau_frames, n_pixels):
        self.m = float(counts)
        self.beta = min(max(float(beta), 0.0), 1.0)
        self.tau = float(tau_frames)
        self.n = int(n_pixels)
        self.signal = self.beta * math.exp(-2.0 / self.tau)
        self.g0, self.g1, a2, a4 = _autocovariance(self.m, self.beta, self.tau)
        self.coef = [(2, a2), (4, a4)]

    def error(self, n_frames) -> float:
        p = max(int(n_frames) - 1, 1)
        total = self.g0
        if p > 1:
            total += 2 * (1 - 1 / p) * self.g1
            for j, c in self.coef:
                x = math.exp(-j / self.tau)
                total += 2 * c * (_fejer_sum(x, p) - (1 - 1 / p) * x)
        return math.sqrt(max(total, 0.0) / p / self.n) / self.m ** 2

    def snr(self, n_frames) -> float:
        return self.signal / self.error(n_frames)


def _model(counts, beta, tau_frames, n_pixels, n_frames):
    if not (counts > 0 and n_pixels > 0):
        return None
    tau = tau_frames if tau_frames is not None and np.isfinite(tau_frames) else n_frames
    return _Model(counts, beta, max(float(tau), 1e-3), n_pixels)


def g2_noise(counts: float, beta: float, tau_frames: float | None, n_pixels: int,
             n_frames: int) -> float:
    """Expected standard error of g2 at a lag of one frame (see the module docstring).

    Parameters
    ----------
    counts : float
        Mean photon counts per pixel per frame.
    beta : float
        Speckle contrast (clipped to [0, 1]).
    tau_frames : float or None
        Field correlation time in frames; None (not measured) takes the run length.
    n_pixels : int
        Pixels of the bin.
    n_frames : int
        Frames of the run.

    Returns
    -------
    float
        inf when there is no count.
    """
    model = _model(counts, beta, tau_frames, n_pixels, n_frames)
    return math.inf if model is None else model.error(n_frames)


def expected_snr(beta: float, counts: float, n_pixels: int, n_frames: int,
                 tau_frames: float | None = None) -> float:
    """Expected signal-to-noise of g2 at a lag of one frame: ``β g1(1)² / error``.

    Parameters are those of :func:`g2_noise`. Returns 0 without contrast or counts.
    """
    model = _model(counts, beta, tau_frames, n_pixels, n_frames)
    return 0.0 if model is None else model.snr(n_frames)


def frames_for_snr(target: float, beta: float, counts: float, n_pixels: int,
                   tau_frames: float | None, *, n_frames: int | None = None,
                   max_frames: int = 10**9) -> int | None:
    """The fewest frames at this count rate for a g2 signal-to-noise of ``target``.

    Parameters
    ----------
    target : float
    beta, counts, n_pixels, tau_frames
        As for :func:`g2_noise`.
    n_frames : int, optional
        Frames of the measured run (stands in for an unknown ``tau_frames``).
    max_frames : int
        Give up beyond this many frames.

    Returns
    -------
    int or None
        None when even ``max_frames`` would not do (no contrast, no counts).
    """
    model = _model(counts, beta, tau_frames, n_pixels, n_frames or max_frames)
    if model is None or model.signal <= 0 or model.snr(max_frames) < target:
        return None
    lo, hi = 1, 2
    while model.snr(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if model.snr(mid) < target else (lo, mid)
    return hi
