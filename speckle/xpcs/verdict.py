"""Is this XPCS data any good? A verdict per q-bin and overall, with reasons and actions.

Each rule looks at one property of the measurement and says ``good``, ``marginal`` or ``bad``,
why (with the number it judged) and what to do, in plain words. Thresholds live in
:class:`Rules` and can be changed per beamline.

Per bin
-------
contrast
    Speckle contrast β: the fitted correlation at t = 0 (contrast, plus the baseline's
    excess over 1 when the fit levels off above 1), else ``g2(first lag) - 1``. Bad below
    ``contrast_bad``, marginal below ``contrast_marginal``: the beam is not coherent enough at
    the sample, or the speckle is smaller than a pixel.
signal_to_noise
    Expected signal-to-noise of g2 at the first lag for photon-counting speckle
    (:func:`speckle.xpcs.noise.expected_snr`: shot noise and the speckle's own fluctuations,
    which a run averages over about ``T/τ`` independent patterns), from the contrast, the mean
    counts per pixel per frame, the pixels of the bin, the frames and the fitted correlation
    time (the run length when there is none). β is clipped to [0, 1] (fully coherent speckle
    has β = 1; a larger measured value is noise, which at very low counts is large), so the
    number is an upper bound when β is not measured. Bad below ``snr_bad``, marginal below
    ``snr_marginal``. Each bin also gets a :class:`~speckle.xpcs.forecast.CountForecast`: the
    frames that would bring it to ``snr_marginal`` and its decay inside the window.
decay_window
    The fitted correlation time must lie inside the measurable window: at least
    ``min_frames_per_tau`` frame times (else the decay is over before the first lag) and at
    most ``max_fraction_of_run`` of the total time (else it is not seen to decay). A curve that
    is flat at its first lag and beyond (no fit) counts as "too fast" when its contrast is
    small, "too slow" when g2 - 1 stays near its first value; so does a fit that levels off
    above 1 by more than half of β (most of the correlation does not decay within the run:
    the fitted time then describes a small wiggle, not the decay). A bin without any finite
    g2 (no counts) is bad.

Whole measurement
-----------------
masked_pixels
    Dead pixels (no count where many were expected: beamstop, gaps) and hot pixels found in
    the data are left out of the analysis (:func:`speckle.xpcs.statistics.bad_pixel_mask`).
    When they are more than ``masked_marginal`` of the selected pixels, the regions probably
    sit on the beamstop or the beam centre is wrong: marginal.
empty_frames / saturated_frames
    Frames with no counts in the used pixels (shutter, beam loss) and frames with pixels at
    the detector's saturation count. Any is marginal; more than ``bad_frame_fraction`` bad.
outlier_frames
    Single frames or short bursts far from their neighbours (intensity spikes, detector
    glitches) and frames far below the run's level (beam losses, dumps), found by
    :func:`speckle.xpcs.outliers.outlier_frames` with ``outlier_sigma``, ``outlier_relative``
    and ``dump_fraction``; named by frame, with the action to exclude them and analyse again
    (:attr:`Verdict.exclude_frames`). Marginal; bad above ``outlier_bad_fraction`` of the
    frames (excluding them is cheap, and a few barely change g2). The drift and
    jump rules below judge the other frames.
intensity_drift
    Relative change of the intensity over the run from a straight-line fit; marginal above
    ``drift_marginal``, bad above ``drift_bad``, provided the slope is significant: at least
    ``drift_sigma`` standard errors, the error taken from the scatter of the means of short
    windows of frames about the line, enlarged for the correlation between neighbouring
    windows (so photon noise, slow speckle fluctuations and isolated spikes are not reported
    as a drift).
intensity_jumps
    Steps between the medians of neighbouring short windows of frames larger than
    ``jump_sigma`` times their noise and than ``jump_relative`` of the mean; marginal, with
    the frame where the largest happens. The noise is the photon noise, or the typical
    (median absolute) difference between neighbouring windows when larger, which includes the
    speckle fluctuations of the summed intensity.
stationarity
    From the two-time map of each bin: ``g2 - 1`` averaged over the first lags within
    consecutive windows of sample age. When the largest and smallest window disagree by more
    than ``stationarity_marginal`` (relative), the dynamics change during the run (ageing,
    beam damage): marginal; above ``stationarity_bad``: bad.

The overall level is the worst of the whole-measurement findings and the best bin's level
(a run is usable when one q-bin is): a bad bin next to a good one makes the run marginal.

What to read first
------------------
Findings that are not good are grouped into :class:`Problem` s: one per kind of problem
across the bins ("5 of 8 rings: decay too slow for this run length") and one per
whole-measurement finding. They are ranked by level, then by how many bins they concern (a
whole-measurement problem concerns all), then by the order of :data:`PRIORITY` (problems that a
new analysis can fix first, then those of the sample and beam). :attr:`Verdict.conclusion` is
the first problem's headline (or that the data are fine) and :attr:`Verdict.action` its action.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .forecast import CountForecast, count_forecast
from .medians import median
from .noise import expected_snr
from .outliers import format_frames, outlier_frames

__all__ = ["BinVerdict", "Finding", "Problem", "Rules", "Verdict", "expected_snr", "judge"]

LEVELS = ("good", "marginal", "bad")

#: Order of the rules when problems are otherwise equal: what a new analysis can fix first.
PRIORITY = ("empty_frames", "outlier_frames", "saturated_frames", "contrast", "decay_window",
            "signal_to_noise", "intensity_jumps", "intensity_drift", "stationarity",
            "masked_pixels")

#: What a dynamic bin is called, by partition kind.
BIN_NOUNS = {"roi": "region", "qring": "ring", "qphi": "sector", "qmap": "q-bin"}

# Kinds of per-bin problems: findings of one kind are grouped across bins.
LOW_CONTRAST = "low speckle contrast"
NO_CONTRAST = "no measurable speckle contrast"
NOISY = "g2 too noisy"
TOO_FAST = "decay faster than the frame time"
TOO_SLOW = "decay too slow for this run length"
NOT_SEEN = "no decay seen (faster than a frame or buried in noise)"
NO_COUNTS = "no counts"
CHANGING = "the dynamics change during the run"

#: One action for a kind whose findings word theirs differently.
KIND_ACTIONS = {TOO_SLOW: "measure for longer (more frames, or a longer frame time) or at "
                          "larger q"}


def _worst(levels) -> str:
    levels = list(levels)
    return max(levels, key=LEVELS.index) if levels else "good"


@dataclass(frozen=True)
class Rules:
    """Thresholds of the verdict (see the module docstring)."""

    contrast_bad: float = 0.02
    contrast_marginal: float = 0.05
    snr_bad: float = 3.0
    snr_marginal: float = 10.0
    min_frames_per_tau: float = 2.0
    max_fraction_of_run: float = 0.1
    bad_frame_fraction: float = 0.01
    drift_marginal: float = 0.05
    drift_bad: float = 0.2
    drift_sigma: float = 4.0
    jump_sigma: float = 6.0
    outlier_sigma: float = 8.0
    outlier_relative: float = 0.1
    dump_fraction: float = 0.5
    outlier_bad_fraction: float = 0.1
    jump_relative: float = 0.05
    stationarity_windows: int = 4
    stationarity_lags: int = 5
    stationarity_marginal: float = 0.25
    stationarity_bad: float = 0.5
    masked_marginal: float = 0.2


@dataclass
class Finding:
    """One rule's judgement."""

    rule: str
    level: str
    message: str
    action: str = ""
    value: float | None = None
    kind: str = ""
    frames: list[int] = field(default_factory=list)


