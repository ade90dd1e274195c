"""How much longer to count: frames (and seconds) until a q-bin is good, at this count rate.

Two things improve with a longer run at the same flux per frame:

- the g2 signal-to-noise, as predicted by :mod:`speckle.xpcs.noise` from the measured contrast,
  counts per pixel per frame, pixels and correlation time; the forecast is the fewest frames
  that reach the target (the verdict's ``snr_marginal``, 10);
- the decay window: the correlation time must be at most ``max_fraction`` of the run (the
  verdict's ``max_fraction_of_run``). While the decay is outside the window the forecast takes
  the fitted time plus 30 % (:data:`DECAY_MARGIN`; or plus two standard errors when that is
  more), so that the longer run is not marginal again by chance. When no decay is seen yet (no
  fit, or a fit that levels off high above 1), the time is at least half the run and the
  forecast is a lower bound (``decay_lower_bound``).

When no decay is seen at all and g2 is noisy, the decay may be buried in the noise: the
forecast gives the frames for the target signal-to-noise. Counting longer does not help when
there is no speckle contrast, or the decay is faster than the frame time (fitted so, or not seen
in a g2 that is not noisy): the forecast then gives no number and says what to do instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .noise import expected_snr, frames_for_snr

__all__ = ["DECAY_MARGIN", "DECAY_STATES", "CountForecast", "count_forecast"]

#: A fitted correlation time from a run a few times longer scatters by about 10 % between
#: runs (twice its fit error): the forecast adds 30 % (or two standard errors when larger).
DECAY_MARGIN = 1.3

#: The verdict's judgement of the decay window, as the forecast needs it.
DECAY_STATES = ("inside", "slow", "fast", "unseen", "no counts")


@dataclass
class CountForecast:
    """How long to count for one bin, at the count rate of the analysed run.

    Attributes
    ----------
    bin : int
        1-based dynamic bin.
    label : str
    frames : int
        Frames analysed.
    snr : float
        Expected g2 signal-to-noise now.
    frames_for_snr : int or None
        Frames in all for the target signal-to-noise (None: not reachable).
    frames_for_decay : int or None
        Frames in all for the decay to lie inside the run (None: counting does not help).
    decay_lower_bound : bool
        ``frames_for_decay`` is a lower bound (the decay is not seen yet).
    frames_needed : int or None
        The larger of the two; None when counting longer does not help.
    at_least : bool
        ``frames_needed`` is a lower bound (it is the decay's, and that is one).
    more_frames : int or None
        Frames to add to this run (0 when it is long enough).
    seconds_needed, more_seconds : float or None
        The same in seconds.
    note : str
        The forecast in words.
    target_snr : float
        The signal-to-noise aimed at.
    """

    bin: int
    label: str
    frames: int
    snr: float
    frames_for_snr: int | None
    frames_for_decay: int | None
    decay_lower_bound: bool
    frames_needed: int | None
    at_least: bool
    more_frames: int | None
    seconds_needed: float | None
    more_seconds: float | None
    note: str
    target_snr: float = 10.0


def count_forecast(bin: int, label: str, *, beta: float, counts: float, n_pixels: int,
                   n_frames: int, frame_time: float, tau: float | None,
                   tau_err: float | None, decay: str, target_snr: float = 10.0,
                   max_fraction: float = 0.1, contrast_min: float = 0.02) -> CountForecast:
    """Forecast the run length one bin needs (see the module docstring).

    Parameters
    ----------
    bin : int
    label : str
    beta : float
        Speckle contrast (as the verdict judged it).
    counts : float
        Mean counts per pixel per frame.
    n_pixels : int
    n_frames : int
        Frames analysed.
    frame_time : float
        Seconds.
    tau, tau_err : float or None
        Fitted correlation time and its standard error, seconds (None when not measured or not
        trusted).
    decay : str
        One of :data:`DECAY_STATES`.
    target_snr, max_fraction, contrast_min : float
        The verdict's thresholds.

    Returns
    -------
    CountForecast
    """
    if decay not in DECAY_STATES:
        raise ValueError(f"decay must be one of {DECAY_STATES}, not {decay!r}")
    tau_frames = tau / frame_time if tau is not None and math.isfinite(tau) else None
    beta = beta if math.isfinite(beta) else 0.0
    snr = expected_snr(beta, counts, n_pixels, n_frames, tau_frames)

    def result(for_snr, for_decay, lower, needed, note):
        more = None if needed is None else max(needed - n_frames, 0)
        secs = (lambda f: None if f is None else f * frame_time)
        at_least = bool(lower and needed is not None and needed == for_decay)
        return CountForecast(bin, label, n_frames, snr, for_snr, for_decay, lower, needed,
                             at_least, more, secs(needed), secs(more), note, target_snr)

    if decay == "no counts" or counts <= 0:
        return result(None, None, False, None, "no counts in this bin: counting longer does "
                                               "not help; check the regions and the beam")
    if beta < contrast_min:
        return result(None, None, False, None, "no speckle contrast: counting longer does not "
                                               "help; check the coherence")
    for_snr = frames_for_snr(target_snr, beta, counts, n_pixels, tau_frames, n_frames=n_frames)
    if decay == "unseen" and for_snr is not None and for_snr > n_frames:
        return result(for_snr, None, False, for_snr,
                      f"no decay is seen yet: count {for_snr:,} frames in all "
                      f"({for_snr * frame_time:.3g} s, {for_snr - n_frames:,} more) for g2 "
                      f"signal-to-noise {target_snr:g}; if it is still flat, use a shorter "
                      "frame time")
    if decay in ("fast", "unseen"):
        why = ("the decay is faster than the frame time" if decay == "fast"
               else "g2 is not noisy but no decay is seen: it is faster than a frame")
        return result(for_snr, None, False, None,
                      f"{why}; counting longer does not help: use a shorter frame time")
    lower = decay == "slow" and tau_frames is None
    if decay == "inside":
        for_decay = math.ceil(tau_frames / max_fraction) if tau_frames else n_frames
    elif lower:  # not seen to decay: tau is at least half the run
        for_decay = math.ceil(0.5 * n_frames / max_fraction)
    else:
        err = tau_err / frame_time if tau_err is not None and math.isfinite(tau_err) else 0.0
        upper = max(DECAY_MARGIN * tau_frames, tau_frames + 2 * err)
        for_decay = max(math.ceil(upper / max_fraction), n_frames + 1)
    needed = max(for_snr or 0, for_decay)
    if for_snr is None:
        return result(None, for_decay, lower, None, "the g2 signal-to-noise cannot reach "
                                                    f"{target_snr:g} at this count rate")
    if needed <= n_frames:
        return result(for_snr, for_decay, lower, needed, "long enough")
    goals = []
    if for_snr > n_frames:
        goals.append(f"g2 signal-to-noise {target_snr:g}")
    if for_decay > n_frames:
        goals.append("the decay inside the run")
    at_least = "at least " if lower and for_decay >= for_snr else ""
    note = (f"count {at_least}{needed:,} frames in all ({needed * frame_time:.3g} s, "
            f"{needed - n_frames:,} more) for {' and '.join(goals)}")
    return result(for_snr, for_decay, lower, needed, note)
