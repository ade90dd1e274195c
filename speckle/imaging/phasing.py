"""CDI phase retrieval: ER, HIO, RAAR and difference map with shrink-wrap, trials and averaging.

One code path for numpy (CPU) and cupy (GPU), in single precision (complex64).

Conventions
-----------
- The intensity is centred (zero frequency at ``(rows // 2, cols // 2)``); objects, supports
  and the returned reconstruction are images in array coordinates, the result centred on its
  centre of mass. The forward FFT is unnormalised, so ``|fft2(object)|`` matches ``sqrt(I)``.
- ``mask`` True marks an unmeasured detector pixel (beamstop, gap, saturated). Such pixels are
  *free*: the modulus projection keeps the current Fourier modulus there and they do not
  count in the error. Non-finite intensities are masked the same way; negative ones
  (background over-subtracted) are clipped to zero and kept as measured. Zero is a valid
  measurement (a counting detector at high q): mark beamstops and gaps in ``mask``.
- The Fourier error of iteration k is ``sqrt(Σ (|F|−sqrt(I))² / Σ I)`` over measured pixels,
  with F the transform of the iterate entering the modulus projection.
- With a ``floor`` (:mod:`speckle.imaging.floor`: a smooth background that may lie under the
  speckle), the modulus projection brings |F| into ``[sqrt(I − floor), sqrt(I)]`` (the
  nearest point of that interval, a projection too) instead of onto ``sqrt(I)``; the errors
  are still measured against ``sqrt(I)``.

Algorithms, with P_M the modulus and P_S the support projection (support, optionally real or
real and non-negative) and β = ``options.beta``:

- ER:    x ← P_S P_M x
- HIO:   x ← P_M x where no constraint is violated, x − β P_M x where one is (Fienup, Appl.
  Opt. 21, 2758, 1982). The violation set is the outside of the support, and with
  ``positivity`` also the pixels where Re P_M x < 0; with ``real`` or ``positivity`` the kept
  value is Re P_M x. (This is not Bauschke's HPR, x + P_S((1+β) P_M x − x) − β P_M x, which
  differs from it once positivity is imposed.)
- RAAR:  x ← β x + (1−2β) P_M x + β P_S(2 P_M x − x)  (Luke 2005)
- DM:    x ← x + β (P_S f_M − P_M f_S), f_M = (1+1/β) P_M x − x/β, f_S = (1−1/β) P_S x + x/β
  (Elser 2003); two Fourier projections per iteration unless β = 1; the estimate is P_S f_M.

Rounds and trials: every trial of the first round starts from random complex values (a
seeded generator) inside the initial support; a later round continues each trial from where
it stopped. After each round the trials are aligned (shift, twin, global
phase; :mod:`speckle.imaging.align`) to the best one (first round) or to the previous average,
and those with the lowest Fourier error (``options.keep``, all by default) are averaged.
Every trial has its own support: between rounds, shrink-wrap replaces it by the thresholded,
blurred magnitude of that trial's estimate. Trials thus stay independent (a trial stuck in
the twin-image superposition does not drag the others' support into it) and the average is
only what is reported.

:mod:`speckle.imaging.simulate` makes test data with a known answer.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..backend import array_module, asnumpy, get_xp
from ..errors import Cancelled, InvalidInputError
from .align import Alignment, align_mask, apply_alignment, find_alignment
from .resolution import frc, prtf
from .support import fft_module, shrink_wrap, support_from_autocorrelation

__all__ = ["ALGORITHMS", "PhasingOptions", "PhasingResult", "TRIAL_SPREAD_LIMIT",
           "describe_trial_spread", "parse_schedule", "phase_retrieval", "trial_spread"]

ALGORITHMS = ("ER", "HIO", "RAAR", "DM")
MAX_ITERATIONS = 10_000_000  # all rounds × schedule; a typo like 1e9 iterations is refused
_TINY = np.float32(1e-30)  # added to |F| in the modulus ratio: |F| = 0 gives F·ratio = 0
_IDENTITY = Alignment(shift=(0.0, 0.0), twin=False, phase=0.0)

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z]+)|(\*)|(\+)|(\()|(\)))")


# -- schedules ---------------------------------------------------------------------------------

class _ScheduleParser:
    """Recursive descent over ``term ('+' term)*``, ``term = [N '*'] (ALG | '(' ... ')')``."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = []  # (kind, value, position)
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                self.fail(f"unexpected {text[pos:].strip()[:12]!r}")
            kind = m.lastindex
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, problem: str):
        raise InvalidInputError(
            f"cannot read the phasing schedule {self.text!r}: {problem}; write it like "
            f"'20*ER + 180*HIO' or '3*(20*ER + 80*HIO) + 20*ER' with algorithms "
            f"{', '.join(ALGORITHMS)}")

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None, len(self.text))

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def schedule(self) -> list[tuple[str, int]]:
        steps = self.term()
        while self.peek()[0] == 4:  # '+'
            self.take()
            steps += self.term()
        return steps

    def term(self) -> list[tuple[str, int]]:
        count = 1
        kind, value, _ = self.peek()
        if kind == 1:  # a count
            self.take()
            count = int(value)
            if count < 1:
                self.fail(f"the count {value} must be at least 1")
            if self.take()[0] != 3:
                self.fail(f"expected '*' after {value}")
            kind, value, _ = self.peek()
        if kind == 5:  # '('
            self.take()
            inner = self.schedule()
            if self.take()[0] != 6:
                self.fail("a '(' is not closed")
            return inner * count
        if kind == 2:
            self.take()
            name = value.upper()
            if name not in ALGORITHMS:
                self.fail(f"unknown algorithm {value!r}")
            return [(name, count)]
        self.fail("missing algorithm" if value is None else f"unexpected {value!r}")
        return []  # pragma: no cover - fail raises

    def parse(self) -> list[tuple[str, int]]:
        if not self.tokens:
            self.fail("it is empty")
        steps = self.schedule()
        if self.i < len(self.tokens):
            self.fail(f"unexpected {self.tokens[self.i][1]!r}")
        merged: list[tuple[str, int]] = []
        for name, n in steps:
            if merged and merged[-1][0] == name:
                merged[-1] = (name, merged[-1][1] + n)
            else:
                merged.append((name, n))
        if sum(n for _, n in merged) > MAX_ITERATIONS:
            self.fail(f"more than {MAX_ITERATIONS} iterations")
        return merged


