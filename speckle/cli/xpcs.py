"""``speckle xpcs`` and ``speckle demo``: the XPCS quick check from the command line.

``speckle xpcs INPUT --out RESULT.h5`` runs the XPCS quick check and writes the result file
(pyXpcsViewer opens it), optionally CSV tables and PNG plots, and with ``--json`` prints a
summary as one JSON document on stdout. ``speckle demo`` runs it on the bundled demo data.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .common import parse_frames, parse_pair, parse_quantity

__all__ = ["add_parsers", "add_recipe_arguments", "recipe_from_args"]

#: The subcommands this module adds (``speckle xpcs`` builds only these parsers).
COMMANDS = ("xpcs", "demo")


def _fixed(items) -> dict:
    out = {}
    for item in items or ():
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InvalidInputError(f"cannot read --fix {item!r}: write NAME=VALUE, "
                                    "e.g. baseline=1") from None
    return out


def add_recipe_arguments(parser) -> None:
    """Add the options that describe an XPCS analysis (read back by :func:`recipe_from_args`)."""
    parser.add_argument("--dataset", help="dataset inside an HDF5 file or a zip (default: "
                                          "/entry/data/data or the only one)")
    where = parser.add_argument_group("which pixels (default: q-rings from the geometry when "
                                      "known, else the whole detector)")
    where.add_argument("--qmap", help="APS q-map file (/qmap/dynamic_roi_map, static_roi_map, mask)")
    where.add_argument("--roi", action="append", metavar="ROW0:ROW1,COL0:COL1",
                       help="rectangular region (repeat for several)")
    where.add_argument("--q-rings", type=int, metavar="N", help="number of q-rings")
    where.add_argument("--q-min", help="q of the first ring's inner edge (default unit 1/Å)")
    where.add_argument("--q-width", help="ring width (default unit 1/Å)")
    where.add_argument("--q-step", help="distance between ring starts (default: the width)")
    where.add_argument("--static-per-ring", type=int, default=5,
                       help="static bins per ring for the normalisation (default 5): finer "
                            "static bins keep uneven intensity from inflating g2")
    geo = parser.add_argument_group("acquisition (overrides what the file says)")
    geo.add_argument("--frame-time", help="time between frames (default unit s)")
    geo.add_argument("--energy", help="photon energy (default unit eV)")
    geo.add_argument("--distance", help="sample-detector distance (default unit m)")
    geo.add_argument("--pixel-size", help="pixel size, or ROW,COL sizes (default unit m)")
    geo.add_argument("--beam-center", metavar="ROW,COL", help="direct beam position, pixels")
    ana = parser.add_argument_group("analysis")
    ana.add_argument("--all-lags", action="store_true",
                     help="every lag up to half the series (FFT) instead of multi-tau")
    ana.add_argument("--buffers", type=int, default=8, help="multi-tau lags per level (8)")
    ana.add_argument("--normalize-frames", action="store_true",
                     help="divide every frame by its mean (beam fluctuations)")
    ana.add_argument("--exclude-frames", default="", metavar="LIST",
                     help="frames to leave out, e.g. 3,10-20")
    ana.add_argument("--no-twotime", action="store_true", help="skip the two-time maps")
    ana.add_argument("--model", default="single", choices=("single", "stretched", "double"),
                     help="g2 fit model (default single exponential)")
    ana.add_argument("--fix", action="append", metavar="NAME=VALUE",
                     help="hold a fit parameter fixed, e.g. baseline=1")
    ana.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))


def add_parsers(sub) -> None:
    """Add the ``xpcs`` and ``demo`` subcommands to an argparse subparsers object."""
    x = sub.add_parser("xpcs", help="XPCS quick check: g2, fits and a verdict",
                       description="XPCS quick check: g2, two-time, fits and a quality verdict.")
    x.add_argument("input", help="HDF5/NeXus, TIFF (file, folder or pattern), FITS or NumPy file")
    add_recipe_arguments(x)
    out = x.add_argument_group("output")
    out.add_argument("--out", required=True, help="result file (HDF5, APS layout)")
    out.add_argument("--csv-dir", help="also write g2 and fit tables as CSV here")
    out.add_argument("--png-dir", help="also write plots as PNG here")
    out.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    out.add_argument("--details", action="store_true",
                     help="list the verdict's reasons bin by bin under each problem")

    d = sub.add_parser("demo", help="run the XPCS quick check on the bundled demo data")
    d.add_argument("--out", help="result file (default: a temporary file)")
    d.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    d.add_argument("--details", action="store_true",
                   help="list the verdict's reasons bin by bin under each problem")
    x.set_defaults(run=_run_xpcs)
    d.set_defaults(run=_run_demo)


def recipe_from_args(args):
    """The :class:`~speckle.xpcs.recipe.XpcsRecipe` that ``speckle xpcs``'s options describe."""
    from ..xpcs.analysis import XpcsOptions
    from ..xpcs.partitions import parse_roi
    from ..xpcs.recipe import PartitionSpec, XpcsRecipe

    chosen = [bool(args.qmap), bool(args.roi), args.q_rings is not None]
    if sum(chosen) > 1:
        raise InvalidInputError("choose one of --qmap, --roi and --q-rings")
    q = {name: parse_quantity(getattr(args, name), "q") if getattr(args, name) else None
         for name in ("q_min", "q_width", "q_step")}
    if (q["q_min"] is None) != (q["q_width"] is None):
        raise InvalidInputError("give both --q-min and --q-width (or neither)")
    if args.qmap:
        spec = PartitionSpec(kind="qmap", qmap=args.qmap)
    elif args.roi:
        spec = PartitionSpec(kind="rois", rois=tuple(parse_roi(r) for r in args.roi))
    else:
        spec = PartitionSpec(kind="auto" if args.q_rings is None else "q_rings",
                             n_rings=args.q_rings or 8, static_per_ring=args.static_per_ring, **q)
    metadata = {
        "frame_time": parse_quantity(args.frame_time, "time") if args.frame_time else None,
        "energy": parse_quantity(args.energy, "energy") if args.energy else None,
        "distance": parse_quantity(args.distance, "length") if args.distance else None,
        "pixel_size": parse_pair(args.pixel_size, "length") if args.pixel_size else None,
        "beam_center": parse_pair(args.beam_center, None) if args.beam_center else None,
    }
    options = XpcsOptions(mode="alllags" if args.all_lags else "multitau", buffers=args.buffers,
                          normalize_frames=args.normalize_frames,
                          exclude_frames=tuple(parse_frames(args.exclude_frames)),
                          twotime=not args.no_twotime, fit_model=args.model,
                          fit_fixed=_fixed(args.fix) or None, device=args.device)
    return XpcsRecipe(partition=spec, metadata=metadata, options=options, dataset=args.dataset)


