"""``speckle cdi``: phase retrieval of a coherent diffraction pattern from the command line.

A thin adapter over :func:`speckle.imaging.workflow.run_cdi`: the flags make a
:class:`~speckle.imaging.options.CdiOptions` (same names, same defaults), the result is written
by :func:`speckle.io.imaging_result.write_imaging_result`'s layout (after the PNG pictures of
:func:`speckle.imaging.figures.result_figures`), and ``--json`` prints ``result.to_dict()`` with
the verdict. Bad input exits with status 2, one line on stderr, and writes nothing.
"""

from __future__ import annotations

from ..errors import InvalidInputError
from .common import check_outputs, emit_summary, parse_pair, write_image_outputs

__all__ = ["add_parsers", "options_from_args", "parse_support"]


def parse_support(values):
    """``--support`` values into (method, rectangles).

    Parameters
    ----------
    values : list of str or None
        One method (``auto``, ``fth``, ``autocorrelation``), or rectangles
        ``"ROW0:ROW1,COL0:COL1"`` (half-open pixel ranges).
    """
    from ..imaging.options import SUPPORT_METHODS
    from ..xpcs.partitions import parse_roi

    values = list(values or ["auto"])
    methods = [v.strip().lower() for v in values if v.strip().lower() in SUPPORT_METHODS]
    if methods:
        if len(values) > 1:
            raise InvalidInputError("--support is one of auto, fth, autocorrelation, or "
                                    "rectangles, not both")
        return methods[0], ()
    return "rectangles", tuple(tuple(parse_roi(v)) for v in values)


def _background(text):
    if text is None or text.strip().lower() == "auto":
        return "auto"
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip()


def add_parsers(sub) -> None:
    """Add the ``cdi`` subcommand to an argparse subparsers object."""
    from ..imaging.options import CdiOptions

    d = CdiOptions()
    c = sub.add_parser("cdi", help="CDI phase retrieval of a diffraction pattern",
                       description="Phase retrieval of a coherent diffraction pattern with "
                                   "defaults that converge on real data: an automatic support "
                                   "(holographic when the sample carries reference apertures), "
                                   "rounds × trials of a schedule with shrink-wrap, trials "
                                   "aligned and averaged, PRTF, and a verdict.")
    c.add_argument("pattern", help="diffraction pattern: HDF5/NeXus, TIFF, FITS or NumPy file "
                                   "(zero frequency in the middle pixel, or use --center)")
    c.add_argument("--dataset", help="dataset inside an HDF5 file (default: the only image)")
    c.add_argument("--frame", type=int, help="use this frame (default: average all frames)")
    c.add_argument("--center", metavar="auto|ROW,COL",
                   help="move this centre (or the one found by symmetry) to the middle pixel "
                        "first (default: the pattern is already centred)")
    c.add_argument("--bin", type=int, default=d.bin_factor, metavar="N",
                   help="sum N×N blocks of pixels after centring (default 1)")
    m = c.add_argument_group("unmeasured pixels (left free in Fourier space)")
    m.add_argument("--mask", metavar="FILE",
                   help="image of the pattern's shape in any format speckle reads: bools "
                        "(np.save of a bool array, an HDF5 bool dataset), integers or floats; "
                        "non-zero (or NaN) = unmeasured")
    m.add_argument("--background", metavar="auto|none|VALUE|pN", default="auto",
                   help="constant pedestal subtracted first: auto (the 1st percentile when "
                        "above zero, default), none, a number of counts, or pN the N-th "
                        "percentile of the measured pixels")
    m.add_argument("--mask-below", type=float, metavar="VALUE",
                   help="also leave free the pixels reading below VALUE (before the background)")
    m.add_argument("--mask-zeros", action="store_true",
                   help="also leave free the pixels reading ≤ 0 (a beamstop reading 0 at the "
                        "centre is always left free)")
    m.add_argument("--keep-shadows", action="store_true",
                   help="keep as measured the regions that read far less than their Friedel "
                        "mirror image (default: such shadows on the detector are left free)")
    m.add_argument("--no-incoherent-floor", action="store_true",
                   help="fit the whole measured intensity (default: a smooth background under "
                        "the speckle, up to its local minimum over three speckles, may be "
                        "left out)")
    s = c.add_argument_group("support")
    s.add_argument("--support", action="append",
                   metavar="auto|fth|autocorrelation|ROW0:ROW1,COL0:COL1",
                   help="initial support: auto (holographic when the pattern has cross-terms "
                        "of reference apertures, else from the autocorrelation; default), fth, "
                        "autocorrelation, or rectangles (repeat; half-open pixel ranges)")
    s.add_argument("--support-threshold", type=float, metavar="F",
                   help="threshold of the autocorrelation support, fraction of its maximum "
                        "(default: from the data)")
    s.add_argument("--no-shrinkwrap", action="store_true",
                   help="keep the initial support (no shrink-wrap between rounds)")
    s.add_argument("--shrinkwrap-sigma", type=float, default=d.shrinkwrap_sigma, metavar="PX",
                   help=f"blur of the last shrink-wrap, pixels (default {d.shrinkwrap_sigma})")
    s.add_argument("--shrinkwrap-sigma-start", type=float, default=d.shrinkwrap_sigma_start,
                   metavar="PX", help="blur of the first shrink-wrap, falling to "
                                      f"--shrinkwrap-sigma (default {d.shrinkwrap_sigma_start})")
    s.add_argument("--shrinkwrap-threshold", type=float, default=d.shrinkwrap_threshold,
                   metavar="F", help="shrink-wrap threshold, fraction of the maximum "
                                     f"(default {d.shrinkwrap_threshold})")
    p = c.add_argument_group("phasing")
    p.add_argument("--schedule", default=d.schedule,
                   help=f"iterations of a trial per round (default \"{d.schedule}\"); "
                        "algorithms ER, HIO, RAAR, DM")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"rounds (default {d.rounds})")
    p.add_argument("--trials", type=int, default=d.trials,
                   help=f"random starts, aligned and averaged (default {d.trials}; the PRTF "
                        "needs at least 2)")
    p.add_argument("--keep", type=float, default=d.keep, metavar="F",
                   help=f"fraction of the trials averaged: the lowest errors (default {d.keep:g})")
    p.add_argument("--beta", type=float, default=d.beta,
                   help=f"HIO/RAAR/DM feedback parameter (default {d.beta})")
    p.add_argument("--average-last", type=int, default=d.average_last, metavar="N",
                   help="result of a trial: the average of its estimates over the last N "
                        f"iterations (default {d.average_last})")
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