def parse_schedule(text: str) -> list[tuple[str, int]]:
    """Parse a schedule such as ``"20*ER + 180*HIO"`` into ``[("ER", 20), ("HIO", 180)]``.

    Terms are ``N*ALG`` or ``ALG`` (once), joined by ``+``; ``N*( … )`` repeats a group.
    Algorithm names are case-insensitive; consecutive runs of one algorithm are merged.

    Raises
    ------
    InvalidInputError
        Naming the part that cannot be read.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"the phasing schedule must be text like '20*ER + 180*HIO', "
                                f"got {type(text).__name__}")
    return _ScheduleParser(text).parse()


# -- options and result ------------------------------------------------------------------------

@dataclass(frozen=True)
class PhasingOptions:
    """Parameters of :func:`phase_retrieval`, the phasing engine.

    The defaults are one round of one trial, a building block; the workflow's defaults, which
    converge on real data, are those of :class:`speckle.imaging.options.CdiOptions`.

    Attributes
    ----------
    schedule : str
        Iterations of one trial in one round, e.g. ``"99*HIO + 1*ER"`` (see
        :func:`parse_schedule`).
    rounds : int
        Rounds; shrink-wrap runs between them.
    trials : int
        Independent trials per round (random starts), aligned and averaged.
    keep : float
        Fraction of the trials averaged after each round: those whose estimate has the lowest
        Fourier error (1: all of them, as the original server did), and at least two when
        there are two (their agreement and the PRTF need them). Trials stuck in a wrong
        solution (twin superposition) have a clearly higher error.
    beta : float
        Feedback / relaxation parameter of HIO, RAAR and DM, in (0, 1].
    positivity : bool
        Object real and non-negative inside the support.
    real : bool
        Object real inside the support.
    average_last : int
        Each trial's result is the average of its estimates over its last ``average_last``
        iterations (0: the final iterate only; at most the second half of all iterations,
        while the first is converging), across rounds when it is longer than one (a trial
        keeps its frame from round to round; shrink-wrap only changes its support). At
        the noise floor the iterates scatter around the solution; averaging the last 50 HIO
        iterates halved the error against the truth in simulations, and averaging the last
        three rounds instead of the last one lowered the trial spread of the ALS CDI demo
        from 0.17-0.21 to 0.16-0.18 (the same four seeds).
    shrinkwrap : bool
        Update the support between rounds.
    shrinkwrap_sigma : float
        Gaussian blur (pixels) of the last shrink-wrap.
    shrinkwrap_sigma_start : float or None
        Blur of the first shrink-wrap; the blur then falls geometrically to
        ``shrinkwrap_sigma`` over the rounds (Marchesini et al. 2003: a wide blur first keeps the
        support loose while the phases settle, a narrow one at the end follows the object's
        edges). None: ``shrinkwrap_sigma`` throughout.
    shrinkwrap_threshold : float
        Fraction of the blurred maximum kept by the shrink-wrap.
    seed : int or None
        Seed of the random starting phases (None: different every run).
    device : {"auto", "cpu", "gpu"}
        Where to compute (a cupy pattern stays on its GPU).
    """

    schedule: str = "99*HIO + 1*ER"
    rounds: int = 1
    trials: int = 1
    keep: float = 1.0
    beta: float = 0.8
    positivity: bool = False
    real: bool = False
    average_last: int = 0
    shrinkwrap: bool = True
    shrinkwrap_sigma: float = 1.0
    shrinkwrap_sigma_start: float | None = None
    shrinkwrap_threshold: float = 0.1
    seed: int | None = None
    device: str = "auto"

    def shrinkwrap_blur(self, index: int) -> float:
        """Blur (pixels) of the shrink-wrap after round ``index`` (0-based)."""
        start, end = self.shrinkwrap_sigma_start, self.shrinkwrap_sigma
        wraps = self.rounds - 1
        if start is None or wraps <= 1 or start == end:
            return float(end)
        if min(start, end) <= 0:  # no geometric path through zero: a straight line
            return float(start + (end - start) * index / (wraps - 1))
        return float(start * (end / start) ** (index / (wraps - 1)))

    def steps(self) -> list[tuple[str, int]]:
        """The parsed schedule; raises InvalidInputError for a bad one or bad numbers."""
        steps = parse_schedule(self.schedule)
        for name, value, low in (("rounds", self.rounds, 1), ("trials", self.trials, 1),
                                 ("average_last", self.average_last, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise InvalidInputError(f"{name} must be a whole number ≥ {low}, got {value!r}")
        if not (isinstance(self.keep, (int, float)) and 0 < self.keep <= 1):
            raise InvalidInputError(f"keep is a fraction of the trials in (0, 1], got "
                                    f"{self.keep!r}")
        if not (isinstance(self.beta, (int, float)) and 0 < self.beta <= 1):
            raise InvalidInputError(f"beta must be in (0, 1], got {self.beta!r}")
        for sigma in (self.shrinkwrap_sigma, self.shrinkwrap_sigma_start):
            if sigma is not None and not (isinstance(sigma, (int, float)) and math.isfinite(sigma)
                                          and sigma >= 0):
                raise InvalidInputError("the shrink-wrap sigma must be zero or positive pixels, "
                                        f"got {sigma!r}")
        if not 0 < self.shrinkwrap_threshold < 1:
            raise InvalidInputError("the shrink-wrap threshold is a fraction of the maximum, "
                                    f"between 0 and 1; got {self.shrinkwrap_threshold}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise InvalidInputError(f"device must be auto, cpu or gpu, not {self.device!r}")
        if self.rounds * sum(n for _, n in steps) > MAX_ITERATIONS:
            raise InvalidInputError(f"more than {MAX_ITERATIONS} iterations per trial: use "
                                    "fewer rounds or a shorter schedule")
        return steps


@dataclass
class PhasingResult:
    """What :func:`phase_retrieval` returns (numpy arrays).

    Attributes
    ----------
    object : complex ndarray
        Average of the aligned trials of the last round, centred on its centre of mass.
    support : bool ndarray
        The last round's support of the best trial, moved into the frame of ``object``
        (twin inversion and the shift rounded to whole pixels).
    trials : list of complex ndarray
        The aligned trials of the last round (same frame).
    errors : ndarray
        Fourier error per iteration (all rounds in turn), averaged over the trials.
    prtf : (ndarray, ndarray) or None
        (q_fraction, values) of the phase retrieval transfer function of ``object``; None
        unless at least two independent estimates (kept trials from random starts) were
        averaged: a single estimate fits ``sqrt(I)`` by construction, so its PRTF is ≈ 1
        whatever its phases (even random ones) and says nothing about resolution.
    trial_errors : ndarray, (trials, iterations)
        Fourier error per trial and iteration.
    estimate_errors : ndarray, (trials,)
        Fourier error of each trial's final estimate (support-projected, in the support).
    kept : list of int
        The trials averaged into ``object`` (the ``options.keep`` fraction with the lowest
        ``estimate_errors``).
    final_error : float
        Fourier error of ``object`` itself (the number to judge a reconstruction by: the
        per-iteration ``errors`` of HIO, RAAR and DM iterates include what lies outside the
        support).
    frc : (ndarray, ndarray) or None
        Fourier ring correlation between the averages of the even- and the odd-numbered kept
        trials (None when fewer than two are kept). Both halves are aligned to one shared
        reference and fit the same data, so it measures self-consistency (reproducibility of
        the retrieval), not resolution against the truth.
    trial_spread : float or None
        How far the kept trials lie from their average (:func:`trial_spread`); None with fewer
        than two kept. Above :data:`TRIAL_SPREAD_LIMIT` the trials found different solutions
        and their average is a blur of them, whatever the final error.
    options : PhasingOptions
    iterations : int
        Iterations per trial (all rounds).
    elapsed_s : float
        Wall time of the whole retrieval.
    device : str
        "cpu" or "gpu".
    """

    object: np.ndarray
    support: np.ndarray
    trials: list
    errors: np.ndarray
    prtf: tuple | None
    trial_errors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    estimate_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kept: list = field(default_factory=list)
    final_error: float = float("nan")
    frc: tuple | None = None
    trial_spread: float | None = None
    options: PhasingOptions = field(default_factory=PhasingOptions)
    iterations: int = 0
    elapsed_s: float = 0.0
    device: str = "cpu"

    @property
    def iterations_per_second(self) -> float:
        """Trial iterations per second of wall time (all trials together)."""
        total = self.iterations * len(self.trials)
        return total / self.elapsed_s if self.elapsed_s > 0 else float("nan")


# -- the iteration engine ----------------------------------------------------------------------

class _Engine:
    """Projections and algorithm steps on a stack of trials ``x`` of shape (trials, rows, cols).

    Fourier-space arrays are in FFT order. Everything is complex64 / float32 and updated in
    place in preallocated buffers: per iteration two FFTs and about ten passes over the
    array, with no allocation but the FFT outputs.
    """

    def __init__(self, amp, free, xp, beta: float, positivity: bool, real: bool, low=None):
        self.xp, self.fft = xp, fft_module(xp)
        self.amp = amp  # sqrt(I), float32, FFT order; 0 at free pixels
        self.low = low  # sqrt(I − floor) or None, same layout
        self.measured = None if free is None else (~free).astype(xp.float32)
        self.free = None if free is None else free.astype(xp.float32)
        self.beta = float(beta)
        self.constrained = bool(positivity or real)
        self.positivity = bool(positivity)
        self.support = self.support_f = None
        self.estimate = None  # DM keeps its solution estimate here
        self._bufs = {}

    def _buf(self, name: str, shape, dtype):
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape:
            buf = self._bufs[name] = self.xp.empty(shape, dtype=dtype)
        return buf

    def set_support(self, support):
        self.support = support
        self.support_f = support.astype(self.xp.float32)

    def _magnitude_error(self, spectrum, err_out):
        """|F| into a buffer, and the squared error per trial into ``err_out``."""
        xp = self.xp
        mag = xp.abs(spectrum, out=self._buf("mag", spectrum.shape, xp.float32))
        diff = xp.subtract(mag, self.amp, out=self._buf("diff", spectrum.shape, xp.float32))
        if self.measured is not None:
            diff *= self.measured
        for t in range(spectrum.shape[0]):
            err_out[t] = xp.vdot(diff[t], diff[t])
        return mag

    def modulus(self, x, err_out):
        """P_M of every trial in ``x`` (new array); squared errors go into ``err_out``.

        Without a floor |F| becomes sqrt(I); with one (``low``) it is brought into
        [sqrt(I − floor), sqrt(I)], the nearest point of that interval (a projection too).
        """
        xp = self.xp
        spectrum = self.fft.fft2(x)
        ratio = self._magnitude_error(spectrum, err_out)
        if self.low is None:
            target = self.amp
        else:
            target = xp.clip(ratio, self.low, self.amp,
                             out=self._buf("target", spectrum.shape, xp.float32))
        ratio += _TINY  # |F| = 0 gives a finite ratio (times F = 0)
        xp.divide(target, ratio, out=ratio)
        if self.free is not None:
            ratio += self.free  # amp is 0 there: the ratio becomes 1, F is kept
        spectrum *= ratio
        return self.fft.ifft2(spectrum, overwrite_x=True)

    def fourier_error2(self, x):
        """Squared Fourier error (unnormalised) of every trial in ``x``, without projecting."""
        err = self.xp.zeros(x.shape[0], dtype=self.xp.float64)
        self._magnitude_error(self.fft.fft2(x), err)
        return err

    def project_support(self, x, out=None):
        """P_S: zero outside the support; real (and non-negative) inside when asked."""
        xp = self.xp
        if not self.constrained:
            return xp.multiply(x, self.support_f, out=out)
        r = x.real
        if self.positivity:
            r = xp.maximum(r, 0)
        r = r * self.support_f
        if out is None:
            return r.astype(x.dtype)
        out[...] = r
        return out

    def step(self, name: str, x, err_out):
        """One iteration of algorithm ``name``; returns the new iterate (may reuse ``x``)."""
        xp, beta = self.xp, self.beta
        pm = self.modulus(x, err_out)
        if name == "ER":
            return self.project_support(pm, out=pm)
        if name == "DM":
            return self._dm(x, pm)
        tmp = self._buf("tmp", x.shape, x.dtype)
        if not self.constrained:  # plain support: pm inside, a combination outside
            if name == "HIO":
                x -= xp.multiply(pm, beta, out=tmp)
            else:  # RAAR
                x *= beta
                x += xp.multiply(pm, 1 - 2 * beta, out=tmp)
            xp.copyto(x, pm, where=self.support)
            return x
        if name == "HIO":  # Fienup 1982: pm where no constraint is violated, x − β pm elsewhere
            x -= xp.multiply(pm, beta, out=tmp)
            ok = self.support & (pm.real >= 0) if self.positivity else self.support
            xp.copyto(x, pm.real, where=ok)
            return x
        # RAAR
        xp.multiply(pm, 2, out=tmp)
        tmp -= x
        self.project_support(tmp, out=tmp)
        x *= beta
        x += xp.multiply(tmp, beta, out=tmp)
        x += xp.multiply(pm, 1 - 2 * beta, out=pm)
        return x

    def _dm(self, x, pm):
        beta = self.beta
        f_m = pm * (1 + 1 / beta) - x * (1 / beta)
        self.estimate = self.project_support(f_m, out=f_m)
        if beta == 1:
            pm_fs = pm
        else:
            f_s = self.project_support(x) * (1 - 1 / beta) + x * (1 / beta)
            pm_fs = self.modulus(f_s, self.xp.zeros(x.shape[0], dtype=self.xp.float32))
        x += (self.estimate - pm_fs) * beta
        return x

    def result(self, x, last: str):
        """The trials' object estimates after an iteration of ``last``."""
        if last == "DM" and self.estimate is not None:
            return self.estimate.copy()
        return self.project_support(x)