def _summary(result, out_path) -> dict:
    clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
    part = result.partition
    bins = []
    for b in range(part.n_dynamic):
        fit = result.fits[b] if b < len(result.fits) else None
        bv = result.verdict.bins[b]
        q = part.dynamic_q[b]
        ok = fit is not None and fit.success
        bins.append({
            "bin": b + 1,
            "label": part.labels[b],
            "q_inv_angstrom": None if not np.isfinite(q) else q * 1e-10,
            "tau_s": fit.params.get("tau") if ok else None,
            "tau_err_s": fit.errors.get("tau") if ok else None,
            "beta": fit.params.get("contrast") if ok else None,
            "verdict": bv.level,
            "reasons": [f.message + (f" — {f.action}" if f.action else "")
                        for f in bv.findings if f.level != "good"],
            "snr": None if bv.forecast is None else bv.forecast.snr,
            "count_longer": None if bv.forecast is None else {
                k: clean(v) for k, v in asdict(bv.forecast).items()
                if k not in ("bin", "label")},
        })
    verdict = result.verdict
    return {
        "input": result.parameters.get("source"),
        "output": str(out_path),
        "frames": result.parameters.get("n_frames"),
        "frame_time_s": result.metadata.frame_time,
        "verdict": verdict.level,
        "conclusion": verdict.conclusion,
        "action": verdict.action,
        "exclude_frames": verdict.exclude_frames,
        "problems": [{"level": p.level, "rule": p.rule, "headline": p.headline,
                      "action": p.action, "bins": p.labels,
                      "details": [f.message for f in p.findings]}
                     for p in verdict.problems()],
        "summary": verdict.summary,
        "reasons": verdict.reasons(),
        "bins": [{k: clean(v) for k, v in b.items()} for b in bins],
        "relaxation": None if result.relaxation is None else {
            k: clean(v) for k, v in result.relaxation.to_dict().items()},
    }


def _write_outputs(result, out, csv_dir, png_dir):
    from ..io.aps_result import write_aps_result

    write_aps_result(result, out)
    if csv_dir:
        from ..io.tables import write_fits_csv, write_g2_csv

        Path(csv_dir).mkdir(parents=True, exist_ok=True)
        write_g2_csv(result, Path(csv_dir) / "g2.csv")
        write_fits_csv(result, Path(csv_dir) / "fits.csv")
    if png_dir:
        from .. import plots

        Path(png_dir).mkdir(parents=True, exist_ok=True)
        plots.save_png(plots.plot_g2(result), Path(png_dir) / "g2.png")
        plots.save_png(plots.plot_intensity(result), Path(png_dir) / "intensity.png")
        plots.save_png(plots.plot_image(result.mean_image, "log", result.partition),
                       Path(png_dir) / "mean_image.png")
        for b in sorted(result.twotime):
            plots.save_png(plots.plot_twotime(result, b), Path(png_dir) / f"twotime_{b:03d}.png")


