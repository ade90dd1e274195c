"""The imaging verdict: is this reconstruction any good, why, and what to try.

In the spirit of the XPCS verdict (:mod:`speckle.xpcs.verdict`): a level (``good``,
``marginal``, ``bad``), one line that says it, the reasons (one sentence per check) and one
action. The rules and their thresholds are here, each with a test on simulated data that
triggers it (``tests/test_imaging_verdict.py``).

CDI (:func:`judge_cdi`):

- *the trials agree*: the mean distance of the aligned kept trials from their average, over its
  norm (:func:`speckle.imaging.phasing.trial_spread`). Converged trials of simulated data with
  Poisson noise lie 0.01-0.07 from their average; trials that found different solutions
  0.4-0.9. Up to :data:`~speckle.imaging.phasing.TRIAL_SPREAD_LIMIT` (0.2) they agree, above
  :data:`SPREAD_BAD` (0.35) the reconstruction is not to be trusted.
- *converged*: the Fourier error at the end of the last round is not more than
  :data:`PLATEAU` (5 %) below the end of the round before (with one round it cannot be told);
  it may rise a little as shrink-wrap tightens the support.
- *resolution*: where the PRTF of the averaged trials falls below 1/e, as a half-period in
  pixels of the reconstruction (needs two independent trials).

FTH (:func:`judge_fth`): cross-terms found outside the central autocorrelation or not.
Refocusing (:func:`judge_refocus`): a sharpest distance inside the swept range, not at one end,
and a sharpness curve that is not flat.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .phasing import TRIAL_SPREAD_LIMIT

__all__ = ["LEVELS", "PLATEAU", "SPREAD_BAD", "ImagingVerdict", "half_period_pixels",
           "judge_cdi", "judge_fth", "judge_refocus", "prtf_cutoff"]

LEVELS = ("good", "marginal", "bad")
#: Trial spread above which a CDI reconstruction is judged bad (see the module).
SPREAD_BAD = 0.35
#: Relative fall of the Fourier error over the last round below which phasing has converged.
PLATEAU = 0.05
#: The usual PRTF resolution criterion.
PRTF_LEVEL = 1 / math.e
#: A sharpness curve whose span is below this fraction of its mean has no clear focus.
FLAT_SHARPNESS = 0.01


@dataclass(frozen=True)
class ImagingVerdict:
    """What an imaging result is worth, in words.

    Attributes
    ----------
    level : {"good", "marginal", "bad"}
    summary : str
        One line.
    action : str
        What to try ("" when nothing needs doing).
    reasons : tuple of str
        One sentence per check.
    """

    level: str
    summary: str
    action: str = ""
    reasons: tuple = ()

    def to_dict(self) -> dict:
        """JSON-friendly dict (reasons as a list)."""
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ImagingVerdict":
        """The inverse of :meth:`to_dict`."""
        return cls(level=str(d["level"]), summary=str(d["summary"]),
                   action=str(d.get("action", "")), reasons=tuple(d.get("reasons", ())))


def _worst(levels) -> str:
    return max(levels, key=LEVELS.index) if levels else "good"


def prtf_cutoff(prtf, level: float = PRTF_LEVEL) -> float | None:
    """The first |q|/|q|max at which the PRTF falls below ``level`` (1/e).

    Rings without a value (NaN: no measured pixel) are skipped, not taken as a fall.

    Parameters
    ----------
    prtf : (q_fraction, values) or None

    Returns
    -------
    float or None
        None without a PRTF, or when it stays above ``level`` to the edge of the pattern.
    """
    if prtf is None:
        return None
    q, values = (np.asarray(a, float) for a in prtf)
    below = np.flatnonzero(np.isfinite(values) & (values < level))
    return float(q[below[0]]) if below.size else None


def half_period_pixels(cutoff: float | None, shape) -> float | None:
    """Half-period resolution (pixels of the reconstruction) of a PRTF cut-off |q|/|q|max.

    |q|max is the frame's corner, ``hypot(0.5, 0.5)`` cycles per pixel for a frame of even
    sides; the half-period of a frequency f is ``1 / (2 f)``.
    """
    if cutoff is None or cutoff <= 0:
        return None
    fy = np.abs(np.fft.fftfreq(int(shape[0]))).max()
    fx = np.abs(np.fft.fftfreq(int(shape[1]))).max()
    return float(1.0 / (2.0 * cutoff * math.hypot(fy, fx)))


def _round_ends(errors, rounds: int):
    e = np.asarray(errors, float)
    if rounds < 2 or e.size < rounds or e.size % rounds:
        return None
    per = e.size // rounds
    return float(e[-per - 1]), float(e[-1])


def judge_cdi(*, trial_spread, final_error, errors, rounds: int, prtf, shape,
              support_method: str = "", shadowed: int = 0,
              floor_share: float | None = None) -> ImagingVerdict:
    """The verdict on a phase retrieval (see the module for the rules).

    Parameters
    ----------
    trial_spread : float or None
    final_error : float
        Fourier error of the average.
    errors : array
        Mean Fourier error per iteration, all rounds.
    rounds : int
    prtf : (q_fraction, values) or None
    shape : (rows, cols)
    support_method : str
        Said in the summary ("holographic cross-terms", "autocorrelation", "rectangles").
    shadowed : int
        Pixels found in shadows and left free (said in the reasons when any).
    floor_share : float, optional
        Share of the intensity the incoherent floor let the fit leave out (said in the
        reasons when above 1 %).

    Returns
    -------
    ImagingVerdict
    """
    levels, reasons, actions = [], [], []
    if trial_spread is None:
        levels.append("marginal")
        reasons.append("One trial only: nothing to compare it with.")
        actions.append("run 2 or more trials so that their agreement (and the PRTF) can be "
                       "checked")
        agree = "one trial"
    elif not math.isfinite(trial_spread) or trial_spread > SPREAD_BAD:
        levels.append("bad")
        reasons.append(f"The trials found different solutions (spread {trial_spread:.2f} of "
                       f"their average, above {SPREAD_BAD:g}); their average blurs them.")
        actions.append("run more rounds, tighten the support (rectangles around the object, or "
                       "the FTH support for a sample with references) and mask every "
                       "unmeasured pixel")
        agree = f"trials disagree (spread {trial_spread:.2f})"
    elif trial_spread > TRIAL_SPREAD_LIMIT:
        levels.append("marginal")
        reasons.append(f"The trials roughly agree (spread {trial_spread:.2f}, above "
                       f"{TRIAL_SPREAD_LIMIT:g}).")
        actions.append("run more rounds or trials")
        agree = f"trials roughly agree (spread {trial_spread:.2f})"
    else:
        reasons.append(f"The trials agree (spread {trial_spread:.2f} of their average).")
        agree = f"trials agree (spread {trial_spread:.2f})"
    ends = _round_ends(errors, rounds)
    if ends is None:
        reasons.append("Convergence cannot be told from one round.")
        steady = ""
    else:
        before, last = ends
        drop = (before - last) / max(before, 1e-30)
        if drop > PLATEAU:
            levels.append("marginal")
            reasons.append(f"The Fourier error still fell by {100 * drop:.0f} % over the last "
                           "round: not converged.")
            actions.append("run more rounds")
            steady = ", still falling"
        else:
            reasons.append(f"The Fourier error no longer falls ({100 * -drop:+.1f} % over the "
                           "last round; a tighter support may raise it a little).")
            steady = ", steady"
    cutoff = prtf_cutoff(prtf)
    if prtf is None:
        resolution = "no PRTF"
    elif cutoff is None:
        resolution = "PRTF above 1/e to the edge"
        reasons.append("The PRTF stays above 1/e up to the edge of the pattern.")
    else:
        px = half_period_pixels(cutoff, shape)
        resolution = f"resolution {px:.1f} px"
        reasons.append(f"The PRTF falls below 1/e at |q|/|q|max = {cutoff:.2f}: a half-period "
                       f"resolution of about {px:.1f} pixels.")
    if shadowed:
        reasons.append(f"{shadowed} pixels read far less than their Friedel mirror image "
                       "(a shadow on the detector) and were left free.")
    if floor_share is not None and floor_share > 0.01:
        reasons.append(f"Up to {100 * floor_share:.0f} % of the intensity lies under the "
                       "speckle as a smooth background (parasitic or diffuse scattering, "
                       "partial coherence) and was not fitted.")
    level = _worst(levels)
    where = f"; support from the {support_method}" if support_method else ""
    summary = (f"{level.upper()}: {agree}, Fourier error {final_error:.3g}{steady}; "
               f"{resolution}{where}")
    action = "; ".join(dict.fromkeys(actions))
    return ImagingVerdict(level=level, summary=summary,
                          action=action[:1].upper() + action[1:] + ("." if action else ""),
                          reasons=tuple(reasons))


def judge_fth(*, n_terms: int, n_pairs: int) -> ImagingVerdict:
    """The verdict on a holographic reconstruction: were cross-terms found?

    Parameters
    ----------
    n_terms : int
        Cross-terms found outside the central autocorrelation.
    n_pairs : int
        Of them, twin pairs (a term and its point-inverted twin).
    """
    if n_terms == 0:
        return ImagingVerdict(
            level="bad", summary="BAD: no cross-term outside the central autocorrelation",
            action="Check that this is a hologram and that its centre is right (give it), or "
                   "mask a beamstop; with weak references, average more frames.",
            reasons=("Nothing stands out from the noise outside the object's autocorrelation.",))
    pairs = f"{n_pairs} twin pair(s)" if n_pairs else "no twin pair"
    level = "good" if n_pairs else "marginal"
    reasons = (f"{n_terms} cross-term(s) found outside the central autocorrelation, {pairs}.",)
    action = "" if n_pairs else "Check the centre: cross-terms come in point-symmetric pairs."
    return ImagingVerdict(level=level, summary=f"{level.upper()}: {n_terms} cross-term(s), "
                                               f"{pairs}", action=action, reasons=reasons)


def judge_refocus(distances, sharpness, focus: float) -> ImagingVerdict:
    """The verdict on a focus sweep: a clear sharpest distance inside the range?

    Parameters
    ----------
    distances : array
        The swept distances (m).
    sharpness : array
        The metric that chose the focus, at each distance.
    focus : float
        The distance chosen (m).
    """
    d = np.asarray(distances, float)
    v = np.asarray(sharpness, float)
    finite = v[np.isfinite(v)]
    if d.size < 3 or finite.size < 3:
        return ImagingVerdict(level="marginal", summary=f"MARGINAL: focus {focus * 1e6:.3f} µm "
                              "from too few distances", action="Sweep at least 3 distances.",
                              reasons=("Fewer than 3 distances were scored.",))
    span = float(finite.max() - finite.min())
    scale = float(np.abs(finite).mean()) or 1.0
    step = float(np.abs(np.diff(d)).max())
    if span < FLAT_SHARPNESS * scale:
        return ImagingVerdict(
            level="marginal", summary=f"MARGINAL: the sharpness hardly changes over the sweep; "
                                      f"focus {focus * 1e6:.3f} µm is uncertain",
            action="Sweep a wider range, or choose a region with edges in it.",
            reasons=(f"The sharpness spans {100 * span / scale:.2g} % of its mean.",))
    if min(abs(focus - d.min()), abs(focus - d.max())) < step:
        return ImagingVerdict(
            level="marginal", summary=f"MARGINAL: the sharpest distance {focus * 1e6:.3f} µm is "
                                      "at an end of the range",
            action="Extend the range beyond that end and sweep again.",
            reasons=("The sharpest distance lies at the end of the swept range: the focus may "
                     "lie beyond it.",))
    return ImagingVerdict(level="good", summary=f"GOOD: in focus at {focus * 1e6:.3f} µm",
                          reasons=("A clear sharpest distance inside the swept range.",))