# -- the driver -------------------------------------------------------------------------------

def _choose_xp(intensity, device: str):
    xp = array_module(intensity)
    if xp is not np and device != "cpu":
        return xp
    return get_xp(device)


def _low_amplitude(i, free, floor, xp):
    """sqrt(max(I − floor, 0)) in FFT order on ``xp`` (0 at free pixels), or None."""
    if floor is None:
        return None
    f = np.asarray(asnumpy(floor), dtype=np.float64)
    if f.shape != i.shape:
        raise InvalidInputError(f"the floor's shape {f.shape} differs from the pattern's "
                                f"{i.shape}")
    if not np.isfinite(f).all() or (f < 0).any():
        raise InvalidInputError("the floor is an intensity: finite and zero or positive")
    low = np.sqrt(np.where(free, 0.0, np.maximum(np.nan_to_num(i) - f, 0.0)))
    return xp.asarray(np.fft.ifftshift(low).astype(np.float32))


def _prepare(intensity, mask, xp):
    """sqrt(I) and the free-pixel mask in FFT order on ``xp``, Σ I measured, the free mask."""
    i = np.asarray(asnumpy(intensity), dtype=np.float64)
    if i.ndim != 2 or min(i.shape) < 4:
        raise InvalidInputError(f"the diffraction pattern must be a 2D image of at least 4×4 "
                                f"pixels, got shape {i.shape}")
    free = ~np.isfinite(i)
    if mask is not None:
        m = np.asarray(asnumpy(mask))
        if m.shape != i.shape:
            raise InvalidInputError(f"the mask's shape {m.shape} differs from the pattern's "
                                    f"{i.shape}")
        free |= m.astype(bool)
    amp = np.sqrt(np.where(free, 0.0, np.maximum(np.nan_to_num(i), 0.0)))
    norm2 = float(np.sum(amp**2))
    if not norm2 > 0:
        raise InvalidInputError("the diffraction pattern has no positive measured intensity "
                                "(everything is masked, zero or not finite)")
    amp = xp.asarray(np.fft.ifftshift(amp).astype(np.float32))
    free_fft = xp.asarray(np.fft.ifftshift(free)) if free.any() else None
    return amp, free_fft, norm2, free, i