def _count_words(c) -> str:
    """A bin's count forecast in a few words."""
    if c is None:
        return ""
    if c["frames_needed"] is None:
        return "counting longer does not help"
    if not c["more_frames"]:
        return "long enough"
    at_least = "≥ " if c["at_least"] else ""
    return f"{at_least}{c['frames_needed']:,} frames ({c['seconds_needed']:.3g} s)"


def _print_human(summary, stream, details: bool = False):
    """The verdict first (conclusion, what to do first, problems), then one line per bin."""
    from ..xpcs.outliers import format_frames

    print(f"verdict: {summary['verdict'].upper()} — {summary['conclusion']}", file=stream)
    if summary["action"]:
        print(f"do first: {summary['action']}", file=stream)
    if summary["problems"]:
        print("problems:", file=stream)
    for i, p in enumerate(summary["problems"]):
        print(f"  {p['level']:<9} {p['headline']}", file=stream)
        action = p["action"] if i else ""
        if p["rule"] in ("outlier_frames", "empty_frames") and summary["exclude_frames"]:
            action = f"{p['action']}: --exclude-frames {format_frames(summary['exclude_frames'])}"
        if action:
            print(f"  {'':<9} → {action}", file=stream)
        if details and p["bins"]:
            for line in p["details"]:
                print(f"  {'':<9}   · {line}", file=stream)
    if summary["problems"] and not details and any(p["bins"] for p in summary["problems"]):
        print("  (--details: the reasons bin by bin)", file=stream)
    width = max([len(b["label"]) for b in summary["bins"]] + [4])
    print(f"  {'bin':<{width}}  verdict   {'τ (s)':<10} {'β':<6} {'g2 S/N':<7} count in all",
          file=stream)
    for b in summary["bins"]:
        tau = f"{b['tau_s']:.4g}" if b["tau_s"] is not None else "no fit"
        beta = f"{b['beta']:.3g}" if b["beta"] is not None else "—"
        snr = f"{b['snr']:.3g}" if b["snr"] is not None else "—"
        print(f"  {b['label']:<{width}}  {b['verdict']:<9} {tau:<10} {beta:<6} {snr:<7} "
              f"{_count_words(b['count_longer'])}", file=stream)
    print(f"result: {summary['output']}", file=stream)


def progress_bar(stream):
    """``progress(fraction, stage)`` drawing a one-line bar on ``stream`` when it is a terminal
    (big detectors take minutes); None otherwise, so that logs and pipes stay clean."""
    if not stream.isatty():
        return None

    def show(fraction, stage):
        filled = int(30 * fraction)
        stream.write(f"\r{stage:<12} [{'#' * filled}{'.' * (30 - filled)}] {100 * fraction:3.0f}%")
        if fraction >= 1:
            stream.write("\r" + " " * 60 + "\r")  # done: the bar makes way for the summary
        stream.flush()
    return show


def _run_xpcs(args) -> int:
    from ..xpcs.engine import preload

    # the compiled kernels load while the data and the regions are opened
    twotime = not getattr(args, "no_twotime", False)
    preload(modules=("kernels", "pair_kernels") if twotime else ("kernels",))
    recipe = recipe_from_args(args)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InvalidInputError(f"the output folder {out.parent} does not exist")
    result = recipe.run(args.input, progress=progress_bar(sys.stderr))
    _write_outputs(result, out, args.csv_dir, args.png_dir)
    summary = _summary(result, out)
    if args.json:
        json.dump(summary, sys.stdout, indent=2, allow_nan=False)
        print()
    else:
        _print_human(summary, sys.stdout, details=args.details)
    return 0


def _run_demo(args) -> int:
    from ..demo import DEMO_RINGS, demo_metadata, demo_path

    md = demo_metadata("xpcs")
    rings = DEMO_RINGS["xpcs"]
    out = args.out
    if not out:
        import tempfile  # noqa: PLC0415 - 4 ms of every command's start otherwise

        out = str(Path(tempfile.mkdtemp(prefix="speckle-demo-")) / "xpcs_demo_result.h5")
    argv = ["xpcs", str(demo_path("xpcs")), "--out", out,
            "--frame-time", repr(md["frame_time"]), "--energy", repr(md["energy"]),
            "--distance", repr(md["distance"]), "--pixel-size", repr(md["pixel_size"][0]),
            "--beam-center", ",".join(repr(v) for v in md["beam_center"]),
            "--q-rings", str(rings["n_rings"]), "--q-min", repr(rings["q_min"]),
            "--q-width", repr(rings["q_width"]),
            "--static-per-ring", str(rings["static_per_ring"])]
    argv += ["--json"] * args.json + ["--details"] * args.details
    from . import build_parser  # noqa: PLC0415 - the package imports this module

    return _run_xpcs(build_parser().parse_args(argv))