def options_from_args(args):
    """The :class:`~speckle.imaging.options.CdiOptions` the flags ask for (checked)."""
    from ..imaging.options import CdiOptions

    method, rects = parse_support(args.support)
    center = None
    if args.center:
        center = "auto" if args.center.strip().lower() == "auto" else parse_pair(args.center,
                                                                                 None)
    return CdiOptions(
        background=_background(args.background), mask_zeros=args.mask_zeros,
        mask_below=args.mask_below, center=center, bin_factor=args.bin,
        mask_shadows=not args.keep_shadows, incoherent_floor=not args.no_incoherent_floor,
        support=method,
        support_rects=rects, support_threshold=args.support_threshold,
        schedule=args.schedule, rounds=args.rounds, trials=args.trials, keep=args.keep,
        beta=args.beta, positivity=args.positivity, real=args.real,
        average_last=args.average_last, shrinkwrap=not args.no_shrinkwrap,
        shrinkwrap_sigma=args.shrinkwrap_sigma,
        shrinkwrap_sigma_start=args.shrinkwrap_sigma_start,
        shrinkwrap_threshold=args.shrinkwrap_threshold, seed=args.seed, device=args.device)


def _run_cdi(args) -> int:
    from ..imaging.figures import result_figures
    from ..imaging.workflow import run_cdi
    from ..io.imaging_result import imaging_result_content
    from ..io.images import read_image, read_mask

    out, png = check_outputs(args)
    options = options_from_args(args)  # refuse bad numbers before reading anything
    pattern, _ = read_image(args.pattern, dataset=args.dataset, frame=args.frame)
    mask = read_mask(args.mask, pattern.shape) if args.mask else None
    result = run_cdi(pattern, options, mask=mask, source=str(args.pattern))
    figures = result_figures(result) if png is not None else {}
    pictures = write_image_outputs(out, *imaging_result_content(result), png, figures)
    summary = {**result.to_dict(), "output": str(out), "pictures": pictures}
    v = result.verdict
    emit_summary(summary, args.json, [
        f"phased {result.pattern.shape[0]}×{result.pattern.shape[1]} pattern: "
        f"{result.iterations} iterations × {len(result.trials)} trial(s) in "
        f"{result.elapsed_s:.1f} s on the {result.device}",
        v.summary] + ([f"what to try: {v.action}"] if v.action else []) + [f"result: {out}"])
    return 0