def _initial_support(support, intensity, mask, shape, xp):
    if support is None:
        support = support_from_autocorrelation(np.asarray(asnumpy(intensity), float),
                                               mask=None if mask is None else asnumpy(mask))
    s = np.asarray(asnumpy(support))
    if s.shape != shape:
        raise InvalidInputError(f"the support's shape {s.shape} differs from the pattern's "
                                f"{shape}")
    s = s.astype(bool)
    if not s.any():
        raise InvalidInputError("the support is empty: give at least one pixel")
    return xp.asarray(s)


def _random_start(engine, amp, trials, rng, xp):
    """Random complex values inside the support, scaled to the measured intensity.

    Real and imaginary parts are uniform in [0, 1), so the start has a positive mean (phases in
    one quadrant), as cohere's: such a start falls into the twin-image superposition less
    often than uniformly random phases (simulated tests: 6-7 of 8 seeds converged against
    3-5 of 8).
    """
    shape = (trials,) + tuple(amp.shape)
    x = xp.asarray((rng.random(shape) + 1j * rng.random(shape)).astype(np.complex64))
    x = engine.project_support(x, out=x)
    # Parseval with the unnormalised FFT: sum |fft2(x)|² = pixels · sum |x|²
    power = xp.sum(xp.abs(x) ** 2, axis=(1, 2)) * x[0].size
    target = float(xp.sum(amp.astype(xp.float64) ** 2))
    x *= xp.sqrt(target / xp.maximum(power, 1e-30)).astype(xp.float32)[:, None, None]
    return x


