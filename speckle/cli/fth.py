"""``speckle fth`` and ``speckle propagate``: holograms to reconstructions, and refocusing.

Thin adapters over :func:`speckle.imaging.workflow.run_fth` and
:func:`~speckle.imaging.workflow.run_refocus`: the flags make the options, the result is written
in its one layout (:mod:`speckle.io.imaging_result`, after the PNG pictures of
:func:`speckle.imaging.figures.result_figures`), and ``--json`` prints ``result.to_dict()`` with
the verdict.

``speckle fth HOLOGRAM --out RESULT.h5`` finds the hologram's centre (or takes ``--center``),
inverts it and finds the cross-terms. With ``--negative`` the second helicity's hologram is
combined into the magnetic (XMCD) difference ``positive − f·(positive + negative)``; its
reconstruction's global phase is rotated so that the magnetic contrast of the strongest
cross-term is real, and the charge (sum) reconstruction is written beside it.

``speckle propagate INPUT --out RESULT.h5 --energy 778eV --pixel-size 20nm --distances
-5um:5um:101`` propagates a field (or a region of it) over the distances, scores its sharpness
(:mod:`speckle.imaging.focus`) and writes the sharpness curves, the best distance and the field
there. INPUT is either a speckle imaging result (its complex ``reconstruction``, or the array
named by ``--dataset``) or any image speckle reads, which is taken as a real field (amplitude,
zero phase).

Both read every format :mod:`speckle.io` reads. Bad input exits with status 2, one line on
stderr, and writes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .common import (NUMBER_WITH_UNIT, check_outputs, emit_summary, parse_pair,
                     parse_quantity, write_image_outputs)

__all__ = ["add_parsers", "parse_distances", "parse_signed_length"]

_MAX_DISTANCES = 100_000
_RESULT_FIELDS = ("reconstruction", "field")  # what propagate takes from a result


def parse_signed_length(text: str) -> float:
    """``"-5um"``, ``"0"``, ``"2.5nm"`` into metres (a sign and zero allowed)."""
    raw = str(text).strip()
    sign = -1.0 if raw.startswith("-") else 1.0
    body = raw[1:] if raw[:1] in "+-" else raw
    m = NUMBER_WITH_UNIT.fullmatch(body)
    if m and float(m.group(1)) == 0:
        parse_quantity("1" + m.group(2), "length")  # the unit must still be a length
        return 0.0
    return sign * parse_quantity(body, "length")


def parse_distances(text: str) -> np.ndarray:
    """``"START:STOP:N"`` (N evenly spaced, ends included) or ``"a,b,c"`` into metres."""
    text = str(text).strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise InvalidInputError(f"cannot read the distances {text!r}: write START:STOP:N, "
                                    "e.g. -5um:5um:101")
        try:
            n = int(parts[2])
        except ValueError:
            raise InvalidInputError(f"cannot read the number of distances {parts[2]!r}: give a "
                                    "whole number, e.g. -5um:5um:101") from None
        if not 1 <= n <= _MAX_DISTANCES:
            raise InvalidInputError(f"the number of distances must be 1 to {_MAX_DISTANCES}, "
                                    f"got {n}")
        start, stop = parse_signed_length(parts[0]), parse_signed_length(parts[1])
        if n == 1 and start != stop:
            raise InvalidInputError("one distance between two different ends: give N ≥ 2")
        return np.linspace(start, stop, n)
    values = [parse_signed_length(p) for p in text.split(",") if p.strip()]
    if not values:
        raise InvalidInputError("give at least one distance, e.g. -5um:5um:101 or 1um,2um")
    return np.asarray(values)


# -- speckle fth -----------------------------------------------------------------------------

def add_parsers(sub) -> None:
    """Add the ``fth`` and ``propagate`` subcommands to an argparse subparsers object."""
    f = sub.add_parser("fth", help="Fourier transform holography: invert a hologram",
                       description="Invert a Fourier transform hologram to its complex "
                                   "reconstruction (centre found by cross-correlation with the "
                                   "180°-rotated hologram unless given).")
    f.add_argument("hologram", help="hologram: HDF5/NeXus, TIFF, FITS or NumPy file")
    f.add_argument("--dataset", help="dataset inside an HDF5 file (default: the only image)")
    f.add_argument("--frame", type=int, help="use this frame (default: average all frames)")
    f.add_argument("--center", metavar="ROW,COL",
                   help="zero frequency of the hologram, pixels (default: found)")
    f.add_argument("--apodization", type=float, default=0.0, metavar="F",
                   help="smooth edge window, fraction of the half-size 0-1 (default 0: none)")
    f.add_argument("--mask", metavar="FILE",
                   help="unmeasured pixels (set to zero): bools, integers or floats, non-zero "
                        "= unmeasured, in any format speckle reads")
    f.add_argument("--negative", metavar="HOLOGRAM",
                   help="opposite-helicity hologram: reconstruct the magnetic difference")
    f.add_argument("--helicity-factor", type=float, metavar="F",
                   help="f in positive − f·(positive + negative) (default: cancels the sum)")
    f.add_argument("--out", required=True, help="result file (HDF5)")
    f.add_argument("--png-dir", help="also write pictures (PNG) here")
    f.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    f.set_defaults(run=_run_fth)

    p = sub.add_parser("propagate", help="propagate a complex image over distances; sharpness",
                       description="Propagate a field (or a region) over a range of distances, "
                                   "score its sharpness and find the focus.")
    # distances such as -5um:5um:101 are values, not options
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    p.add_argument("input", help="speckle fth/cdi result (.h5), or an image in any format "
                                 "speckle reads (taken as a real field)")
    p.add_argument("--dataset", help="array of a result file (default: reconstruction or "
                                     "object), or dataset inside an HDF5 image file")
    p.add_argument("--frame", type=int, help="frame of an image file (default: average)")
    p.add_argument("--energy", required=True, help="photon energy (default unit eV), e.g. 778eV")
    p.add_argument("--pixel-size", required=True,
                   help="pixel size in the object plane, or ROW,COL sizes (default unit m), "
                        "e.g. 20nm")
    p.add_argument("--distances", required=True, metavar="START:STOP:N",
                   help="propagation distances (default unit m), e.g. -5um:5um:101, or a list "
                        "1um,2um")
    p.add_argument("--region", metavar="ROW0:ROW1,COL0:COL1",
                   help="propagate only this region (half-open pixel ranges)")
    p.add_argument("--metric", default=None,
                   help="sharpness metric that picks the focus (default edge_sparsity)")
    p.add_argument("--extremum", choices=("max", "min"),
                   help="focus at the metric's maximum or minimum (default: the metric's "
                        "usual one; phase objects may need min with brenner)")
    p.add_argument("--method", default="angular", choices=("angular", "fresnel"))
    p.add_argument("--no-refine", action="store_true",
                   help="report the best sampled distance, without golden-section refinement")
    p.add_argument("--out", required=True, help="result file (HDF5)")
    p.add_argument("--png-dir", help="also write pictures (PNG) here")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(run=_run_propagate)


def _read(path, dataset, frame):
    from ..io.images import read_image

    image, _ = read_image(path, dataset=dataset, frame=frame)
    return image


def _write(result, out, png):
    """PNG pictures, then the result file in its one layout; returns the pictures written."""
    from ..imaging.figures import result_figures
    from ..io.imaging_result import imaging_result_content

    figures = result_figures(result) if png is not None else {}
    return write_image_outputs(out, *imaging_result_content(result), png, figures)


def _run_fth(args) -> int:
    from ..imaging.options import FthOptions
    from ..imaging.workflow import run_fth
    from ..io.images import read_mask

    out, png = check_outputs(args)
    if args.helicity_factor is not None and not args.negative:
        raise InvalidInputError("--helicity-factor needs --negative (the second helicity)")
    options = FthOptions(center=parse_pair(args.center, None) if args.center else None,
                         apodization=args.apodization, helicity_factor=args.helicity_factor)
    positive = _read(args.hologram, args.dataset, args.frame)
    negative = _read(args.negative, args.dataset, args.frame) if args.negative else None
    mask = read_mask(args.mask, positive.shape) if args.mask else None
    result = run_fth(positive, options, negative=negative, mask=mask,
                     source=str(args.hologram))
    if args.negative:
        result.negative_source = str(args.negative)
    pictures = _write(result, out, png)
    summary = {**result.to_dict(), "output": str(out), "pictures": pictures}
    terms = result.cross_terms
    human = [f"centre: row {result.center[0]:.2f}, col {result.center[1]:.2f}",
             f"cross-terms: {len(terms)}" + "".join(
                 f"\n  [{t.box[0]}:{t.box[1]}, {t.box[2]}:{t.box[3]}] at ({t.row:.1f}, "
                 f"{t.col:.1f})" for t in terms),
             result.verdict.summary, f"result: {out}"]
    emit_summary(summary, args.json, human)
    return 0


# -- speckle propagate -----------------------------------------------------------------------

def _is_result_file(path) -> bool:
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return isinstance(f.get("speckle", getlink=True), h5py.HardLink) and \
                "kind" in f["speckle"].attrs
    except OSError:
        return False


def _field(args):
    """The input field and a description of where it came from."""
    from ..io.images import read_image_result

    path = Path(args.input)
    if path.is_file() and _is_result_file(path):
        arrays, attrs = read_image_result(path)
        if args.dataset:
            if args.dataset not in arrays:
                raise InvalidInputError(f"{path}: no array {args.dataset!r}; it has "
                                        f"{', '.join(sorted(arrays)) or 'none'}")
            name = args.dataset
        else:
            name = next((n for n in _RESULT_FIELDS if n in arrays), None)
            if name is None:
                raise InvalidInputError(f"{path}: no reconstruction in this {attrs.get('kind')} "
                                        f"result; name an array with --dataset "
                                        f"({', '.join(sorted(arrays))})")
        field = np.asarray(arrays[name])
        if field.ndim != 2:
            raise InvalidInputError(f"{path}: the array {name!r} has shape {field.shape}; "
                                    "give a 2D image")
        return field, f"{path}:{name}"
    return _read(args.input, args.dataset, args.frame), str(path)


def _run_propagate(args) -> int:
    from ..imaging.focus import RECOMMENDED_METRIC
    from ..imaging.options import RefocusOptions
    from ..imaging.workflow import run_refocus
    from ..xpcs.partitions import parse_roi

    out, png = check_outputs(args)
    distances = parse_distances(args.distances)
    options = RefocusOptions(
        energy=parse_quantity(args.energy, "energy"),
        pixel_size=parse_pair(args.pixel_size, "length"),
        distance_list=tuple(float(d) for d in distances),
        region=tuple(parse_roi(args.region)) if args.region else None,
        metric=args.metric or RECOMMENDED_METRIC, extremum=args.extremum, method=args.method,
        refine=not args.no_refine)
    field, source = _field(args)
    result = run_refocus(field, options, source=source)
    pictures = _write(result, out, png)
    summary = {**result.to_dict(), "output": str(out), "pictures": pictures}
    r0, r1, c0, c1 = result.region
    human = [f"swept {len(distances)} distances from {distances.min() * 1e6:.3f} to "
             f"{distances.max() * 1e6:.3f} µm over a {r1 - r0} × {c1 - c0} region",
             f"focus ({options.metric}): {result.focus_distance * 1e6:.3f} µm",
             result.verdict.summary, f"result: {out}"]
    emit_summary(summary, args.json, human)
    return 0
