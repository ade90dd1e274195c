"""``speckle cdi``: phase retrieval of a coherent diffraction pattern from the command line.

``speckle cdi PATTERN --out RESULT.h5`` reads a centred diffraction pattern (any format
:mod:`speckle.io` reads), finds an initial support (from the autocorrelation, or rectangles
given with ``--support``), runs :func:`speckle.imaging.phasing.phase_retrieval` (rounds ×
trials × schedule, shrink-wrap between rounds) and writes the averaged complex ``object``,
its ``support``, the errors and the PRTF as one HDF5 file
(:func:`speckle.io.images.write_image_result`, kind ``"cdi"``); optionally PNG pictures, and
with ``--json`` a summary as one JSON document on stdout.

Background: ``--background VALUE`` subtracts a constant pedestal (detector offset, dark
level), ``--background p1`` the 1st percentile of the measured pixels
(:func:`speckle.imaging.conditioning.subtract_background`); a pedestal left in the pattern is
something no compact object can produce, and the phasing fits it badly.

Unmeasured pixels: those of ``--mask FILE`` (non-zero = unmeasured), non-finite ones, with
``--mask-below VALUE`` those below VALUE after the background, and with ``--mask-zeros`` those
at or below zero (how conditioned data often marks a beamstop). They are left free in Fourier
space. Other negative values are clipped to zero; zero is a measurement.

The PRTF (and its 1/e cut-off) is reported only when at least two trials were averaged: a
single reconstruction fits √I by construction and its PRTF is ≈ 1 whatever its phases.

Bad input exits with status 2, one line on stderr, and writes nothing.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInputError
from .common import check_outputs, emit_summary, finite_or_none, parse_pair, write_image_outputs

__all__ = ["add_parsers", "parse_support"]

_PRTF_CUTOFF = 1 / math.e  # the usual resolution criterion
#: CLI default number of trials: the PRTF needs at least two independent estimates.
DEFAULT_TRIALS = 2
PRTF_NEEDS = "PRTF needs ≥ 2 trials"


def parse_support(values, shape):
    """``--support`` values into a support: None for ``auto``, else a bool array of rectangles.

    Parameters
    ----------
    values : list of str or None
        ``["auto"]`` or rectangles ``"ROW0:ROW1,COL0:COL1"`` (half-open pixel ranges).
    shape : (rows, cols)
    """
    from ..imaging.support import support_from_rectangles
    from ..xpcs.partitions import parse_roi

    values = list(values or ["auto"])
    if any(v.strip().lower() == "auto" for v in values):
        if len(values) > 1:
            raise InvalidInputError("--support is either auto or rectangles, not both")
        return None
    return support_from_rectangles(shape, [parse_roi(v) for v in values])


def add_parsers(sub) -> None:
    """Add the ``cdi`` subcommand to an argparse subparsers object."""
    from ..imaging.phasing import PhasingOptions

    d = PhasingOptions()
    c = sub.add_parser("cdi", help="CDI phase retrieval of a diffraction pattern",
                       description="Phase retrieval (ER, HIO, RAAR, difference map) of a centred "
                                   "coherent diffraction pattern: rounds × trials × schedule, "
                                   "shrink-wrap between rounds, trials aligned and averaged.")
    c.add_argument("pattern", help="diffraction pattern: HDF5/NeXus, TIFF, FITS or NumPy file "
                                   "(zero frequency in the middle pixel, or use --center)")
    c.add_argument("--dataset", help="dataset inside an HDF5 file (default: the only image)")
    c.add_argument("--frame", type=int, help="use this frame (default: average all frames)")
    c.add_argument("--center", metavar="auto|ROW,COL",
                   help="move this centre (or the one found by symmetry) to the middle pixel "
                        "first (default: the pattern is already centred)")
    m = c.add_argument_group("unmeasured pixels (left free in Fourier space)")
    m.add_argument("--mask", metavar="FILE",
                   help="image of the pattern's shape, non-zero where a pixel is unmeasured")
    m.add_argument("--background", metavar="VALUE|pN",
                   help="subtract a constant background first: a number of counts, or pN the "
                        "N-th percentile of the measured pixels (e.g. p1)")
    m.add_argument("--mask-below", type=float, metavar="VALUE",
                   help="also leave free the pixels below VALUE (after the background)")
    m.add_argument("--mask-zeros", action="store_true",
                   help="also leave free the pixels at or below zero (beamstop, gaps)")
    s = c.add_argument_group("support")
    s.add_argument("--support", action="append", metavar="auto|ROW0:ROW1,COL0:COL1",
                   help="initial support: auto (from the autocorrelation, default) or a "
                        "rectangle (repeat for several; half-open pixel ranges)")
    s.add_argument("--support-threshold", type=float, default=0.04, metavar="F",
                   help="threshold of the automatic support, fraction of the autocorrelation's "
                        "maximum (default 0.04)")
    s.add_argument("--no-shrinkwrap", action="store_true",
                   help="keep the initial support (no shrink-wrap between rounds)")
    s.add_argument("--shrinkwrap-sigma", type=float, default=d.shrinkwrap_sigma, metavar="PX",
                   help=f"shrink-wrap blur, pixels (default {d.shrinkwrap_sigma})")
    s.add_argument("--shrinkwrap-threshold", type=float, default=d.shrinkwrap_threshold,
                   metavar="F", help="shrink-wrap threshold, fraction of the maximum "
                                     f"(default {d.shrinkwrap_threshold})")
    p = c.add_argument_group("phasing")
    p.add_argument("--schedule", default=d.schedule,
                   help=f"iterations of a trial per round (default \"{d.schedule}\"); "
                        "algorithms ER, HIO, RAAR, DM")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"rounds (default {d.rounds})")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help="random starts per round, aligned and averaged (default "
                        f"{DEFAULT_TRIALS}; the PRTF needs at least 2)")
    p.add_argument("--keep", type=float, default=d.keep, metavar="F",
                   help="fraction of the trials averaged: those with the lowest error "
                        f"(default {d.keep:g}: all)")
    p.add_argument("--beta", type=float, default=d.beta,
                   help=f"HIO/RAAR/DM feedback parameter (default {d.beta})")
    p.add_argument("--average-last", type=int, default=d.average_last, metavar="N",
                   help="result of a trial: the average of its estimates over the last N "
                        "iterations (default 0: the final one; e.g. 50 lowers the noise)")
    p.add_argument("--positivity", action="store_true",
                   help="object real and non-negative inside the support")
    p.add_argument("--real", action="store_true", help="object real inside the support")
    p.add_argument("--seed", type=int, help="seed of the random starting phases")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    o = c.add_argument_group("output")
    o.add_argument("--out", required=True, help="result file (HDF5)")
    o.add_argument("--png-dir", help="also write pictures (PNG) here")
    o.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    c.set_defaults(run=_run_cdi)


def _read_mask(args, shape):
    if not args.mask:
        return np.zeros(shape, bool)
    from ..io.images import read_image

    mask, _ = read_image(args.mask)
    if mask.shape != shape:
        raise InvalidInputError(f"the mask {args.mask} is {mask.shape[0]}×{mask.shape[1]} but "
                                f"the pattern is {shape[0]}×{shape[1]}")
    return np.nan_to_num(mask, nan=1.0) != 0


def _centred(args, pattern, mask):
    if not args.center:
        return pattern, mask, None
    from ..imaging.conditioning import center_pattern, shift_image

    center = None if args.center.strip().lower() == "auto" else parse_pair(args.center, None)
    moved, found = center_pattern(pattern, center, mask=mask, fill=np.nan)
    shift = (pattern.shape[0] // 2 - found[0], pattern.shape[1] // 2 - found[1])  # as it did
    return moved, np.asarray(shift_image(mask, shift, fill=True), bool), found


def _prtf_cutoff(prtf):
    """The first |q|/|q|max where the PRTF drops below 1/e (None when it never does or is None)."""
    if prtf is None:
        return None
    q, values = prtf
    below = np.flatnonzero(np.nan_to_num(values, nan=0.0) < _PRTF_CUTOFF)
    return float(q[below[0]]) if below.size else None


def _figures(result, pattern, mask):
    from matplotlib.figure import Figure

    from ..imaging.display import plot_complex
    from ..plots import plot_image

    figures = {"object": plot_complex(result.object, title="reconstruction (average of trials)")}
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(np.arange(1, result.errors.size + 1), result.errors, lw=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("Fourier error")
    ax.set_title(f"final error {result.final_error:.3g}", fontsize="medium")
    figures["errors"] = fig
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    if result.prtf is None:
        ax.text(0.5, 0.5, f"{PRTF_NEEDS} (this run averaged {len(result.kept)})",
                ha="center", va="center", transform=ax.transAxes)
    else:
        q, values = result.prtf
        ax.plot(q, values, "o-", ms=3)
        ax.axhline(_PRTF_CUTOFF, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("|q| / |q|max")
    ax.set_ylabel("PRTF")
    ax.set_ylim(0, 1.05)
    figures["prtf"] = fig
    figures["pattern"] = plot_image(np.where(mask, np.nan, pattern), "log",
                                    title="pattern (masked pixels blank)")
    return figures


def _run_cdi(args) -> int:
    from ..imaging.conditioning import subtract_background
    from ..imaging.phasing import (TRIAL_SPREAD_LIMIT, PhasingOptions, describe_trial_spread,
                                   phase_retrieval)
    from ..imaging.support import support_from_autocorrelation
    from ..io.images import read_image

    out, png = check_outputs(args)
    options = PhasingOptions(
        schedule=args.schedule, rounds=args.rounds, trials=args.trials, keep=args.keep,
        beta=args.beta, average_last=args.average_last, positivity=args.positivity, real=args.real,
        shrinkwrap=not args.no_shrinkwrap, shrinkwrap_sigma=args.shrinkwrap_sigma,
        shrinkwrap_threshold=args.shrinkwrap_threshold, seed=args.seed, device=args.device)
    options.steps()  # refuse a bad schedule or numbers before reading anything
    pattern, _ = read_image(args.pattern, dataset=args.dataset, frame=args.frame)
    mask = _read_mask(args, pattern.shape)
    background = None
    if args.background is not None:
        pattern, background = subtract_background(pattern, args.background, mask=mask)
        pattern = np.asarray(pattern)
    if args.mask_below is not None:
        with np.errstate(invalid="ignore"):
            mask |= pattern < args.mask_below
    pattern, mask, found_center = _centred(args, pattern, mask)
    if args.mask_zeros:
        mask |= ~(pattern > 0) & np.isfinite(pattern)
    mask |= ~np.isfinite(pattern)
    if mask.all():
        raise InvalidInputError("every pixel of the pattern is masked: nothing to phase")
    support = parse_support(args.support, pattern.shape)
    if support is None:
        support = support_from_autocorrelation(pattern, args.support_threshold, mask=mask)
    result = phase_retrieval(pattern, support, options, mask=mask)

    arrays = {"object": result.object, "support": result.support, "initial_support": support,
              "mask": mask, "errors": result.errors, "trial_errors": result.trial_errors,
              "estimate_errors": result.estimate_errors}
    if result.prtf is not None:
        arrays["prtf_q"], arrays["prtf"] = result.prtf
    if result.frc is not None:
        arrays["frc_q"], arrays["frc"] = result.frc
    cutoff = _prtf_cutoff(result.prtf)
    attrs = {"kind": "cdi", "source": str(args.pattern), "schedule": options.schedule,
             "rounds": options.rounds, "trials": options.trials, "keep": options.keep,
             "beta": options.beta, "average_last": options.average_last,
             "positivity": options.positivity, "real": options.real,
             "shrinkwrap": options.shrinkwrap, "shrinkwrap_sigma": options.shrinkwrap_sigma,
             "shrinkwrap_threshold": options.shrinkwrap_threshold, "seed": options.seed,
             "device": result.device, "iterations": result.iterations,
             "final_error": result.final_error, "elapsed_s": result.elapsed_s,
             "kept_trials": result.kept, "prtf_cutoff_q_fraction": cutoff,
             "trial_spread": result.trial_spread,
             "background": background, "mask_below": args.mask_below,
             "center": None if found_center is None else list(found_center)}
    figures = _figures(result, pattern, mask) if png is not None else {}
    pictures = write_image_outputs(out, arrays, attrs, png, figures)
    summary = {
        "input": str(args.pattern), "output": str(out), "shape": list(pattern.shape),
        "masked_pixels": int(mask.sum()), "initial_support_pixels": int(support.sum()),
        "support_pixels": int(result.support.sum()), "schedule": options.schedule,
        "rounds": options.rounds, "trials": options.trials, "kept_trials": result.kept,
        "iterations": result.iterations, "final_error": finite_or_none(result.final_error),
        "prtf_cutoff_q_fraction": cutoff, "prtf_note": None if result.prtf else PRTF_NEEDS,
        "trial_spread": finite_or_none(result.trial_spread),
        "trials_agree": (None if result.trial_spread is None
                         else bool(result.trial_spread <= TRIAL_SPREAD_LIMIT)),
        "background": background, "elapsed_s": round(result.elapsed_s, 3),
        "device": result.device, "pictures": pictures,
    }
    emit_summary(summary, args.json, [
        f"phased {pattern.shape[0]}×{pattern.shape[1]} pattern: {result.iterations} iterations "
        f"× {options.trials} trial(s) in {result.elapsed_s:.1f} s on the {result.device}",
        f"final Fourier error {result.final_error:.4g}; support {summary['support_pixels']} "
        "pixels; " + (f"{PRTF_NEEDS}, this run averaged {len(result.kept)}"
                      if result.prtf is None else "PRTF below 1/e from |q|/|q|max = "
                      + ("—" if cutoff is None else f"{cutoff:.2f}")),
        describe_trial_spread(result.trial_spread),
        f"result: {out}",
    ])
    return 0
