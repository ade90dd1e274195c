"""Imaging results in files: one versioned layout per kind, written and read only here.

:func:`write_imaging_result` writes an :class:`~speckle.imaging.results.FthResult`,
:class:`~speckle.imaging.results.CdiResult` or :class:`~speckle.imaging.results.RefocusResult`
as one HDF5 file, atomically (through :func:`speckle.io.images.write_image_result`);
:func:`read_imaging_result` reads it back into the same class. The command line, the
dashboards and the notebooks all write through here, so the same input gives the same file.

Layout (``LAYOUT_VERSION`` 1)::

    /speckle  @kind = "fth" | "cdi" | "propagation"   @layout_version = 1
              @source, @options (JSON), @verdict (JSON: level, summary, action, reasons),
              @elapsed_s, and per kind:
      fth          @center, @helicity_factor, @phase_rotation_rad, @negative, @cross_terms,
                   @region (chosen to refocus, or null)
                   /reconstruction (complex), /hologram, [/charge_reconstruction]
      cdi          @support_method, @final_error, @trial_spread, @iterations, @kept_trials,
                   @center, @background, @device, @prtf_cutoff_q_fraction,
                   @resolution_pixels, @cross_terms, @shadowed_pixels, @floor_share
                   /reconstruction (complex), /support, /initial_support, /pattern, /mask,
                   /errors, /trial_errors, /estimate_errors, /trials,
                   [/prtf_q, /prtf], [/frc_q, /frc]
      propagation  @region, @wavelength_m, @best_distance_m, @focus_distance_m,
                   @energy_ev, @pixel_size_m, @metric, @source_kind
                   /distances, /field (the region, apodized), /focused,
                   /sharpness_<metric> (one per metric), [/image (the whole field)]

Lengths are in metres, energies in eV, angles in radians.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .images import read_image_result, write_image_result

__all__ = ["LAYOUT_VERSION", "read_imaging_result", "write_imaging_result"]

LAYOUT_VERSION = 1


def _common(result) -> dict:
    return {"kind": result.kind, "layout_version": LAYOUT_VERSION, "source": result.source,
            "options": result.options.to_dict(), "verdict": result.verdict.to_dict(),
            "elapsed_s": float(result.elapsed_s)}


def _fth(result):
    arrays = {"reconstruction": result.reconstruction, "hologram": result.hologram}
    if result.charge_reconstruction is not None:
        arrays["charge_reconstruction"] = result.charge_reconstruction
    attrs = {"center": list(result.center), "helicity_factor": result.helicity_factor,
             "phase_rotation_rad": result.phase_rotation, "negative": result.negative_source,
             "cross_terms": [t.to_dict() for t in result.cross_terms],
             "region": None if result.region is None else list(result.region)}
    return arrays, attrs


def _cdi(result):
    arrays = {"reconstruction": result.reconstruction, "support": result.support,
              "initial_support": result.initial_support, "pattern": result.pattern,
              "mask": result.mask, "errors": result.errors,
              "trial_errors": result.trial_errors, "estimate_errors": result.estimate_errors,
              "trials": result.trials}
    if result.prtf is not None:
        arrays["prtf_q"], arrays["prtf"] = result.prtf
    if result.frc is not None:
        arrays["frc_q"], arrays["frc"] = result.frc
    d = result.to_dict()
    attrs = {name: d[name] for name in (
        "support_method", "final_error", "trial_spread", "iterations", "center", "background",
        "device", "prtf_cutoff_q_fraction", "resolution_pixels", "cross_terms",
        "shadowed_pixels", "floor_share")}
    attrs["kept_trials"] = d["kept_trials"]
    return arrays, attrs


def _refocus(result):
    arrays = {"distances": result.distances, "field": result.field, "focused": result.focused}
    if result.image is not None:
        arrays["image"] = result.image
    arrays.update({f"sharpness_{k}": v for k, v in result.sharpness.items()})
    px = result.options.pixel_size
    attrs = {"region": list(result.region), "wavelength_m": result.wavelength,
             "best_distance_m": result.best_distance, "focus_distance_m": result.focus_distance,
             "energy_ev": result.options.energy, "metric": result.options.metric,
             "source_kind": result.source_kind,
             "pixel_size_m": list(px) if isinstance(px, tuple) else px}
    return arrays, attrs


_WRITERS = {"fth": _fth, "cdi": _cdi, "propagation": _refocus}


def imaging_result_content(result) -> tuple[dict, dict]:
    """The arrays and attributes :func:`write_imaging_result` stores for ``result``."""
    kind = getattr(result, "kind", None)
    if kind not in _WRITERS:
        raise InvalidInputError(f"not an imaging result: {type(result).__name__}")
    arrays, attrs = _WRITERS[kind](result)
    return arrays, {**_common(result), **attrs}


def write_imaging_result(result, path):
    """Write an imaging result as one HDF5 file (complete or absent) in the layout above.

    Parameters
    ----------
    result : FthResult, CdiResult or RefocusResult
    path : path-like
        Its folder must exist.

    Returns
    -------
    pathlib.Path
    """
    arrays, attrs = imaging_result_content(result)
    return write_image_result(path, arrays, attrs)


def read_imaging_result(path):
    """Read a file written by :func:`write_imaging_result` back into its result class.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    FthResult, CdiResult or RefocusResult

    Raises
    ------
    InvalidInputError
        When the file is not an imaging result of a layout this version reads (older files
        without ``layout_version`` are refused with a message saying so).
    """
    from ..imaging.fth import CrossTerm  # noqa: PLC0415 - io is imported by imaging
    from ..imaging.options import CdiOptions, FthOptions, RefocusOptions  # noqa: PLC0415
    from ..imaging.results import CdiResult, FthResult, RefocusResult  # noqa: PLC0415
    from ..imaging.verdict import ImagingVerdict  # noqa: PLC0415

    arrays, attrs = read_image_result(path)
    version = attrs.get("layout_version")
    if version != LAYOUT_VERSION:
        raise InvalidInputError(
            f"{path}: an imaging result of layout version {version!r}; this speckle reads "
            f"version {LAYOUT_VERSION} (files written before it hold the arrays only: "
            "speckle.io.images.read_image_result reads them)")
    kind = attrs["kind"]
    try:
        verdict = ImagingVerdict.from_dict(attrs["verdict"])
        common = {"verdict": verdict, "source": str(attrs.get("source", "")),
                  "elapsed_s": float(attrs.get("elapsed_s", 0.0))}
        terms = [CrossTerm.from_dict(t) for t in attrs.get("cross_terms") or []]
        if kind == "fth":
            return FthResult(
                reconstruction=arrays["reconstruction"], hologram=arrays["hologram"],
                center=tuple(attrs["center"]), cross_terms=terms,
                options=FthOptions.from_dict(attrs["options"]),
                charge_reconstruction=arrays.get("charge_reconstruction"),
                helicity_factor=attrs.get("helicity_factor"),
                phase_rotation=attrs.get("phase_rotation_rad"),
                negative_source=attrs.get("negative"),
                region=None if attrs.get("region") is None else tuple(attrs["region"]),
                **common)
        if kind == "cdi":
            pair = (lambda a, b: (arrays[a], arrays[b]) if a in arrays and b in arrays
                    else None)
            center = attrs.get("center")
            return CdiResult(
                reconstruction=arrays["reconstruction"], support=arrays["support"],
                initial_support=arrays["initial_support"],
                support_method=str(attrs["support_method"]), pattern=arrays["pattern"],
                mask=arrays["mask"], errors=arrays["errors"],
                trial_errors=arrays["trial_errors"], estimate_errors=arrays["estimate_errors"],
                trials=arrays["trials"], kept=list(attrs.get("kept_trials") or []),
                final_error=float(attrs["final_error"]), trial_spread=attrs.get("trial_spread"),
                prtf=pair("prtf_q", "prtf"), frc=pair("frc_q", "frc"),
                iterations=int(attrs["iterations"]),
                options=CdiOptions.from_dict(attrs["options"]),
                center=None if center is None else tuple(center),
                background=attrs.get("background"), device=str(attrs.get("device", "cpu")),
                cross_terms=terms, shadowed=int(attrs.get("shadowed_pixels") or 0),
                floor_share=attrs.get("floor_share"), **common)
        sharpness = {name[len("sharpness_"):]: np.asarray(a) for name, a in arrays.items()
                     if name.startswith("sharpness_")}
        return RefocusResult(
            distances=arrays["distances"], sharpness=sharpness, field=arrays["field"],
            focused=arrays["focused"], best_distance=float(attrs["best_distance_m"]),
            focus_distance=float(attrs["focus_distance_m"]), region=tuple(attrs["region"]),
            wavelength=float(attrs["wavelength_m"]),
            options=RefocusOptions.from_dict(attrs["options"]), image=arrays.get("image"),
            source_kind=str(attrs.get("source_kind") or ""), **common)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: a damaged {kind} result ({exc.__class__.__name__}: "
                                f"{exc})") from None