@dataclass
class BinVerdict:
    """The verdict of one dynamic bin."""

    bin: int
    label: str
    level: str
    findings: list[Finding] = field(default_factory=list)
    forecast: CountForecast | None = None


@dataclass
class Problem:
    """Findings of one kind that are not good, across bins: a line of the verdict.

    Attributes
    ----------
    rule : str
    level : str
        The worst level among the findings.
    headline : str
        One line: which bins and what ("3 of 8 rings: g2 too noisy").
    action : str
        What to do about it.
    labels : list of str
        The bins it concerns (empty for a whole-measurement problem).
    findings : list of Finding
        The details, one per bin.
    """

    rule: str
    level: str
    headline: str
    action: str
    labels: list[str]
    findings: list[Finding]


@dataclass
class Verdict:
    """The overall verdict.

    Attributes
    ----------
    level : {"good", "marginal", "bad"}
    summary : str
        The level in words with how many bins are good.
    findings : list of Finding
        Whole-measurement findings.
    bins : list of BinVerdict
    noun : str
        What a bin is called ("ring", "region"...).
    """

    level: str
    summary: str
    findings: list[Finding]
    bins: list[BinVerdict]
    noun: str = "bin"

    def problems(self) -> list[Problem]:
        """The problems, most important first (see the module docstring)."""
        groups: dict[tuple, list] = {}
        for f in self.findings:
            if f.level != "good":
                groups[(f.rule, f.message)] = [f]
        for b in self.bins:
            for f in b.findings:
                if f.level != "good":
                    groups.setdefault((f.rule, f.kind or f.message, "bin"), []).append((b.label, f))
        out = []
        n_bins = len(self.bins)
        for key, members in groups.items():
            if len(key) == 2:
                (f,) = members
                out.append(Problem(f.rule, f.level, f.message, f.action, [], [f]))
                continue
            labels = [label for label, _ in members]
            found = [f for _, f in members]
            worst = _worst(f.level for f in found)
            action = (self._count_action(labels) if key[1] in (NOISY, TOO_SLOW) else "") or (
                KIND_ACTIONS.get(key[1]) or next(f.action for f in found if f.level == worst))
            out.append(Problem(key[0], worst, self._headline(key[1], labels), action, labels,
                               found))
        rank = {r: i for i, r in enumerate(PRIORITY)}
        out.sort(key=lambda p: (-LEVELS.index(p.level),
                                -(len(p.labels) if p.labels else n_bins),
                                rank.get(p.rule, len(rank))))
        return out

    def _count_action(self, labels) -> str:
        """How long to count for these bins, from their forecasts ("" when none helps)."""
        forecasts = [b.forecast for b in self.bins if b.label in labels and b.forecast]
        helped = sorted((f for f in forecasts if f.more_frames), key=lambda f: f.frames_needed)
        if not helped:
            return ""
        frame_time = helped[0].seconds_needed / helped[0].frames_needed

        def count(f):
            return (f"{'at least ' if f.at_least else ''}{f.frames_needed:,} frames in all "
                    f"({f.seconds_needed:.3g} s, {f.more_frames:,} more)")

        n = len(helped)
        whom = f"{self.noun}s" if n > 1 else self.noun
        most, every = helped[(n - 1) // 2], helped[-1]
        if n <= 2 or every.frames_needed <= 2 * most.frames_needed:
            words = f"count longer: {count(every)}, enough for {'the ' if n > 1 else ''}{n} {whom}"
        else:
            k = sum(f.frames_needed <= most.frames_needed for f in helped)
            words = (f"count longer: {count(most)}, enough for {k} of the {n} {whom}; "
                     f"{'at least ' if every.at_least else ''}{every.frames_needed:,} "
                     f"({every.frames_needed * frame_time:.3g} s) for all")
        if len(helped) < len(labels):
            words += f" ({len(labels) - len(helped)} cannot be helped by counting longer)"
        return words

    def _headline(self, kind, labels) -> str:
        n, total = len(labels), len(self.bins)
        if total == 1:
            return kind[:1].upper() + kind[1:]
        nouns = f"{self.noun}s"
        if n == total:
            return f"All {total} {nouns}: {kind}"
        if n == 1:
            return f"1 of {total} {nouns} ({labels[0]}): {kind}"
        return f"{n} of {total} {nouns}: {kind}"

    @property
    def exclude_frames(self) -> list[int]:
        """Frames the verdict suggests leaving out (empty and outlier frames), ascending."""
        rules = ("empty_frames", "outlier_frames")
        return sorted({f for x in self.findings if x.rule in rules for f in x.frames})

    @property
    def conclusion(self) -> str:
        """One line: the most important problem (and how many more), or that the data are fine."""
        problems = self.problems()
        if not problems:
            return self.summary
        more = len(problems) - 1
        tail = f"; {more} more problem{'s' if more > 1 else ''}" if more else ""
        return problems[0].headline + tail

    @property
    def action(self) -> str:
        """The single most useful thing to do ("" when the data are fine)."""
        problems = self.problems()
        return problems[0].action if problems else ""

    def to_dict(self) -> dict:
        """JSON-serialisable form (non-finite numbers become ``None``), with the conclusion,
        the action and the problems in order."""
        d = asdict(self)
        d.update(conclusion=self.conclusion, action=self.action,
                 problems=[asdict(p) for p in self.problems()],
                 exclude_frames=self.exclude_frames)
        return _finite(d)

    def reasons(self) -> list[str]:
        """Every non-good finding as one line: 'message — action'."""
        out = []
        for f in self.findings + [f for b in self.bins for f in b.findings]:
            if f.level != "good":
                out.append(f"{f.message} — {f.action}" if f.action else f.message)
        return out


def _finite(obj):
    """Replace non-finite floats (NaN, inf) by None, recursively, for strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _plateau(fit) -> float:
    """How far above 1 a successful fit levels off (0 when it does not, or no fit)."""
    if fit is None or not fit.success:
        return 0.0
    b = float(fit.params.get("baseline", np.nan))
    return max(b - 1.0, 0.0) if np.isfinite(b) else 0.0


def _contrast(fit, g2_first):
    if fit is not None and fit.success and np.isfinite(fit.params.get("contrast", np.nan)):
        # the whole correlation at t = 0: the decay plus what is left of it at the end
        return float(fit.params["contrast"]) + _plateau(fit)
    return float(g2_first - 1) if np.isfinite(g2_first) else float("nan")


#: The decay-window kinds as the count forecast names them ("inside" when good).
_DECAY_STATES = {TOO_SLOW: "slow", TOO_FAST: "fast", NOT_SEEN: "unseen", NO_COUNTS: "no counts",
                 "": "inside"}


def _judge_bin(rules, b, label, beta, counts, n_pixels, n_frames, frame_time, fit, g2_col):
    """The findings of one bin and its count forecast."""
    out = []
    t_fit = float(fit.params.get("tau", np.nan)) if fit is not None and fit.success else np.nan
    plateau = _plateau(fit)
    levels_off = np.isfinite(t_fit) and np.isfinite(beta) and plateau > 0.5 * beta
    # the correlation time the noise and the forecast may use (not a plateau's wiggle)
    trusted = None if levels_off or not np.isfinite(t_fit) else t_fit
    # contrast
    if not np.isfinite(beta) or beta < rules.contrast_bad:
        out.append(Finding("contrast", "bad",
                           f"{label}: no measurable speckle contrast (β = {beta:.3g})",
                           "check the coherence: close the slits / pinhole, check the focus and "
                           "that the speckle is larger than a pixel; or the dynamics are faster "
                           "than one frame", beta, NO_CONTRAST))
    elif beta < rules.contrast_marginal:
        out.append(Finding("contrast", "marginal", f"{label}: low speckle contrast (β = {beta:.3g})",
                           "improve the coherence (slits, pinhole) or use a shorter frame time",
                           beta, LOW_CONTRAST))
    else:
        out.append(Finding("contrast", "good", f"{label}: speckle contrast β = {beta:.3g}",
                           value=beta))
    # signal to noise
    snr = expected_snr(beta if np.isfinite(beta) else 0.0, counts, n_pixels, n_frames,
                       None if trusted is None else trusted / frame_time)
    words = (f"{label}: g2 signal-to-noise ≈ {snr:.3g} ({counts:.3g} counts per pixel per frame, "
             f"{n_pixels} pixels, {n_frames} frames)")
    act = "collect more frames, use a larger region / wider q-bin, or more flux per frame"
    if snr < rules.snr_bad:
        out.append(Finding("signal_to_noise", "bad", words, act, snr, NOISY))
    elif snr < rules.snr_marginal:
        out.append(Finding("signal_to_noise", "marginal", words, act, snr, NOISY))
    else:
        out.append(Finding("signal_to_noise", "good", words, value=snr))
    # decay inside the window
    total = n_frames * frame_time
    lo, hi = rules.min_frames_per_tau * frame_time, rules.max_fraction_of_run * total
    if levels_off:
        out.append(Finding("decay_window", "bad",
                           f"{label}: g2 - 1 levels off at {plateau:.3g} of {beta:.3g}: most of "
                           f"the correlation does not decay within the run ({total:.3g} s)",
                           "measure for longer or at larger q (a non-ergodic sample, such as "
                           "a gel, keeps a plateau)", t_fit, TOO_SLOW))
    elif np.isfinite(t_fit):
        if t_fit < lo:
            out.append(Finding("decay_window", "bad",
                               f"{label}: decays in {t_fit:.3g} s, faster than {lo:.3g} s "
                               f"({rules.min_frames_per_tau:g} frame times)",
                               "use a shorter frame time (or a smaller q)", t_fit, TOO_FAST))
        elif t_fit > total / 2:
            out.append(Finding("decay_window", "bad",
                               f"{label}: correlation time {t_fit:.3g} s is longer than half the "
                               f"run ({total:.3g} s): the decay is not measured",
                               "measure for longer (more frames or a longer frame time) or at "
                               "larger q", t_fit, TOO_SLOW))
        elif t_fit > hi:
            out.append(Finding("decay_window", "marginal",
                               f"{label}: correlation time {t_fit:.3g} s is over "
                               f"{rules.max_fraction_of_run:.0%} of the run ({total:.3g} s): "
                               "few independent decays", "measure for longer to average more",
                               t_fit, TOO_SLOW))
        else:
            out.append(Finding("decay_window", "good",
                               f"{label}: correlation time {t_fit:.3g} s inside the window "
                               f"{lo:.3g}–{hi:.3g} s", value=t_fit))
    else:
        finite = np.isfinite(g2_col)
        if finite.sum() >= 2:
            first, last = g2_col[finite][0] - 1, median(g2_col[finite][-3:]) - 1
            if first > rules.contrast_marginal and last > 0.5 * first:
                out.append(Finding("decay_window", "bad",
                                   f"{label}: g2 does not decay within the run ({total:.3g} s)",
                                   "measure for longer or at larger q", None, TOO_SLOW))
            else:
                out.append(Finding("decay_window", "bad",
                                   f"{label}: no decay could be fitted: it is over before the "
                                   f"first lag ({frame_time:.3g} s) or buried in noise",
                                   "use a shorter frame time, or more counts", None, NOT_SEEN))
        else:
            out.append(Finding("decay_window", "bad",
                               f"{label}: no g2 could be computed (no counts in this bin)",
                               "check the mask and the regions / q range, and the beam", None,
                               NO_COUNTS))
    tau_err = fit.errors.get("tau") if trusted is not None else None
    forecast = count_forecast(
        b, label, beta=beta, counts=counts, n_pixels=n_pixels, n_frames=n_frames,
        frame_time=frame_time, tau=trusted, tau_err=tau_err,
        decay=_DECAY_STATES[out[-1].kind], target_snr=rules.snr_marginal,
        max_fraction=rules.max_fraction_of_run, contrast_min=rules.contrast_bad)
    return out, forecast


def _judge_intensity(rules, intensity, weights, n_pixels, saturated):
    out = []
    T = len(intensity)
    used = weights > 0
    empty = np.flatnonzero((intensity <= 0) & used)
    if len(empty):
        level = "bad" if len(empty) > rules.bad_frame_fraction * T else "marginal"
        out.append(Finding("empty_frames", level,
                           f"{len(empty)} frame(s) have no counts (first: {empty[:5].tolist()})",
                           f"check the shutter and the beam; exclude frames "
                           f"{format_frames(empty)} and analyse again", len(empty),
                           frames=empty.tolist()))
    sat = np.flatnonzero((saturated > 0) & used) if saturated is not None else []
    if len(sat):
        level = "bad" if len(sat) > rules.bad_frame_fraction * T else "marginal"
        out.append(Finding("saturated_frames", level,
                           f"{len(sat)} frame(s) have saturated pixels (first: {sat[:5].tolist()})",
                           "attenuate the beam or mask the saturated pixels", len(sat)))
    odd = outlier_frames(intensity, n_pixels, weights, sigma=rules.outlier_sigma,
                         relative=rules.outlier_relative, dump_fraction=rules.dump_fraction)
    if odd.frames:
        out.append(_outlier_finding(rules, odd, T))
    good = used & (intensity > 0)
    good[odd.frames] = False
    if good.sum() < 3:
        return out
    t = np.flatnonzero(good).astype(float)
    y = intensity[good]
    mean = y.mean()
    slope, icpt = np.polyfit(t, y, 1)
    drift = float(abs(slope) * (T - 1) / mean)
    # Standard error of the slope from the scatter about the line, taken over the means of
    # consecutive windows of frames so that fluctuations that last a few frames (slow speckle,
    # a spike) are not counted as independent; frames themselves when the run is too short.
    win = max(3, min(25, len(y) // 20))
    n_win = len(y) // win
    if n_win >= 4:
        tw = t[:n_win * win].reshape(n_win, win).mean(axis=1)
        yw = y[:n_win * win].reshape(n_win, win).mean(axis=1)
    else:
        tw, yw = t, y
    resid = yw - (slope * tw + icpt)
    spread_t = np.sum((tw - tw.mean()) ** 2)
    se = np.sqrt(np.sum(resid ** 2) / max(len(tw) - 2, 1) / spread_t) if spread_t > 0 else np.inf
    if len(resid) >= 4 and np.sum(resid ** 2) > 0:
        # fluctuations slower than a window: inflate for the lag-1 autocorrelation (AR(1))
        rho = float(np.clip(np.sum(resid[1:] * resid[:-1]) / np.sum(resid ** 2), 0.0, 0.9))
        se *= np.sqrt((1 + rho) / (1 - rho))
    z = abs(slope) / se if se > 0 else np.inf
    words = f"intensity changes by {drift:.1%} over the run"
    if z < rules.drift_sigma:
        out.append(Finding("intensity_drift", "good",
                           f"{words}, within the noise ({z:.1f} standard errors)", value=drift))
    elif drift > rules.drift_bad:
        out.append(Finding("intensity_drift", "bad", words,
                           "check beam stability and sample (melting, moving, damage); "
                           "normalise frames by their mean", drift))
    elif drift > rules.drift_marginal:
        out.append(Finding("intensity_drift", "marginal", words,
                           "normalise frames by their mean, check beam and sample", drift))
    else:
        out.append(Finding("intensity_drift", "good", words, value=drift))
    # jumps: differences between neighbouring medians of short windows
    if len(y) >= 4 * win:
        med = median(np.lib.stride_tricks.sliding_window_view(y, win), axis=1)
        diff = med[win:] - med[:-win]
        step = np.abs(diff)
        # noise of a difference of two neighbouring window medians: photon noise at least, and
        # the scatter of all these differences (speckle and beam fluctuations), estimated
        # robustly (median absolute deviation) so that a jump, which moves only the ~2 win
        # differences around it, does not inflate it
        photon = np.sqrt(2 * mean / max(n_pixels, 1) / win)
        scatter = 1.4826 * median(np.abs(diff - median(diff)))
        noise = max(photon, scatter)
        big = (step > rules.jump_sigma * noise) & (step > rules.jump_relative * mean)
        if big.any():
            where = int(t[np.argmax(np.where(big, step, 0)) + win])
            out.append(Finding("intensity_jumps", "marginal",
                               f"the intensity jumps by {step.max() / mean:.0%} near frame {where}",
                               "look at intensity vs time; exclude the frames around the jump or "
                               "split the run", float(step.max() / mean)))
    return out


def _outlier_finding(rules, odd, n_frames) -> Finding:
    def part(frames, what):
        dep = [100 * odd.departure[f] for f in frames]
        size = f"{min(dep):+.0f} %" if round(min(dep)) == round(max(dep)) else (
            f"{min(dep):+.0f} to {max(dep):+.0f} %")
        shown = format_frames(frames[:20]) + (", …" if len(frames) > 20 else "")
        return f"{len(frames)} frame{'s' if len(frames) > 1 else ''} {what} ({size}): {shown}"

    words = []
    if odd.spikes:
        words.append(part(odd.spikes, "with an intensity spike"))
    if odd.drops:
        words.append(part(odd.drops, "with the intensity down (beam loss?)"))
    n = len(odd.frames)
    level = "bad" if n > rules.outlier_bad_fraction * n_frames else "marginal"
    return Finding("outlier_frames", level, "; ".join(words),
                   f"exclude frames {format_frames(odd.frames)} and analyse again", float(n),
                   frames=odd.frames)


def _judge_stationarity(rules, label, c2):
    steps = c2.shape[0]
    n_win = rules.stationarity_windows
    lags = min(rules.stationarity_lags, steps // (2 * n_win))
    if lags < 1:
        return []
    edges = np.linspace(0, steps - lags, n_win + 1).astype(int)
    vals = []
    for a, b in zip(edges[:-1], edges[1:]):
        v = [np.nanmean(np.diagonal(c2, k)[a:b]) - 1 for k in range(1, lags + 1)]
        vals.append(np.nanmean(v))
    vals = np.array(vals)
    if not np.isfinite(vals).all() or vals.max() <= 0:
        return []
    spread = float((vals.max() - vals.min()) / vals.max())
    words = (f"{label}: the correlation at short lags changes by {spread:.0%} between the start "
             f"and the end of the run (two-time map)")
    act = ("the sample ages or is damaged by the beam: move to a fresh spot, reduce the dose, "
           "or analyse time windows separately")
    if spread > rules.stationarity_bad:
        return [Finding("stationarity", "bad", words, act, spread, CHANGING)]
    if spread > rules.stationarity_marginal:
        return [Finding("stationarity", "marginal", words, act, spread, CHANGING)]
    return [Finding("stationarity", "good", words, value=spread)]


def _judge_masked(rules, masked, part):
    """Report the dead and hot pixels the analysis left out."""
    if not masked or not (masked.get("dead") or masked.get("hot")):
        return []
    n = masked.get("dead", 0) + masked.get("hot", 0)
    used = int(part.mask.sum())
    fraction = n / max(used + n, 1)
    words = (f"{masked.get('dead', 0)} dead and {masked.get('hot', 0)} hot pixels were left out "
             f"({fraction:.0%} of the selected pixels)")
    if fraction > rules.masked_marginal:
        return [Finding("masked_pixels", "marginal", words,
                        "the regions / q-rings cover the beamstop, gaps or hot pixels: check the "
                        "beam centre and move the regions onto the speckle", fraction)]
    return [Finding("masked_pixels", "good", words, value=fraction)]


def judge(result, rules: Rules | None = None, weights=None, saturated=None) -> Verdict:
    """Judge an :class:`~speckle.xpcs.result.XpcsResult`.

    Parameters
    ----------
    result : XpcsResult
        With g2, fits, intensity vs time and (optionally) two-time maps.
    rules : Rules, optional
    weights : ndarray, (n_frames,), optional
        Frame weights (0 for excluded frames, which are not judged).
    saturated : ndarray, (n_frames,), optional
        Number of saturated pixels per frame.

    Returns
    -------
    Verdict
    """
    rules = rules or Rules()
    part = result.partition
    n_frames = len(result.intensity_vs_time)
    weights = np.ones(n_frames) if weights is None else np.asarray(weights)
    n_used = int((weights > 0).sum())
    dyn = part.dynamic_map[part.mask]
    n_pix = np.bincount(dyn, minlength=part.n_dynamic + 1)[1:]
    mean_img = result.mean_image
    counts = np.bincount(dyn, mean_img[part.mask], part.n_dynamic + 1)[1:] / np.maximum(n_pix, 1)
    frame_time = result.frame_time
    bins = []
    for b in range(part.n_dynamic):
        fit = result.fits[b] if b < len(result.fits) else None
        col = result.g2.g2[:, b]
        g2_first = col[np.isfinite(col)][0] if np.isfinite(col).any() else np.nan
        beta = _contrast(fit, g2_first)
        label = part.labels[b]
        findings, forecast = _judge_bin(rules, b + 1, label, beta, counts[b], int(n_pix[b]),
                                        n_used, frame_time, fit, col)
        if (b + 1) in result.twotime:
            findings += _judge_stationarity(rules, label, result.twotime[b + 1])
        bins.append(BinVerdict(b + 1, label, _worst(f.level for f in findings), findings,
                               forecast))
    glob = _judge_masked(rules, result.parameters.get("masked_pixels"), part)
    glob += _judge_intensity(rules, np.asarray(result.intensity_vs_time, float), weights,
                            int(part.mask.sum()), saturated)
    best_bin = min((b.level for b in bins), key=LEVELS.index) if bins else "bad"
    overall = _worst([best_bin] + [f.level for f in glob])
    if overall == "good" and any(b.level != "good" for b in bins):
        overall = "marginal"
    n_good = sum(b.level == "good" for b in bins)
    summary = {
        "good": f"Good data: {n_good} of {len(bins)} bins show a clean, measurable decay.",
        "marginal": f"Usable with care: {n_good} of {len(bins)} bins are good; see the reasons.",
        "bad": "Not usable as it is: see the reasons and the suggested actions.",
    }[overall]
    return Verdict(overall, summary, glob, bins, BIN_NOUNS.get(part.kind, "bin"))
