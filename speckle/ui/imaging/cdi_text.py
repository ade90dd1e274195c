"""The CDI page's state in words: the mask, a phasing's summary and verdict, a saved result.

Plain functions from the controller's objects (:mod:`speckle.ui.imaging.cdi_controller`) to
HTML; the widget layer (:mod:`speckle.ui.imaging.cdi`) puts them in its HTML widgets.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ...imaging.figures import PRTF_NEEDS
from ...imaging.phasing import TRIAL_SPREAD_LIMIT, describe_trial_spread
from ...imaging.workflow import SUPPORT_NAMES
from ..common.saved_result import SavedResult
from .cdi_controller import ShownPattern

__all__ = ["mask_html", "percent", "saved_html", "summary_html"]


def percent(n: int, total: int) -> str:
    """``n`` of ``total`` as a percentage with two significant digits."""
    return f"{100 * n / total:.2g} %" if total else "0 %"


def mask_html(shown: ShownPattern) -> str:
    """How many pixels are unmeasured, and why (the pattern shown)."""
    p, opts = shown.prepared, shown.options
    total = p.mask.size
    n = int(p.mask.sum())
    bad = int((~np.isfinite(p.pattern)).sum())
    with np.errstate(invalid="ignore"):
        low = int((shown.image <= 0).sum()) if opts.mask_zeros and \
            shown.image.shape == p.mask.shape else 0
    parts = []
    if bad:
        parts.append(f"{bad} not finite or outside the image")
    if low:
        parts.append(f"{low} at or below zero")
    if opts.mask_rects:
        parts.append(f"{len(opts.mask_rects)} rectangle(s) drawn")
    if p.background is not None:
        parts.append(f"background {p.background:.4g} subtracted first")
    why = f" ({'; '.join(parts)})" if parts else ""
    colour = "#b00020" if n > 0.5 * total else "#333"
    hint = (" Many pixels read 0: if this is a photon-counting detector, its zeros are "
            "measurements; untick “pixels ≤ 0 are unmeasured” and mask the beamstop with "
            "a rectangle." if low > 0.2 * total else "")
    return (f"<span style='color:{colour}'><b>Unmeasured pixels:</b> {n} of {total} "
            f"({percent(n, total)}){html.escape(why)}, tinted red; left free in Fourier "
            f"space.{html.escape(hint, quote=False)}</span>")


def saved_html(saved: SavedResult) -> str:
    """What a saved result chosen as data is, and what to do with it."""
    rows, cols = saved.image.shape
    attrs = saved.attrs
    parts = [f"<b>Saved {html.escape(saved.kind.upper())} result</b> "
             f"{html.escape(Path(saved.source).name)}: its {html.escape(saved.name)}, "
             f"{rows} × {cols} pixels."]
    verdict = attrs.get("verdict")
    if isinstance(verdict, dict) and verdict.get("summary"):
        parts.append(html.escape(str(verdict["summary"])) + ".")
    parts.append("Select a region to refocus it (section 6)"
                 + ("; press Run to phase its pattern again." if "pattern" in saved.arrays
                    else "."))
    return f"<div>{' '.join(parts)}</div>"


def summary_html(result) -> str:
    """The verdict of a phasing, what to try, its numbers and resolution."""
    opts, v = result.options, result.verdict
    per_s = result.iterations * len(result.trials) / max(result.elapsed_s, 1e-9)
    colours = {"good": "#1b7f3b", "marginal": "#b45309", "bad": "#b00020"}
    verdict = (f"<div class='speckle-cdi-verdict-{v.level}' style='color:"
               f"{colours[v.level]}'><b>{html.escape(v.summary)}</b>"
               + (f"<br>What to try: {html.escape(v.action)}" if v.action else "")
               + "</div>")
    agreement = html.escape(describe_trial_spread(result.trial_spread))
    if result.trial_spread is not None and result.trial_spread > TRIAL_SPREAD_LIMIT:
        agreement = (f"<span class='speckle-cdi-disagree' style='color:#b45309'><b>"
                     f"{agreement}</b></span>")
    if result.prtf is None:
        resolution = (f"No resolution estimate: {PRTF_NEEDS} (this run averaged "
                      f"{len(result.kept)}).")
    elif result.prtf_cutoff is None:
        resolution = "The PRTF stays above 1/e up to the edge of the pattern."
    else:
        resolution = (f"The PRTF falls below 1/e at |q|/|q|max = {result.prtf_cutoff:.2f}: "
                      f"a half-period resolution of about {result.resolution_pixels:.1f} "
                      "pixels.")
    return (f"{verdict}<div>Final Fourier error {result.final_error:.3g} after "
            f"{result.iterations} iterations per trial ({opts.rounds} round(s) of "
            f"{html.escape(opts.schedule)}), {len(result.trials)} trial(s), in "
            f"{result.elapsed_s:.1f} s ({html.escape(result.device.upper())}, "
            f"{per_s:.0f} trial-iterations/s). {agreement} {resolution} Initial support "
            f"from the {html.escape(SUPPORT_NAMES[result.support_method])}; final support "
            f"{int(np.asarray(result.support).sum())} pixels.</div>")