def _given_start(engine, start, trials, xp):
    s = xp.asarray(asnumpy(start), dtype=xp.complex64)
    if s.shape == (trials, *engine.amp.shape):  # one start per trial
        return engine.project_support(s)
    if s.shape != engine.amp.shape:
        raise InvalidInputError(f"the starting object's shape {tuple(s.shape)} differs from "
                                f"the pattern's {tuple(engine.amp.shape)}")
    return engine.project_support(xp.stack([s] * trials))


def _circular_centre(weights, xp):
    """Centre of mass on the torus (robust to an object wrapped across the edges)."""
    centre = []
    for axis, n in enumerate(weights.shape):
        profile = weights.sum(axis=1 - axis)
        angle = 2 * np.pi * xp.arange(n) / n
        z = complex(xp.sum(profile * xp.exp(1j * angle)))
        centre.append((np.angle(z) % (2 * np.pi)) * n / (2 * np.pi) if abs(z) > 0 else n / 2)
    return centre


def phase_retrieval(intensity, support=None, options: PhasingOptions | None = None, *,
                    mask=None, start=None, bound=None, floor=None,
                    progress: Callable | None = None,
                    cancel: Callable | None = None) -> PhasingResult:
    """Retrieve the phase of a centred diffraction pattern: rounds × trials × schedule.

    Parameters
    ----------
    intensity : array, (rows, cols)
        Centred diffraction intensity (numpy or cupy).
    support : bool array, (rows, cols), optional
        Initial support (True where the object may be); None: from the autocorrelation
        (:func:`~speckle.imaging.support.support_from_autocorrelation`).
    options : PhasingOptions, optional
    mask : bool array, optional
        True where a detector pixel is not measured (left free in Fourier space).
    start : complex array, (rows, cols) or (trials, rows, cols), optional
        Starting object for every trial (for example a previous result's ``object`` with its
        ``support``), or one per trial, instead of random phases. The PRTF is left out (the
        trials are not independent) unless there is one start per trial.
    bound : bool array, (rows, cols), optional
        Shrink-wrap never reaches outside it (a support known to hold the object, such as the
        holographic one: there the bright references would otherwise set the shrink-wrap's
        scale and noise around the dimmer object would be let in).
    floor : array, (rows, cols), optional
        Intensity at each pixel that may not be the object's coherent scattering (a smooth
        background under the speckle; :func:`speckle.imaging.floor.incoherent_floor`): the
        modulus constraint then accepts any |F|² between ``I − floor`` and ``I``. The Fourier
        errors are still measured against ``sqrt(I)``.
    progress : callable, optional
        ``progress(fraction, stage)``.
    cancel : callable, optional
        Returns True to stop; :class:`~speckle.errors.Cancelled` is then raised.

    Returns
    -------
    PhasingResult

    Raises
    ------
    InvalidInputError
        Bad pattern, mask, support or options.
    Cancelled
        When ``cancel()`` returned True.
    """
    started = time.perf_counter()
    opts = options or PhasingOptions()
    steps = opts.steps()
    report = progress or (lambda fraction, stage: None)
    xp = _choose_xp(intensity, opts.device)
    amp, free, norm2, free_np, values = _prepare(intensity, mask, xp)
    low = _low_amplitude(values, free_np, floor, xp)
    initial = _initial_support(support, intensity, mask, tuple(amp.shape), xp)
    supports = xp.stack([initial] * opts.trials)  # one per trial: the trials stay independent
    limit = None if bound is None else _initial_support(bound, intensity, mask, initial.shape, xp)
    engine = _Engine(amp, free, xp, opts.beta, opts.positivity, opts.real, low)
    rng = np.random.default_rng(opts.seed)
    per_round = sum(n for _, n in steps)
    total = opts.rounds * per_round
    errors2 = np.zeros((opts.trials, total), dtype=np.float64)
    stride = max(1, total // 200)  # how often progress and cancel are looked at
    x = reference = summed = None
    # at least two when there are two: their agreement and the PRTF need them
    n_keep = max(min(2, opts.trials), int(round(opts.keep * opts.trials)))
    # the last iterations' estimates are averaged, never those of the first half (converging)
    window = min(opts.average_last, total - total // 2)
    for rnd in range(opts.rounds):
        engine.set_support(supports)
        if x is None and start is not None:
            x = _given_start(engine, start, opts.trials, xp)
        elif x is None:
            x = _random_start(engine, amp, opts.trials, rng, xp)
        round_errors = xp.zeros((per_round, opts.trials), dtype=xp.float32)
        k = 0
        for name, count in steps:
            for _ in range(count):
                if k % stride == 0:
                    if cancel is not None and cancel():
                        raise Cancelled("phase retrieval cancelled")
                    report((rnd * per_round + k) / total, f"round {rnd + 1}/{opts.rounds}: {name}")
                x = engine.step(name, x, round_errors[k])
                k += 1
                if rnd * per_round + k > total - window:  # the final iterations: averaged
                    estimate = engine.result(x, name)
                    summed = (estimate.copy() if summed is None
                              else xp.add(summed, estimate, out=summed))
        errors2[:, rnd * per_round:(rnd + 1) * per_round] = asnumpy(round_errors).T
        last = rnd + 1 == opts.rounds
        estimates = summed / window if last and window else engine.result(x, steps[-1][0])
        estimate_errors = np.sqrt(asnumpy(engine.fourier_error2(estimates)) / norm2)
        kept = np.sort(np.argsort(estimate_errors, kind="stable")[:n_keep])
        best = int(kept[np.argmin(estimate_errors[kept])])
        first = reference is None
        if first:  # first round: align to the trial with the lowest error
            reference = estimates[best]
        alignments = [_IDENTITY if first and t == best else find_alignment(reference, estimates[t])
                      for t in range(opts.trials)]
        aligned = xp.stack([apply_alignment(estimates[t], a) for t, a in enumerate(alignments)])
        reference = aligned[xp.asarray(kept)].mean(axis=0)
        if rnd + 1 < opts.rounds and opts.shrinkwrap:
            sigma = opts.shrinkwrap_blur(rnd)
            for t in range(opts.trials):  # each trial in its own frame
                new = shrink_wrap(estimates[t], sigma, opts.shrinkwrap_threshold)
                if limit is not None:
                    new &= limit
                if bool(xp.any(new)):
                    supports[t] = new
    report(1.0, "finishing")
    final = math.sqrt(float(engine.fourier_error2(reference[None])[0]) / norm2)
    support_out = align_mask(supports[best], alignments[best])
    return _finish(intensity, free_np, reference, aligned, kept, estimate_errors, final,
                   support_out, np.sqrt(errors2 / norm2), opts, started, xp,
                   independent=start is None or np.ndim(start) == 3)


#: :attr:`PhasingResult.trial_spread` above which the trials are reported as disagreeing. Trials
#: that converged to one solution differ by their noise (a few percent on simulated data with
#: 1e7-1e9 photons: 0.01-0.07); trials stopped before they agree lie ~0.4-0.7 from their average.
TRIAL_SPREAD_LIMIT = 0.2


def trial_spread(trials) -> float | None:
    """Mean distance of aligned trials from their average, relative to the average's norm.

    ``mean_t ||a_t - a|| / ||a||`` with ``a`` the mean of the trials: 0 when they are identical;
    for trials ``x ± e`` it is ``||e|| / ||x||``. The trials must already share one frame (shift,
    twin and global phase removed, as :attr:`PhasingResult.trials` are).

    Parameters
    ----------
    trials : sequence of arrays of one shape

    Returns
    -------
    float or None
        None for fewer than two trials; inf when the average is zero.
    """
    if len(trials) < 2:
        return None
    stack = np.stack([np.asarray(asnumpy(t)) for t in trials])
    mean = stack.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    spread = float(np.mean([np.linalg.norm(t - mean) for t in stack]))
    return spread / norm if norm > 0 else float("inf")


def describe_trial_spread(spread: float | None) -> str:
    """One sentence on :attr:`PhasingResult.trial_spread` for a person: agreement, or what to do."""
    if spread is None:
        return "One trial: nothing to compare it with (run 2 or more to check that they agree)."
    if spread <= TRIAL_SPREAD_LIMIT:
        return f"The trials agree (spread {spread:.2f} of the average)."
    return (f"The trials disagree (spread {spread:.2f} of the average, above "
            f"{TRIAL_SPREAD_LIMIT:g}): they found different solutions and the average blurs them. "
            "Run more rounds with shrink-wrap, give a tighter support, or mask the pixels that "
            "were not measured.")


def _finish(intensity, free_np, average, aligned, kept, estimate_errors, final_error, support,
            errors, opts, started, xp, independent=True) -> PhasingResult:
    """Centre the average (integer roll, on its centre of mass) and collect the result."""
    centre = _circular_centre(xp.abs(average) ** 2, xp)
    shift = tuple(int(round(n // 2 - c)) for n, c in zip(average.shape, centre))

    def roll(a):
        return np.roll(asnumpy(a), shift, axis=(-2, -1))

    obj = roll(average)
    trials = [roll(aligned[t]) for t in range(aligned.shape[0])]
    halves = None
    if len(kept) >= 2:
        chosen = [trials[t] for t in kept]
        halves = frc(np.mean(chosen[0::2], axis=0), np.mean(chosen[1::2], axis=0))
    transfer = None
    if independent and len(kept) >= 2:  # one estimate fits sqrt(I) by construction: PRTF ≈ 1
        transfer = prtf(np.asarray(asnumpy(intensity), dtype=np.float64), obj, mask=free_np)
    return PhasingResult(
        object=obj, support=roll(support).astype(bool), trials=trials,
        errors=errors.mean(axis=0), prtf=transfer, trial_errors=errors,
        estimate_errors=estimate_errors, kept=[int(t) for t in kept], final_error=final_error,
        frc=halves, trial_spread=trial_spread([trials[t] for t in kept]),
        options=replace(opts), iterations=errors.shape[1],
        elapsed_s=time.perf_counter() - started, device="cpu" if xp is np else "gpu")
