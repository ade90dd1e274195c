"""``speckle fth`` and ``speckle propagate``: holograms to reconstructions, and refocusing.

``speckle fth HOLOGRAM --out RESULT.h5`` finds the hologram's centre (or takes ``--center``),
inverts it (:func:`speckle.imaging.fth.reconstruct`) and writes the complex reconstruction. With
``--negative`` the second helicity's hologram is combined into the magnetic (XMCD) difference
``positive − f·(positive + negative)``; its reconstruction's global phase is rotated so that the
magnetic contrast of the strongest cross-term is real, and the charge (sum) reconstruction is
written beside it.

``speckle propagate INPUT --out RESULT.h5 --energy 778eV --pixel-size 20nm --distances
-5um:5um:101`` propagates a field (or a region of it) over the distances, scores its sharpness
(:mod:`speckle.imaging.focus`) and writes the sharpness curves, the best distance and the field
there. INPUT is either a speckle imaging result (``speckle fth``/``speckle cdi`` output: its
complex ``reconstruction`` or ``object``, or the array named by ``--dataset``) or any image
speckle reads, which is taken as a real field (amplitude, zero phase).

Both read every format :mod:`speckle.io` reads, write one HDF5 file atomically
(:func:`speckle.io.images.write_image_result`), optionally PNG pictures, and with ``--json`` print
a summary as one JSON document on stdout. Bad input exits with status 2, one line on stderr, and
writes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .common import (NUMBER_WITH_UNIT, check_outputs, emit_summary, finite_or_none,
                     parse_pair, parse_quantity, write_image_outputs)

__all__ = ["add_parsers", "parse_distances", "parse_signed_length"]

_MAX_DISTANCES = 100_000
_RESULT_FIELDS = ("reconstruction", "object", "field")  # what propagate takes from a result


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


def _run_fth(args) -> int:
    from ..imaging.display import plot_complex
    from ..imaging.fth import (find_center, detect_cross_terms, helicity_difference, reconstruct,
                               rotate_phase_to_real)
    from ..plots import plot_image

    out, png = check_outputs(args)
    if args.helicity_factor is not None and not args.negative:
        raise InvalidInputError("--helicity-factor needs --negative (the second helicity)")
    positive = _read(args.hologram, args.dataset, args.frame)
    center = parse_pair(args.center, None) if args.center else None
    arrays, attrs = {}, {"kind": "fth", "source": str(args.hologram)}
    charge = None
    if args.negative:
        negative = _read(args.negative, args.dataset, args.frame)
        if negative.shape != positive.shape:
            raise InvalidInputError(f"the holograms have different shapes {positive.shape} and "
                                    f"{negative.shape}; give the same detector region")
        total = positive + negative
        factor = args.helicity_factor
        if factor is None:
            factor = float(np.nansum(positive) / np.nansum(total))
        hologram = helicity_difference(positive, negative, factor)
        center = center or find_center(total)  # the sum is the better-defined pattern
        charge = reconstruct(total, center=center, apodization=args.apodization)
        attrs.update(negative=str(args.negative), helicity_factor=float(factor))
    else:
        hologram = positive
    rec = reconstruct(hologram, center=center, apodization=args.apodization)
    terms = detect_cross_terms(charge.image if charge is not None else rec.image)
    image = rec.image
    if charge is not None and terms:
        image, phi = rotate_phase_to_real(image, region=terms[0].box)
        attrs["phase_rotation_rad"] = phi
    arrays["reconstruction"] = image
    arrays["hologram"] = hologram
    if charge is not None:
        arrays["charge_reconstruction"] = charge.image
    terms_out = [{"row": t.row, "col": t.col, "box": list(t.box), "strength": t.strength}
                 for t in terms]
    attrs.update(center=list(rec.center), apodization=rec.apodization, cross_terms=terms_out,
                 shape=list(image.shape))
    figures = {}
    if png is not None:
        figures["hologram"] = plot_image(np.nan_to_num(hologram if charge is None else
                                                       positive + negative), "log",
                                         title="hologram" if charge is None else "sum")
        # the autocorrelation's centre outshines everything: saturate it
        vmax = float(np.percentile(np.abs(image), 99.5))
        figures["reconstruction"] = plot_complex(image, "log", vmax=vmax or None,
                                                 title="reconstruction (log)")
        for i, t in enumerate(terms[:4], start=1):
            r0, r1, c0, c1 = t.box
            figures[f"cross_term_{i}"] = plot_complex(
                image[r0:r1, c0:c1], "linear", title=f"cross-term {i} [{r0}:{r1}, {c0}:{c1}]")
    pngs = write_image_outputs(out, arrays, attrs, png, figures)
    summary = {"input": str(args.hologram), "negative": args.negative, "output": str(out),
               "shape": list(image.shape), "center": list(rec.center),
               "apodization": rec.apodization,
               "helicity_factor": attrs.get("helicity_factor"),
               "phase_rotation_rad": attrs.get("phase_rotation_rad"),
               "cross_terms": terms_out, "png": pngs}
    human = [f"centre: row {rec.center[0]:.2f}, col {rec.center[1]:.2f}",
             f"cross-terms: {len(terms)}" + "".join(
                 f"\n  [{t.box[0]}:{t.box[1]}, {t.box[2]}:{t.box[3]}] at ({t.row:.1f}, "
                 f"{t.col:.1f})" for t in terms),
             f"result: {out}"]
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


def _region(text, shape):
    from ..xpcs.partitions import parse_roi

    from ..imaging.focus import MIN_REGION_SIDE

    r0, r1, c0, c1 = parse_roi(text)
    if not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]):
        raise InvalidInputError(f"the region [{r0}:{r1}, {c0}:{c1}] is empty or outside the "
                                f"{shape[0]} × {shape[1]} image")
    if min(r1 - r0, c1 - c0) < MIN_REGION_SIDE:
        raise InvalidInputError(f"the region [{r0}:{r1}, {c0}:{c1}] is {r1 - r0} × {c1 - c0} "
                                f"pixels; give one of at least {MIN_REGION_SIDE} × "
                                f"{MIN_REGION_SIDE} pixels")
    return r0, r1, c0, c1


def _sharpness_figure(sweep, metric, best):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    z_um = sweep.distances * 1e6
    for name, values in sweep.sharpness.items():
        v = np.asarray(values, float)
        span = np.nanmax(v) - np.nanmin(v)
        norm = (v - np.nanmin(v)) / span if span > 0 else v * 0
        ax.plot(z_um, norm, lw=2.2 if name == metric else 1, label=name)
    ax.axvline(best * 1e6, color="k", ls="--", lw=1, label=f"focus {best * 1e6:.3f} µm")
    ax.set_xlabel("propagation distance (µm)")
    ax.set_ylabel("sharpness (each scaled to 0-1)")
    ax.legend(fontsize="small")
    return fig


def _run_propagate(args) -> int:
    from ..imaging.display import plot_complex
    from ..imaging.focus import (METRICS, RECOMMENDED_METRIC, autofocus, focus_sweep,
                                 sharpness)
    from ..imaging.propagation import wavelength_from_energy
    from ..plots import plot_image

    out, png = check_outputs(args)
    metric = args.metric or RECOMMENDED_METRIC
    if metric not in METRICS:
        raise InvalidInputError(f"unknown --metric {metric!r}; choose from {', '.join(METRICS)}")
    energy = parse_quantity(args.energy, "energy")
    wavelength = wavelength_from_energy(energy)
    pixel = parse_pair(args.pixel_size, "length")
    distances = parse_distances(args.distances)
    field, source = _field(args)
    region = _region(args.region, field.shape) if args.region else (0, field.shape[0], 0,
                                                                   field.shape[1])
    r0, r1, c0, c1 = region
    part = field[r0:r1, c0:c1]
    if not np.isfinite(part).all():
        raise InvalidInputError("the field has NaN or infinite pixels in the region; choose a "
                                "region without them (--region)")
    sweep = focus_sweep(part, distances, pixel_size=pixel, wavelength=wavelength,
                        method=args.method)
    best = sweep.best(metric, args.extremum)
    refined = None
    if not args.no_refine and len(distances) >= 3:
        refined = autofocus(part, (distances.min(), distances.max()), pixel_size=pixel,
                            wavelength=wavelength, metric=metric, method=args.method,
                            n_sweep=min(len(distances), 201), extremum=args.extremum)
    focus = refined if refined is not None else best
    focused = sweep.field_at(focus)
    arrays = {"distances": distances, "field": part, "focused": focused}
    arrays.update({f"sharpness_{n}": v for n, v in sweep.sharpness.items()})
    attrs = {"kind": "propagation", "source": source, "energy_ev": energy,
             "wavelength_m": wavelength, "pixel_size_m": list(pixel), "method": args.method,
             "region": list(region), "metric": metric,
             "extremum": args.extremum or "default", "best_distance_m": best,
             "focus_distance_m": focus, "refined": refined is not None}
    figures = {}
    if png is not None:
        from ..imaging.focus import gradient_magnitude

        figures["sharpness"] = _sharpness_figure(sweep, metric, focus)
        figures["focused"] = plot_complex(focused, "linear", pixel_size=pixel[1],
                                          title=f"at {focus * 1e6:.3f} µm")
        figures["focused_gradient"] = plot_image(np.asarray(gradient_magnitude(focused)),
                                                 "linear", title="gradient of |field|")
    pngs = write_image_outputs(out, arrays, attrs, png, figures)
    summary = {"input": source, "output": str(out), "energy_ev": energy,
               "pixel_size_m": list(pixel), "region": list(region), "method": args.method,
               "n_distances": int(len(distances)), "metric": metric,
               "best_distance_m": best, "focus_distance_m": focus,
               "sharpness_at_focus": finite_or_none(sharpness(focused, metric)),
               "png": pngs}
    human = [f"swept {len(distances)} distances from {distances.min() * 1e6:.3f} to "
             f"{distances.max() * 1e6:.3f} µm over a {r1 - r0} × {c1 - c0} region",
             f"focus ({metric}): {focus * 1e6:.3f} µm",
             f"result: {out}"]
    emit_summary(summary, args.json, human)
    return 0
