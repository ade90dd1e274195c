"""The imaging workflow: one call from data and options to a result with a verdict.

As :func:`speckle.xpcs.analysis.analyze` is for XPCS, these are the one way to do holography,
refocusing and phase retrieval; the command line, the dashboards, the example notebooks and
the beamtime monitor are thin adapters over them:

- :func:`run_fth` (:class:`FthOptions` → :class:`FthResult`): centre, inversion, helicity
  difference, cross-terms, verdict.
- :func:`run_cdi` (:class:`CdiOptions` → :class:`CdiResult`): pattern preparation
  (:func:`~speckle.imaging.prepare.prepare_pattern`), initial support (holographic when the
  sample carries references, else from the autocorrelation), phasing with shrink-wrap, trials
  aligned and averaged, PRTF/FRC, verdict.
- :func:`run_refocus` (:class:`RefocusOptions` → :class:`RefocusResult`): a focus sweep with
  autofocus.
- :func:`find_cross_terms`: the cross-terms of a pattern or hologram outside its central
  autocorrelation (empty for a plain CDI pattern of a compact object): a content test that tells
  a hologram (or a sample with reference apertures) from a plain diffraction pattern.

Data are a :class:`~speckle.io.dataset.Dataset`, a file path or an array (frames are
averaged). ``progress(fraction, stage)`` is called as the work goes on; ``cancel()`` is polled
and, when it returns True, :class:`~speckle.errors.Cancelled` is raised; ``source`` names the
data in the result (default: the file's name, or ``"<array>"``). Results are written by
:func:`speckle.io.imaging_result.write_imaging_result` and read back by
:func:`speckle.io.imaging_result.read_imaging_result`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import Cancelled, InvalidInputError
from ..io.dataset import Dataset
from ..io.images import read_image
from .beamstop import fill_beamstop
from .floor import incoherent_floor
from .fth import (HOLOGRAM_WEIGHT, detect_cross_terms, find_center, helicity_difference,
                  reconstruct, rotate_phase_to_real)
from .options import SUPPORT_METHODS, CdiOptions, FthOptions, RefocusOptions
from .phasing import phase_retrieval
from .prepare import PreparedPattern, as_mask, prepare_pattern
from .results import CdiResult, FthResult, RefocusResult
from .support import (autocorrelation_map, support_from_autocorrelation,
                      support_from_cross_terms, support_from_rectangles)
from .verdict import judge_cdi, judge_fth, judge_refocus

__all__ = ["CdiOptions", "CdiResult", "FthOptions", "FthResult", "RefocusOptions",
           "RefocusResult", "SUPPORT_METHODS", "SUPPORT_NAMES", "find_cross_terms",
           "initial_support", "object_region", "run_cdi", "run_fth", "run_refocus"]

#: Pixels added around an object's region (:func:`object_region`).
REGION_MARGIN = 4

#: How the initial support of :func:`run_cdi` is named in results and summaries.
SUPPORT_NAMES = {"fth": "holographic cross-terms", "autocorrelation": "autocorrelation",
                 "rectangles": "rectangles"}


class _Steps:
    """progress and cancel as the run functions use them."""

    def __init__(self, progress, cancel):
        self.progress = progress or (lambda fraction, stage: None)
        self.cancel = cancel

    def __call__(self, fraction: float, stage: str) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled(f"cancelled while {stage}")
        self.progress(fraction, stage)

    def part(self, start: float, stop: float):
        """A progress callback mapping 0-1 onto ``start``-``stop``."""
        return lambda fraction, stage: self.progress(start + (stop - start) * fraction, stage)


def _read(data, source):
    """One 2D float64 image from a Dataset, a path or an array, and its name."""
    if isinstance(data, Dataset):
        name = data.source
    elif isinstance(data, (str, Path)):
        name = str(data)
    else:
        name = "<array>"
    image, _ = read_image(data)
    return image, str(source) if source is not None else name


def find_cross_terms(pattern_or_hologram, *, mask=None, center=None) -> list:
    """The cross-terms of a hologram or diffraction pattern, outside its central autocorrelation.

    The pattern is centred (on its centre of symmetry, or ``center``), the intensity behind
    a beamstop (unmeasured pixels at the centre, or pixels reading ≤ 0 there) estimated from
    the compactness of the autocorrelation (:func:`speckle.imaging.beamstop.fill_beamstop`),
    other unmeasured pixels filled from their neighbours and the autocorrelation cleaned
    (:func:`speckle.imaging.support.autocorrelation_map`); the cross-terms are the regions
    that stand out from the noise outside the central autocorrelation
    (:func:`speckle.imaging.fth.detect_cross_terms`).

    A Fourier transform hologram (or a CDI sample carrying reference apertures) has them: one
    pair of twins per reference, at ± the object's position relative to that reference; the
    pattern of a single compact object has none. On simulated holograms with 1-3 pixel pinhole
    references (one or two), absorbing and phase objects, Poisson noise (1e9 photons) and no
    beamstop or one of 2-4 pixels radius, every term is found within 2.7 pixels of the truth
    and paired with its twin (54 cases; with 1e8 photons and beamstops of 3 and 5 pixels, all
    36 within 5 pixels).

    Parameters
    ----------
    pattern_or_hologram : Dataset, path or array
        Diffraction intensity (frames are averaged).
    mask : array_like, optional
        Unmeasured pixels (bool, or numbers where non-zero).
    center : (float, float), optional
        The pattern's zero frequency (row, col); None: found.

    Returns
    -------
    list of CrossTerm
        Strongest first; positions in the centred reconstruction's pixels (the frame's centre
        is ``(rows // 2, cols // 2)``); each knows the index of its twin. Empty when there are
        none.
    """
    image, _ = _read(pattern_or_hologram, None)
    prepared = prepare_pattern(image, mask, center="auto" if center is None else center)
    return _cross_terms(prepared.pattern, prepared.mask)


def _cross_terms(pattern, mask):
    """Cross-terms of a centred, prepared pattern (the intensity behind a beamstop estimated
    first: :func:`speckle.imaging.beamstop.fill_beamstop`)."""
    filled, hidden = fill_beamstop(pattern, mask)
    return detect_cross_terms(autocorrelation_map(filled, mask=np.asarray(mask) & ~hidden,
                                                  local_energy=False))


# -- FTH -------------------------------------------------------------------------------------

def run_fth(data, options: FthOptions | None = None, *, negative=None, mask=None,
            progress: Callable | None = None, cancel: Callable | None = None,
            source: str | None = None) -> FthResult:
    """Invert a Fourier transform hologram: centre, reconstruction, cross-terms, verdict.

    Parameters
    ----------
    data : Dataset, path or array
        The hologram (frames are averaged); with ``negative``, the positive helicity.
    options : FthOptions, optional
    negative : Dataset, path or array, optional
        The opposite helicity: the XMCD difference ``positive − f·(positive + negative)`` is
        reconstructed, its phase rotated so that the magnetic contrast of the strongest
        cross-term is real; the sum's reconstruction is kept beside it.
    mask : array_like, optional
        Unmeasured pixels (set to zero before the inversion).
    progress, cancel, source
        See the module.

    Returns
    -------
    FthResult

    Raises
    ------
    InvalidInputError
        For unreadable data, shapes that differ, or bad options.
    Cancelled
    """
    started = time.perf_counter()
    opts = options or FthOptions()
    step = _Steps(progress, cancel)
    step(0.0, "reading the hologram")
    positive, name = _read(data, source)
    unmeasured = as_mask(mask, positive.shape) | ~np.isfinite(positive)
    charge = factor = negative_name = None
    if negative is not None:
        neg, negative_name = _read(negative, None)
        if neg.shape != positive.shape:
            raise InvalidInputError(f"the holograms have different shapes {positive.shape} and "
                                    f"{neg.shape}; give the same detector region")
        unmeasured |= ~np.isfinite(neg)
        positive, neg = (np.where(unmeasured, 0.0, a) for a in (positive, neg))
        total = positive + neg
        factor = opts.helicity_factor
        if factor is None:
            norm = float(total.sum())
            if norm == 0:
                raise InvalidInputError("the two holograms sum to zero; cannot normalise them")
            factor = float(positive.sum()) / norm
        hologram = np.asarray(helicity_difference(positive, neg, factor))
    else:
        total = hologram = np.where(unmeasured, 0.0, positive)
    step(0.2, "finding the centre")
    center = opts.center if opts.center is not None else find_center(
        total, weight=HOLOGRAM_WEIGHT)
    step(0.4, "reconstructing")
    rec = reconstruct(hologram, center=center, apodization=opts.apodization)
    if negative is not None:
        charge = reconstruct(total, center=rec.center, apodization=opts.apodization).image
    step(0.6, "finding the cross-terms")
    prepared = prepare_pattern(total, unmeasured, center=rec.center)
    terms = _cross_terms(prepared.pattern, prepared.mask)
    image, phi = rec.image, None
    if negative is not None and terms and opts.rotate_phase:
        image, phi = rotate_phase_to_real(image, region=terms[0].box)
    step(0.9, "judging")
    pairs = sum(1 for i, t in enumerate(terms) if t.twin is not None and t.twin > i)
    return FthResult(reconstruction=np.asarray(image), hologram=hologram, center=rec.center,
                     cross_terms=terms, options=opts,
                     verdict=judge_fth(n_terms=len(terms), n_pairs=pairs), source=name,
                     charge_reconstruction=charge, helicity_factor=factor, phase_rotation=phi,
                     negative_source=negative_name, elapsed_s=time.perf_counter() - started)


# -- CDI -------------------------------------------------------------------------------------

def initial_support(prepared, opts: CdiOptions):
    """The initial support :func:`run_cdi` starts from, as ``opts.support`` asks.

    Parameters
    ----------
    prepared : PreparedPattern
        From :func:`~speckle.imaging.prepare.prepare_pattern`.
    opts : CdiOptions

    Returns
    -------
    support : numpy bool ndarray
    method : str
        ``"fth"``, ``"autocorrelation"`` or ``"rectangles"`` (the key of :data:`SUPPORT_NAMES`).
    cross_terms : list of CrossTerm
        Found in the pattern (empty with rectangles).

    Raises
    ------
    InvalidInputError
        For ``support="fth"`` on a pattern without usable cross-terms, or bad rectangles.
    """
    shape = prepared.pattern.shape
    if opts.support == "rectangles":
        return support_from_rectangles(shape, opts.support_rects), "rectangles", []
    terms = _cross_terms(prepared.pattern, prepared.mask)
    if opts.support in ("auto", "fth") and terms:
        support = support_from_cross_terms(prepared.pattern, terms, mask=prepared.mask,
                                           threshold=opts.support_threshold)
        if support is not None:
            return support, "fth", terms
    if opts.support == "fth":
        raise InvalidInputError("support 'fth' needs cross-terms of reference apertures, and "
                                "this pattern has none that give a support; use "
                                "support 'autocorrelation' or rectangles")
    support = support_from_autocorrelation(prepared.pattern, opts.support_threshold,
                                           mask=prepared.mask)
    return np.asarray(support), "autocorrelation", terms


#: Patterns at least this large (pixels along the smaller side) are phased at half resolution
#: first (their central half: the low frequencies); see :func:`_coarse_pass`.
COARSE_FROM = 512


def _floor(prepared, opts: CdiOptions):
    """The incoherent floor of a prepared pattern, or None when the options leave it out."""
    if not opts.incoherent_floor:
        return None
    return incoherent_floor(prepared.pattern, prepared.mask)


def _coarse_pass(prepared, opts: CdiOptions, step, cancel, floor=None):
    """Phase the central half of a large pattern, and start the full one from it.

    An object sampled finely has more unknowns and converges more slowly than the same
    object at half the resolution; the low frequencies alone (the central half of the pattern)
    give it on a grid of twice the pixel size, with the same field of view. Each trial's
    result, interpolated to the full grid (its spectrum zero-padded), starts the same trial
    at full resolution, in the support found (upsampled and grown by two pixels): the full
    pass only refines. The trials stay independent.

    Returns
    -------
    start : complex ndarray, (trials, rows, cols)
    support : bool ndarray
    """
    rows, cols = prepared.pattern.shape
    r0, c0 = rows // 2 - rows // 4, cols // 2 - cols // 4
    crop = np.s_[r0:r0 + rows // 2, c0:c0 + cols // 2]
    coarse = PreparedPattern(pattern=prepared.pattern[crop], mask=prepared.mask[crop])
    support, _, _ = initial_support(coarse, replace(opts, support="autocorrelation"))
    result = phase_retrieval(coarse.pattern, support, opts.phasing(), mask=coarse.mask,
                             floor=None if floor is None else floor[crop],
                             progress=step.part(0.08, 0.3), cancel=cancel)
    pad = ((r0, rows - r0 - rows // 2), (c0, cols - c0 - cols // 2))
    starts = []
    for trial in result.trials:
        spectrum = np.fft.fftshift(np.fft.fft2(trial))
        starts.append(np.fft.ifft2(np.fft.ifftshift(np.pad(spectrum, pad))))
    fine = np.kron(result.support, np.ones((2, 2), bool))[:rows, :cols]
    fine = np.pad(fine, ((0, rows - fine.shape[0]), (0, cols - fine.shape[1])))
    return np.stack(starts), ndimage.binary_dilation(fine, iterations=2)


def run_cdi(data, options: CdiOptions | None = None, *, mask=None,
            progress: Callable | None = None, cancel: Callable | None = None,
            source: str | None = None) -> CdiResult:
    """Phase a coherent diffraction pattern: preparation, support, phasing, trials, verdict.

    Parameters
    ----------
    data : Dataset, path or array
        The diffraction intensity (frames are averaged), centred unless ``options.center``.
    options : CdiOptions, optional
        The defaults converge on realistic data (see :class:`CdiOptions`).
    mask : array_like, optional
        Unmeasured pixels in any natural form: bool, or numbers where non-zero (or NaN).
    progress, cancel, source
        See the module.

    Returns
    -------
    CdiResult

    Raises
    ------
    InvalidInputError
        For unreadable data, a mask of another shape, bad options, or nothing measured.
    Cancelled
    """
    started = time.perf_counter()
    opts = options or CdiOptions()
    step = _Steps(progress, cancel)
    step(0.0, "reading the pattern")
    image, name = _read(data, source)
    step(0.02, "preparing the pattern")
    prepared = prepare_pattern(image, mask, background=opts.background,
                               mask_zeros=opts.mask_zeros, mask_below=opts.mask_below,
                               center=opts.center, bin_factor=opts.bin_factor,
                               mask_shadows=opts.mask_shadows, mask_rects=opts.mask_rects)
    step(0.05, "finding the initial support")
    support, method, terms = initial_support(prepared, opts)
    # a holographic support holds the object: shrink-wrap tightens it, never beyond (a little
    # margin for the blur)
    bound = ndimage.binary_dilation(support, iterations=2) if method == "fth" else None
    floor = _floor(prepared, opts)
    start = None
    if method == "autocorrelation" and min(prepared.pattern.shape) >= COARSE_FROM:
        start, support = _coarse_pass(prepared, opts, step, cancel, floor)
    phased = phase_retrieval(prepared.pattern, support, opts.phasing(), mask=prepared.mask,
                             start=start, bound=bound, floor=floor,
                             progress=step.part(0.3 if start is not None else 0.08, 0.97),
                             cancel=cancel)
    step(0.98, "judging")
    share = None
    if floor is not None:
        measured = ~prepared.mask
        total = float(np.sum(np.maximum(prepared.pattern[measured], 0)))
        share = float(np.sum(np.minimum(floor, np.maximum(prepared.pattern, 0))[measured])
                      / total) if total > 0 else 0.0
    verdict = judge_cdi(trial_spread=phased.trial_spread, final_error=phased.final_error,
                        errors=phased.errors, rounds=opts.rounds, prtf=phased.prtf,
                        shape=prepared.pattern.shape, support_method=SUPPORT_NAMES[method],
                        shadowed=prepared.shadowed, floor_share=share)
    return CdiResult(
        reconstruction=phased.object, support=phased.support,
        initial_support=np.asarray(support, bool), support_method=method,
        pattern=prepared.pattern, mask=prepared.mask, errors=phased.errors,
        trial_errors=phased.trial_errors, estimate_errors=phased.estimate_errors,
        trials=np.stack(phased.trials), kept=phased.kept, final_error=phased.final_error,
        trial_spread=phased.trial_spread, prtf=phased.prtf, frc=phased.frc,
        iterations=phased.iterations, options=opts, verdict=verdict, source=name,
        center=prepared.center, background=prepared.background, device=phased.device,
        elapsed_s=time.perf_counter() - started, cross_terms=terms,
        shadowed=prepared.shadowed, floor_share=share)


# -- refocusing ------------------------------------------------------------------------------

def object_region(result, margin: int = REGION_MARGIN) -> tuple[int, int, int, int] | None:
    """Where a reconstruction shows the sample: (row0, row1, col0, col1) with a margin.

    FTH: the strongest cross-term (of a cross-term and its twin, the one found strongest
    first); CDI: the final support. None when neither is known.
    """
    terms = getattr(result, "cross_terms", None)
    support = getattr(result, "support", None)
    if terms:
        r0, r1, c0, c1 = terms[0].box
    elif support is not None and np.any(support):
        rows, cols = np.nonzero(np.asarray(support))
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    else:
        return None
    n_rows, n_cols = np.shape(result.reconstruction)
    return (max(0, int(r0) - margin), min(n_rows, int(r1) + margin),
            max(0, int(c0) - margin), min(n_cols, int(c1) + margin))


def run_refocus(field, options: RefocusOptions, *, progress: Callable | None = None,
                cancel: Callable | None = None, source: str | None = None,
                source_kind: str | None = None) -> RefocusResult:
    """Propagate a field over a range of distances, score its sharpness, find the focus.

    Parameters
    ----------
    field : array, FthResult or CdiResult
        A complex field (or a real image, taken as amplitude), numpy or cupy, or a
        reconstruction.
    options : RefocusOptions
        ``energy`` and ``pixel_size`` are required; ``region`` picks the part of the field
        that is apodized and propagated.
    progress, cancel : callable, optional
        See the module.
    source : str, optional
        Names the data (default: the reconstruction's source, or ``"<array>"``).
    source_kind : str, optional
        What the field is ("fth", "cdi", "propagation"...; default: the reconstruction's
        kind, else "").

    Returns
    -------
    RefocusResult
        With the whole field (``image``) and the sweep (``sweep``, to look at any distance
        again; not written to files).

    Raises
    ------
    InvalidInputError
        Without energy or pixel size, for a field that is not one 2D image, a region outside
        it or smaller than 8 × 8 pixels, or non-finite pixels in the region.
    Cancelled
    """
    from ..backend import array_module, asnumpy, get_xp  # noqa: PLC0415
    from .focus import MIN_REGION_SIDE, apodize, autofocus, focus_sweep  # noqa: PLC0415
    from .propagation import wavelength_from_energy  # noqa: PLC0415

    started = time.perf_counter()
    opts = options
    if opts is None or opts.energy is None or opts.pixel_size is None:
        raise InvalidInputError("refocusing needs the photon energy (eV) and the pixel size in "
                                "the object plane (m): set energy and pixel_size")
    step = _Steps(progress, cancel)
    name = source or getattr(field, "source", "") or "<array>"
    kind = source_kind if source_kind is not None else getattr(field, "kind", "")
    data = getattr(field, "reconstruction", field)
    given = array_module(data)
    xp = given if given is not np and opts.device != "cpu" else get_xp(opts.device)
    data = xp.asarray(data if given is xp else asnumpy(data))
    if data.ndim != 2:
        raise InvalidInputError(f"the field must be one 2D image, got shape {data.shape}")
    rows, cols = data.shape
    r0, r1, c0, c1 = opts.region if opts.region is not None else (0, rows, 0, cols)
    if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
        raise InvalidInputError(f"the region [{r0}:{r1}, {c0}:{c1}] is empty or outside the "
                                f"{rows} × {cols} image")
    if min(r1 - r0, c1 - c0) < MIN_REGION_SIDE:
        raise InvalidInputError(f"the region [{r0}:{r1}, {c0}:{c1}] is {r1 - r0} × {c1 - c0} "
                                f"pixels; give one of at least {MIN_REGION_SIDE} × "
                                f"{MIN_REGION_SIDE} pixels")
    part = data[r0:r1, c0:c1]
    if not bool(xp.isfinite(part).all()):
        raise InvalidInputError("the field has NaN or infinite pixels in the region; choose a "
                                "region without them")
    part = apodize(part, opts.apodization)
    wavelength = wavelength_from_energy(opts.energy)
    distances = opts.swept()
    count = distances.size
    step(0.0, "sweeping")
    sweep = focus_sweep(part, distances, pixel_size=opts.pixel_size, wavelength=wavelength,
                        method=opts.method, progress=step.part(0.0, 0.7), cancel=cancel)
    best = sweep.best(opts.metric, opts.extremum)
    focus = best
    if opts.refine and count >= 3:
        step(0.7, "refining")
        focus = autofocus(part, (distances.min(), distances.max()), pixel_size=opts.pixel_size,
                          wavelength=wavelength, metric=opts.metric, method=opts.method,
                          n_sweep=min(count, 201), extremum=opts.extremum)
    step(0.95, "judging")
    return RefocusResult(
        distances=distances, sharpness={k: np.asarray(asnumpy(v)) for k, v in
                                        sweep.sharpness.items()},
        field=np.asarray(asnumpy(part)), focused=np.asarray(asnumpy(sweep.field_at(focus))),
        best_distance=float(best), focus_distance=float(focus), region=(r0, r1, c0, c1),
        wavelength=wavelength, options=opts,
        verdict=judge_refocus(distances, asnumpy(sweep.sharpness[opts.metric]), focus),
        source=str(name), elapsed_s=time.perf_counter() - started,
        image=np.asarray(asnumpy(data)), source_kind=str(kind or ""), sweep=sweep)
