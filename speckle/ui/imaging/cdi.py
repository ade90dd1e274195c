"""The CDI phasing dashboard: a diffraction pattern, its mask and support, phase retrieval, results.

The pattern comes as in the XPCS dashboard (beamline folders, upload, the demo ``cdi``). Its
Fourier modulus √I is shown in log scale (over as many decades as it spans, at least 3) with
the unmeasured pixels tinted red: non-finite ones
always, those at or below zero unless told otherwise, and rectangles drawn on it (beamstop,
gaps, saturation); they are left free in Fourier space by
:func:`speckle.imaging.phasing.phase_retrieval`. Optionally the
pattern is first centred on its centre of symmetry and binned. Its autocorrelation (the inverse
FFT of the pattern) is shown beside it: rectangles drawn on it form the initial support, or the
support is found automatically from it (tinted green either way). Phasing runs rounds × trials
of a schedule written as text (``99*HIO + 1*ER``) in a worker thread with progress and Cancel;
the reconstruction appears as a complex image (magnitude as brightness, phase as hue; linear,
sqrt or log), with the Fourier error against iteration and the PRTF against |q|/|q|max. A
region of it can be refocused (:class:`~speckle.ui.imaging.refocus.RefocusPanel`). Each finished
run is written as a result folder: ``result.h5`` (:func:`speckle.io.images.write_image_result`,
kind ``"cdi"``), ``reconstruction.zip`` (real and imaginary parts and the support as ``.npy``,
plus the picture), and PNG pictures; the folder appears only when complete, so a cancelled or
failed run leaves nothing. A saved result (``result.h5``) chosen as data shows its
reconstruction in section 5, ready to refocus, and its pattern (when saved) in section 2.

A dashboard notebook is two lines::

    from speckle.ui.imaging import cdi_dashboard
    cdi_dashboard()

Stable CSS classes (besides the data chooser's, ``speckle-device``, ``speckle-error`` /
``speckle-message`` and the refocus panel's, listed in :mod:`speckle.ui`):

================================  =================================================================
class                             element
================================  =================================================================
``speckle-cdi``                   the whole CDI dashboard (also ``speckle-dashboard``)
``speckle-cdi-pattern``           the pattern's image view (its Fourier modulus √I, log scale;
                                  rectangles drawn or typed on it are masked)
``speckle-cdi-mask-nonpositive``  "pixels ≤ 0 are unmeasured" checkbox
``speckle-cdi-background``        background subtracted first: a number, or pN a percentile
                                  (``p1`` for the demo; empty: none)
``speckle-cdi-mask-below``        pixels below this (after the background) are unmeasured
                                  (empty: none)
``speckle-cdi-center``            "centre the pattern" checkbox
``speckle-cdi-bin``               binning (1, 2, 4)
``speckle-cdi-mask-info``         how many pixels are masked, and why
``speckle-autocorrelation``       the autocorrelation's complex image view; rectangles drawn or
                                  typed on it (``.speckle-region-text``) form the initial support
``speckle-support-mode``          automatic / rectangles toggle
``speckle-support-threshold``     threshold of the automatic support (fraction of the maximum)
``speckle-support-info``          size of the initial support
``speckle-cdi-schedule``          schedule text; ``speckle-cdi-schedule-info`` says what it means
``speckle-cdi-rounds``            rounds; ``speckle-cdi-trials`` trials; ``speckle-cdi-beta`` β;
                                  ``speckle-cdi-seed`` seed (empty: random)
``speckle-cdi-shrinkwrap``        shrink-wrap between rounds; ``speckle-cdi-sigma`` its blur (px),
                                  ``speckle-cdi-threshold`` its threshold
``speckle-cdi-constraint``        complex / real / real and non-negative
``speckle-cdi-run``               Run button; ``speckle-cdi-cancel`` Cancel button (the run
                                  panel's, also ``speckle-run-panel``...)
``speckle-cdi-progress``          progress bar; ``speckle-cdi-stage`` the text beside it
``speckle-cdi-results``           the results section
``speckle-cdi-reconstruction``    the reconstruction's complex image view (select a region to
                                  refocus); ``speckle-cdi-whole-frame`` shows the whole frame
                                  instead of the support's surroundings
``speckle-cdi-summary``           final error, iterations, time, whether the trials agree
                                  (``speckle-cdi-disagree`` when they do not), resolution
``speckle-cdi-error-plot``        Fourier error against iteration (an image)
``speckle-prtf-plot``             PRTF (and FRC with several trials) against |q|/|q|max (an image)
``speckle-cdi-download``          the download links (also ``speckle-download``; links
                                  ``a.speckle-download-link``: ``result.h5``,
                                  ``reconstruction.zip``, ``reconstruction.png``, ``errors.png``,
                                  ``prtf.png``)
================================  =================================================================
"""

from __future__ import annotations

import html
import io
import math
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import traitlets
from matplotlib.figure import Figure

from ...backend import asnumpy
from ...errors import Cancelled, InvalidInputError
from ...imaging.conditioning import bin_image, center_pattern, subtract_background
from ...imaging.phasing import (ALGORITHMS, TRIAL_SPREAD_LIMIT, PhasingOptions,
                                describe_trial_spread, parse_schedule, phase_retrieval)
from ...imaging.support import (autocorrelation, support_from_autocorrelation,
                                support_from_rectangles)
from ...io.atomic import atomic_path
from ...io.dataset import Metadata
from ...io.images import write_image_result
from .._common import (RUN_STATES, RunPanel, RunPanelOwner, Tasks, describe_error, note_html,
                       styled, sub_progress)
from ..export import new_result_folder
from ..results import links_html, render_png
from ..saved_result import SavedResult
from ._base import ImagingDashboard, section
from .complex_view import ComplexImageView, crop, log_decades
from .refocus import RefocusInput

__all__ = ["CONSTRAINTS", "CdiDashboard", "PhasingJob", "PreparedPattern", "RUN_STATES",
           "cdi_dashboard", "display_window", "error_figure", "fourier_modulus", "log_decades",
           "pattern_mask", "prepare_pattern", "prtf_cutoff", "prtf_figure",
           "write_reconstruction_zip"]

#: Object constraints offered: (label, value).
CONSTRAINTS = (("complex (support only)", "complex"), ("real", "real"),
               ("real and non-negative", "positive"))
SUPPORT_MODES = (("automatic", "auto"), ("rectangles", "rectangles"))
BIN_FACTORS = (1, 2, 4)
#: The reconstruction is shown cut to its support's bounding box plus this margin (pixels)...
VIEW_MARGIN = 16
#: ...and at least this many pixels each way.
VIEW_MIN_SIDE = 64
MASK_RGBA = (0.95, 0.1, 0.1, 0.55)
SUPPORT_RGBA = (0.1, 0.95, 0.35, 0.35)
#: The usual PRTF resolution cut-off.
PRTF_LEVEL = 1.0 / math.e
#: Said instead of a PRTF when fewer than two independent estimates were averaged.
PRTF_NEEDS = "PRTF needs ≥ 2 trials"


# -------------------------------------------------------------------------------- the pattern
@dataclass
class PreparedPattern:
    """A pattern ready for phasing, and what is shown of it.

    Attributes
    ----------
    image : numpy.ndarray
        The image as read (before centring and binning).
    pattern : numpy.ndarray
        float64, centred and binned as asked (pixels that came from outside are NaN).
    mask : numpy.ndarray
        bool, True where a pixel is not measured.
    autocorrelation : numpy.ndarray
        Of ``pattern`` with the masked pixels as zero (centred).
    auto_support : numpy.ndarray or None
        The automatic support; None when none could be found (``auto_error`` says why).
    center : (float, float) or None
        The centre found in ``image`` when centring was asked.
    bin_factor : int
    mask_rects : list of (row0, row1, col0, col1)
        Rectangles masked (pattern coordinates).
    nonpositive : bool
        Whether pixels ≤ 0 are masked.
    threshold : float
        Threshold of the automatic support.
    auto_error : str
    background : float or None
        The constant background subtracted (None: none).
    mask_below : float or None
        Pixels below it (after the background) are masked.
    """

    image: np.ndarray
    pattern: np.ndarray
    mask: np.ndarray
    autocorrelation: np.ndarray
    auto_support: np.ndarray | None
    center: tuple | None = None
    bin_factor: int = 1
    mask_rects: list = field(default_factory=list)
    nonpositive: bool = True
    threshold: float = 0.04
    auto_error: str = ""
    background: float | None = None
    mask_below: float | None = None


def pattern_mask(pattern, *, nonpositive: bool = True, rects=(),
                 below: float | None = None) -> np.ndarray:
    """Unmeasured pixels of a pattern: not finite, at or below zero (if asked), in ``rects``.

    Parameters
    ----------
    pattern : array, (rows, cols)
    nonpositive : bool
        Count pixels ≤ 0 as unmeasured (detector gaps and dead pixels read 0; a photon-counting
        detector's zeros at high q are real measurements: turn this off for it).
    rects : sequence of (row0, row1, col0, col1)
        Half-open pixel ranges to mask (beamstop, gaps, saturated pixels).
    below : float, optional
        Also mask the pixels below this value.

    Returns
    -------
    numpy bool ndarray
    """
    data = np.asarray(asnumpy(pattern))
    mask = ~np.isfinite(data)
    with np.errstate(invalid="ignore"):
        if nonpositive:
            mask |= data <= 0
        if below is not None:
            mask |= data < below
    rows, cols = data.shape
    for rect in rects:
        r0, r1, c0, c1 = (int(v) for v in rect)
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise InvalidInputError(f"the masked rectangle rows {r0}:{r1}, columns {c0}:{c1} "
                                    f"leaves the {rows}×{cols} pattern; draw it again")
        mask[r0:r1, c0:c1] = True
    return mask


def fourier_modulus(pattern) -> np.ndarray:
    """``√I`` (negative values as 0, non-finite ones kept): what the pattern view shows.

    The modulus spans half the decades of the intensity (see :func:`log_decades`).
    """
    p = np.asarray(asnumpy(pattern), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(p), np.sqrt(np.maximum(p, 0.0)), p)


def prepare_pattern(image, *, center: bool = False, bin_factor: int = 1,
                    nonpositive: bool = True, mask_rects=(), threshold: float = 0.04,
                    background: str = "", mask_below: float | None = None
                    ) -> PreparedPattern:
    """Condition a pattern (centre, bin), find its mask, autocorrelation and automatic support.

    Parameters
    ----------
    image : array, (rows, cols)
        The diffraction pattern as read.
    center : bool
        Move its centre of symmetry (:func:`speckle.imaging.conditioning.center_pattern`,
        whole pixels) to the middle; pixels that come in from outside are unmeasured.
    bin_factor : int
        Sum blocks of ``bin_factor``² pixels after centring (faster phasing of large patterns).
    nonpositive, mask_rects
        See :func:`pattern_mask`; rectangles of another shape than the result are dropped.
    threshold : float
        Of the automatic support (:func:`speckle.imaging.support.support_from_autocorrelation`).
    background : str
        Constant background subtracted first: a number or ``"pN"``, a percentile
        (:func:`speckle.imaging.conditioning.subtract_background`); empty: none.
    mask_below : float, optional
        Pixels below it after the background are unmeasured.

    Returns
    -------
    PreparedPattern
    """
    raw = np.asarray(asnumpy(image), dtype=np.float64)
    pattern, found, level = raw, None, None
    if str(background).strip():
        pattern, level = subtract_background(raw, background, mask=~np.isfinite(raw))
    if center:
        pattern, found = center_pattern(pattern, mask=~np.isfinite(pattern), fill=np.nan)
    if bin_factor != 1:
        pattern = bin_image(pattern, int(bin_factor))
    rows, cols = pattern.shape
    rects = [tuple(int(v) for v in r) for r in mask_rects
             if 0 <= r[0] < r[1] <= rows and 0 <= r[2] < r[3] <= cols]
    mask = pattern_mask(pattern, nonpositive=nonpositive, rects=rects, below=mask_below)
    ac = np.asarray(asnumpy(autocorrelation(pattern, mask=mask)))
    auto, error = None, ""
    try:
        auto = np.asarray(asnumpy(support_from_autocorrelation(pattern, threshold, mask=mask)))
    except InvalidInputError as exc:
        error = describe_error(exc)
    return PreparedPattern(image=raw, pattern=pattern, mask=mask, autocorrelation=ac,
                           auto_support=auto, center=found, bin_factor=int(bin_factor),
                           mask_rects=rects, nonpositive=bool(nonpositive),
                           threshold=float(threshold), auto_error=error, background=level,
                           mask_below=mask_below)


# -------------------------------------------------------------------------------- results
def display_window(support, margin: int = VIEW_MARGIN,
                   min_side: int = VIEW_MIN_SIDE) -> tuple[int, int, int, int]:
    """The part of the frame shown of a reconstruction: the support's box with a margin.

    Parameters
    ----------
    support : bool array, (rows, cols)
    margin : int
        Pixels added on each side of the support's bounding box.
    min_side : int
        The window is grown (about its middle) to at least this many pixels each way.

    Returns
    -------
    (row0, row1, col0, col1)
        Half-open, inside the frame; the whole frame for an empty support.
    """
    s = np.asarray(asnumpy(support), dtype=bool)
    rows, cols = s.shape
    if not s.any():
        return (0, rows, 0, cols)

    def span(used, n):
        lo, hi = int(used[0]) - margin, int(used[-1]) + 1 + margin
        if hi - lo < min_side:
            grow = min_side - (hi - lo)
            lo, hi = lo - grow // 2, hi + grow - grow // 2
        if lo < 0:
            lo, hi = 0, hi - lo
        if hi > n:
            lo, hi = max(0, lo - (hi - n)), n
        return lo, hi

    r0, r1 = span(np.flatnonzero(s.any(axis=1)), rows)
    c0, c1 = span(np.flatnonzero(s.any(axis=0)), cols)
    return (r0, r1, c0, c1)


def prtf_cutoff(q_fraction, values, level: float = PRTF_LEVEL) -> float | None:
    """The first |q|/|q|max at which the PRTF falls below ``level`` (1/e); None if never."""
    q = np.asarray(q_fraction, float)
    v = np.asarray(values, float)
    below = np.flatnonzero(np.isfinite(v) & (v < level))
    return float(q[below[0]]) if below.size else None


def _q_max(shape) -> float:
    """The largest |q| of a frame in cycles per pixel (its corner), as the PRTF rings use."""
    fy = np.abs(np.fft.fftfreq(shape[0])).max()
    fx = np.abs(np.fft.fftfreq(shape[1])).max()
    return float(np.hypot(fy, fx))


def error_figure(result) -> Figure:
    """Fourier error against iteration (log scale): every trial thin, their mean thick."""
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    errors = np.asarray(result.errors, float)
    it = np.arange(1, errors.size + 1)
    trials = np.asarray(getattr(result, "trial_errors", np.zeros((0, 0))), float)
    if trials.ndim == 2 and trials.shape[0] > 1 and trials.shape[1] == errors.size:
        for row in trials:
            ax.plot(it, row, color="#a9c4e2", linewidth=0.7)
        label = f"mean of {trials.shape[0]} trials"
    else:
        label = "Fourier error"
    ax.plot(it, errors, color="#1f77b4", linewidth=1.5, label=label)
    rounds = int(getattr(result.options, "rounds", 1) or 1)
    if rounds > 1 and errors.size % rounds == 0:
        per_round = errors.size // rounds
        for k in range(1, rounds):
            ax.axvline(k * per_round + 0.5, color="#888", linestyle=":", linewidth=1)
    finite = errors[np.isfinite(errors)]
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("iteration" + (" (dotted: new round, shrink-wrap)" if rounds > 1 else ""))
    ax.set_ylabel("Fourier error")
    ax.set_title(f"final error {result.final_error:.3g}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def prtf_figure(result) -> Figure:
    """PRTF (and FRC of even against odd trials, when there are several) against |q|/|q|max.

    Without a PRTF (``result.prtf`` None: a single estimate, which fits √I by construction)
    the plot says so instead.
    """
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    if result.prtf is None:
        q = values = np.zeros(0)
        ax.text(0.5, 0.55, f"{PRTF_NEEDS}: a single reconstruction fits √I\nby "
                "construction, so its PRTF would be ≈ 1 whatever its phases",
                ha="center", va="center", fontsize=9, transform=ax.transAxes)
    else:
        q, values = (np.asarray(a, float) for a in result.prtf)
        ax.plot(q, values, "o-", color="#1f77b4", markersize=3, linewidth=1.2, label="PRTF")
    frc = getattr(result, "frc", None)
    if frc is not None:
        ax.plot(*(np.asarray(a, float) for a in frc), "-", color="#ff7f0e", linewidth=1.0,
                label="FRC, even vs odd trials (self-consistency)")
    ax.axhline(PRTF_LEVEL, color="#d62728", linestyle="--", linewidth=1, label="1/e")
    cut = prtf_cutoff(q, values) if q.size else None
    if cut is not None:
        ax.axvline(cut, color="#2ca02c", linestyle=":", linewidth=1.2,
                   label=f"PRTF < 1/e from {cut:.2f}")
    ax.set_xlim(0, 1)
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set_ylim(0, max(1.05, float(top) * 1.05))
    ax.set_xlabel("|q| / |q|max")
    ax.set_ylabel("PRTF")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def write_reconstruction_zip(path, obj, picture: bytes, support=None) -> Path:
    """A ZIP of the reconstruction: real and imaginary parts (and support) as .npy, a PNG.

    Written atomically (complete or absent). Members: ``reconstruction_real.npy``,
    ``reconstruction_imag.npy``, ``support.npy`` (when given) and ``reconstruction.png``.

    Parameters
    ----------
    path : path-like
    obj : complex array, (rows, cols)
    picture : bytes
        PNG.
    support : bool array, optional

    Returns
    -------
    pathlib.Path
    """
    data = np.asarray(asnumpy(obj))
    members = {"reconstruction_real.npy": np.ascontiguousarray(data.real),
               "reconstruction_imag.npy": np.ascontiguousarray(data.imag)}
    if support is not None:
        members["support.npy"] = np.asarray(asnumpy(support), dtype=bool)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, array in members.items():
                with io.BytesIO() as buf:
                    np.save(buf, array, allow_pickle=False)
                    zf.writestr(name, buf.getvalue())
            zf.writestr("reconstruction.png", picture)
    return Path(path)


@dataclass
class PhasingJob:
    """What one phasing run needs (taken on the widget thread when Run is pressed)."""

    intensity: np.ndarray
    mask: np.ndarray
    support: np.ndarray
    options: PhasingOptions
    label: str
    attrs: dict = field(default_factory=dict)
    source: object = None  # the image as read: a result for other data is not shown


# -------------------------------------------------------------------------------- widgets
def _regions_view(help_text: str, css: str) -> ComplexImageView:
    """A real image (log scale) with any number of rectangles (tints go over it)."""
    return styled(ComplexImageView(max_regions=None, view="magnitude", scale="log",
                                   views=("magnitude",), figsize=(4.6, 4.0),
                                   help_text=help_text), css)


def _saved_as_result(saved: SavedResult):
    """What :func:`error_figure` and :func:`prtf_figure` read, from a saved CDI result."""
    a, attrs = saved.arrays, saved.attrs
    if "errors" not in a:
        return None
    return SimpleNamespace(
        errors=a["errors"], trial_errors=a.get("trial_errors", np.zeros((0, 0))),
        options=SimpleNamespace(rounds=int(attrs.get("rounds", 1) or 1)),
        final_error=float(attrs.get("final_error", float("nan"))),
        prtf=(a["prtf_q"], a["prtf"]) if {"prtf_q", "prtf"} <= set(a) else None,
        frc=(a["frc_q"], a["frc"]) if {"frc_q", "frc"} <= set(a) else None)


def _describe_phasing_error(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return ("Not enough memory for this phasing: bin the pattern (section 2), use fewer "
                "trials, or ask for a server with more memory.")
    return describe_error(exc)


def _field(cls, description: str, value, css: str, tooltip: str = "", width="200px", **kw):
    return styled(cls(value=value, description=description, tooltip=tooltip,
                      continuous_update=True, style={"description_width": "initial"},
                      layout=widgets.Layout(width=width, margin="0 12px 0 0"), **kw), css)


def _percent(n: int, total: int) -> str:
    return f"{100 * n / total:.2g} %" if total else "0 %"


class CdiDashboard(RunPanelOwner, ImagingDashboard):
    """Coherent diffraction imaging (phase retrieval) as one widget.

    Parameters
    ----------
    demos : sequence of str
        Demo datasets offered (default the CDI demo).
    **kwargs
        See :class:`~speckle.ui.imaging._base.ImagingDashboard` (``data_dirs``, ``upload_dir``,
        ``results_dir``, ``base_url``, ``server_root``).

    Attributes
    ----------
    chooser : DataChooser
    pattern_view, autocorrelation_view, reconstruction_view : ComplexImageView
    refocus : RefocusPanel
    prepared : PreparedPattern or None
        The pattern shown, its mask, autocorrelation and automatic support.
    state : str
        One of :data:`RUN_STATES` (a trait).
    result : PhasingResult or None
        The last finished phasing.
    job : PhasingJob or None
        What the last finished phasing was given.
    saved : SavedResult or None
        A saved result chosen as data, its reconstruction shown (until the next phasing).
    window : (row0, row1, col0, col1) or None
        The part of the reconstruction shown.
    folder : pathlib.Path or None
        The last result folder.
    files : dict of str to pathlib.Path
        Its files: ``"hdf5"``, ``"zip"``, ``"png"``, ``"errors_png"``, ``"prtf_png"``.
    error : str
        The last failure in words ("" when none).
    run_panel : RunPanel
        Run / Cancel, progress, stage and the message (``run_message``).

    Notes
    -----
    CSS classes: see :mod:`speckle.ui.imaging.cdi`.
    """

    state = traitlets.Unicode("idle")
    #: A saved result chosen as data gives its diffraction pattern to sections 2 and 3.
    saved_image_names = ("pattern",)

    def __init__(self, *, demos=("cdi",), **kwargs):
        super().__init__(demos=demos, **kwargs)
        self.add_class("speckle-cdi")
        self.label = ""
        self.metadata = None
        self.prepared: PreparedPattern | None = None
        self.result = None
        self.job: PhasingJob | None = None
        self.saved: SavedResult | None = None
        self.window = None
        self.folder: Path | None = None
        self.files: dict[str, Path] = {}
        self._derive = Tasks("cdi-pattern")
        self._quiet = False
        self._build()

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        defaults = PhasingOptions()
        # 2. the pattern and its mask
        self.pattern_view = _regions_view(
            "Red pixels are left free in the phasing. Drag on the pattern to mask a region "
            "(beamstop, gaps, saturated pixels), or type one.", "speckle-cdi-pattern")
        self.nonpositive = styled(widgets.Checkbox(
            value=True, indent=False, description="pixels ≤ 0 are unmeasured",
            tooltip="gaps and dead pixels read 0; turn off for a photon-counting detector whose "
                    "zeros at high q are measurements", layout=widgets.Layout(width="auto")),
            "speckle-cdi-mask-nonpositive")
        self.background = _field(widgets.Text, "background", "", "speckle-cdi-background",
                                 width="190px", placeholder="none, 390 or p1",
                                 tooltip="constant background (pedestal) subtracted first: a "
                                         "number of counts, or pN the N-th percentile of the "
                                         "pattern (p1 for the demo)")
        self.mask_below = _field(widgets.Text, "mask below", "", "speckle-cdi-mask-below",
                                 width="190px", placeholder="none",
                                 tooltip="pixels below this value (after the background) are "
                                         "unmeasured")
        self.center = styled(widgets.Checkbox(
            value=False, indent=False, description="centre the pattern on its symmetry centre",
            tooltip="phasing needs the zero frequency in the middle pixel",
            layout=widgets.Layout(width="auto", margin="0 12px")), "speckle-cdi-center")
        self.binning = styled(widgets.Dropdown(
            options=[(f"{f}×{f}" if f > 1 else "none", f) for f in BIN_FACTORS], value=1,
            description="bin", style={"description_width": "initial"},
            layout=widgets.Layout(width="140px")), "speckle-cdi-bin")
        self.mask_info = styled(widgets.HTML(), "speckle-cdi-mask-info")

        # 3. the autocorrelation and the initial support
        self.autocorrelation_view = _regions_view(
            "Drag rectangles on the autocorrelation (or type them): together they form the "
            "initial support. Or choose the automatic support.", "speckle-autocorrelation")
        self.support_mode = styled(widgets.ToggleButtons(
            options=list(SUPPORT_MODES), value="auto", description="support",
            tooltip="automatic: where the blurred autocorrelation exceeds the threshold",
            style={"button_width": "100px", "description_width": "initial"}),
            "speckle-support-mode")
        self.support_threshold = _field(widgets.FloatText, "threshold", 0.04,
                                        "speckle-support-threshold", step=0.01,
                                        tooltip="automatic support: fraction of the maximum of "
                                                "the blurred autocorrelation", width="160px")
        self.support_info = styled(widgets.HTML(), "speckle-support-info")

        # 4. phasing
        self.schedule = _field(widgets.Text, "schedule", defaults.schedule,
                               "speckle-cdi-schedule", width="340px",
                               tooltip="e.g. 99*HIO + 1*ER, 20*ER + 180*HIO, "
                                       "3*(20*ER + 80*HIO) + 20*ER; algorithms: "
                                       + ", ".join(ALGORITHMS))
        self.schedule_info = styled(widgets.HTML(), "speckle-cdi-schedule-info")
        self.rounds = _field(widgets.IntText, "rounds", 3, "speckle-cdi-rounds", width="130px",
                             tooltip="shrink-wrap updates the support between rounds")
        self.trials = _field(widgets.IntText, "trials", 2, "speckle-cdi-trials", width="130px",
                             tooltip="independent random starts, aligned and averaged")
        self.beta = _field(widgets.FloatText, "β", defaults.beta, "speckle-cdi-beta",
                           width="120px", step=0.05, tooltip="feedback of HIO, RAAR and DM, "
                                                             "in (0, 1]")
        self.seed = _field(widgets.Text, "seed", "", "speckle-cdi-seed", width="150px",
                           tooltip="a whole number repeats the same random starts; empty: "
                                   "new ones every run", placeholder="random")
        self.shrinkwrap = styled(widgets.Checkbox(
            value=defaults.shrinkwrap, indent=False, description="shrink-wrap between rounds",
            layout=widgets.Layout(width="210px")), "speckle-cdi-shrinkwrap")
        self.sigma = _field(widgets.FloatText, "blur σ (px)", defaults.shrinkwrap_sigma,
                            "speckle-cdi-sigma", width="150px", step=0.1)
        self.threshold = _field(widgets.FloatText, "threshold", defaults.shrinkwrap_threshold,
                                "speckle-cdi-threshold", width="150px", step=0.01,
                                tooltip="fraction of the maximum of the blurred magnitude")
        self.constraint = styled(widgets.Dropdown(
            options=list(CONSTRAINTS), value="complex", description="object",
            style={"description_width": "initial"}, layout=widgets.Layout(width="260px")),
            "speckle-cdi-constraint")
        self._own(RunPanel(
            label="Run", what="The phasing", prefix="speckle-cdi", name="cdi",
            describe=_describe_phasing_error,
            retry_hint="Check the mask and the support (sections 2 and 3), or try another "
                       "schedule, then press Run again."))
        self.run_message = self.run_panel.message

        # 5. results
        self.reconstruction_view = styled(ComplexImageView(
            max_regions=1, view="complex", scale="linear",
            help_text="Drag around a part of the object to refocus it, or type its region; "
                      "without a region the image shown is refocused."),
            "speckle-cdi-reconstruction")
        self.whole_frame = styled(widgets.Checkbox(
            value=False, indent=False, description="show the whole frame (not only around "
                                                   "the support)",
            layout=widgets.Layout(width="auto")), "speckle-cdi-whole-frame")
        self.summary = styled(widgets.HTML(), "speckle-cdi-summary")
        self.error_plot = styled(widgets.Image(format="png", layout=widgets.Layout(
            width="520px", max_width="100%")), "speckle-cdi-error-plot")
        self.prtf_plot = styled(widgets.Image(format="png", layout=widgets.Layout(
            width="520px", max_width="100%")), "speckle-prtf-plot")
        self.downloads = styled(widgets.HTML(), "speckle-download", "speckle-cdi-download")
        self.plots = widgets.HBox([self.error_plot, self.prtf_plot],
                                  layout=widgets.Layout(flex_flow="row wrap"))
        self.results = styled(widgets.VBox([
            self.summary, self.reconstruction_view, self.whole_frame, self.plots,
            self.downloads]), "speckle-cdi-results")
        self.results.layout.display = "none"
        self.results_hint = widgets.HTML("<div style='color:#555;padding:4px 0'>Choose data, "
                                         "check the mask and the support, then press "
                                         "<b>Run</b>: the reconstruction appears here.</div>")

        row = dict(layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.children = [
            self.header("CDI phase retrieval"),
            section("1. Data"), self.chooser, self.message,
            section("2. Diffraction pattern and mask"),
            widgets.HBox([self.nonpositive, self.center, self.binning], **row),
            widgets.HBox([self.background, self.mask_below], **row),
            self.pattern_view, self.mask_info,
            section("3. Autocorrelation and initial support"),
            widgets.HBox([self.support_mode, self.support_threshold], **row),
            self.autocorrelation_view, self.support_info,
            section("4. Phase retrieval"),
            widgets.HBox([self.schedule, self.schedule_info], **row),
            widgets.HBox([self.rounds, self.trials, self.beta, self.seed], **row),
            widgets.HBox([self.shrinkwrap, self.sigma, self.threshold, self.constraint], **row),
            self.run_panel,
            section("5. Reconstruction"), self.results_hint, self.results,
            section("6. Refocus a region of the reconstruction"), self.refocus,
        ]
        self._on_schedule(None)
        self._show_support()

        for w in (self.nonpositive, self.support_threshold):
            w.observe(lambda _c: self.update_pattern(), "value")
        for w in (self.background, self.mask_below):
            w.observe(lambda _c: None if self._quiet else self.update_pattern(), "value")
        for w in (self.center, self.binning):
            w.observe(lambda _c: self._geometry_changed(), "value")
        self.pattern_view.observe(self._on_mask_regions, "regions_version")
        self.autocorrelation_view.observe(self._on_support_regions, "regions_version")
        self.support_mode.observe(lambda _c: self._show_support(), "value")
        self.schedule.observe(self._on_schedule, "value")
        for w in (self.rounds, self.trials):
            w.observe(self._on_schedule, "value")
        self.whole_frame.observe(lambda _c: self._show_reconstruction(), "value")
        self.run_button.on_click(lambda _b: self.run())

    # ---------------------------------------------------------------- data to pattern
    def _settings(self) -> dict:
        below = self.mask_below.value.strip()
        try:
            below = float(below) if below else None
        except ValueError:
            raise InvalidInputError(f"cannot read “mask below” {below!r}: give a number of "
                                    "counts, or leave it empty") from None
        return {"center": bool(self.center.value), "bin_factor": int(self.binning.value),
                "nonpositive": bool(self.nonpositive.value),
                "background": self.background.value, "mask_below": below,
                "mask_rects": list(self.pattern_view.regions),
                "threshold": float(self.support_threshold.value)}

    def _on_dataset(self, change) -> None:
        self.cancel()
        self._derive.invalidate()
        self.clear_results()
        if self.chooser.label == "demo-cdi" and not self.background.value.strip():
            self._quiet = True  # the demo has a pedestal of ~390 counts and no pixel ≤ 0
            try:
                self.background.value = "p1"
            finally:
                self._quiet = False
        super()._on_dataset(change)

    def _prepare(self, image, metadata, label) -> dict:
        return {"prepared": prepare_pattern(image, **self._settings()), "metadata": metadata,
                "label": label}

    def _prepare_saved(self, saved: SavedResult, label: str) -> dict:
        pattern = saved.arrays.get("pattern")
        usable = pattern is not None and pattern.ndim == 2 and not np.iscomplexobj(pattern)
        return {"prepared": prepare_pattern(pattern, **self._settings()) if usable else None,
                "metadata": saved.metadata, "label": label, "saved": saved}

    def _show(self, prepared: dict) -> None:
        self.label = prepared["label"]
        self.metadata = prepared["metadata"]
        saved, pattern = prepared.get("saved"), prepared["prepared"]
        if saved is not None:
            self.refocus.suggest(energy=self.metadata.energy, pitch=saved.pitch)
        else:
            self._suggest_refocus(self.metadata, pattern.image.shape)
        if pattern is not None:
            self._apply(pattern)
        else:  # a saved result without its pattern: nothing to phase
            self.prepared = None
            self.pattern_view.set_image(None)
            self.autocorrelation_view.set_image(None)
            self.mask_info.value = ""
            self._show_support()
        if saved is not None:
            self._show_saved(saved)

    def set_pattern(self, intensity, *, label: str = "pattern", metadata=None) -> None:
        """Use a diffraction pattern given as an array (notebooks, simulations, tests).

        The same path as a chosen dataset: conditioned, masked and shown in the background
        (:meth:`wait` waits for it).

        Parameters
        ----------
        intensity : array, (rows, cols)
            Centred diffraction intensity (or not centred: tick "centre the pattern").
        label : str
            Short name (result folder names).
        metadata : Metadata, optional
            Energy, distance and detector pixel size suggest the refocus fields.
        """
        self.cancel()
        self._derive.invalidate()
        self.clear_results()
        self.refocus.clear()
        self.message.clear()
        image = np.asarray(asnumpy(intensity), dtype=np.float64)
        if image.ndim != 2 or min(image.shape) < 4:
            self.message.error(f"A diffraction pattern is a 2D image of at least 4×4 pixels; "
                               f"got shape {image.shape}.")
            return
        md = metadata if metadata is not None else Metadata()
        self._tasks.start(lambda: self._prepare(image, md, label), self._show,
                          lambda exc: self.message.error(exc, title=f"Cannot use {label}:"))

    def update_pattern(self) -> None:
        """Condition, mask and autocorrelate the pattern again with the fields' settings."""
        prepared = self.prepared
        if prepared is None:
            return
        raw = prepared.image
        try:
            settings = self._settings()
        except InvalidInputError as exc:
            self.message.error(exc, title="Cannot prepare the pattern:")
            return

        def done(new):
            if self.prepared is not None and self.prepared.image is raw:
                self._apply(new)

        self._derive.start(lambda: prepare_pattern(raw, **settings), done,
                           lambda exc: self.message.error(exc, title="Cannot prepare the "
                                                                     "pattern:"))

    def _geometry_changed(self) -> None:
        # centring or binning moves the pixels: masked rectangles no longer fit
        self._quiet = True
        try:
            self.pattern_view.clear_regions()
        finally:
            self._quiet = False
        self.update_pattern()

    def _on_mask_regions(self, _change) -> None:
        if not self._quiet:
            self.update_pattern()

    def _apply(self, prepared: PreparedPattern) -> None:
        """Show a prepared pattern: pattern with its mask, autocorrelation with the support."""
        self.prepared = prepared
        rows, cols = prepared.pattern.shape
        what = [f"{rows} × {cols} pixels; shown: the Fourier modulus √I"]
        if prepared.center is not None:
            what.append(f"centred from ({prepared.center[0]:.1f}, {prepared.center[1]:.1f})")
        if prepared.bin_factor > 1:
            what.append(f"binned {prepared.bin_factor}×{prepared.bin_factor}")
        self._quiet = True
        try:
            modulus = fourier_modulus(prepared.pattern)
            self.pattern_view.decades = log_decades(modulus)
            what.append(f"log scale over {self.pattern_view.decades:g} decades")
            self.pattern_view.set_image(modulus, f"{self.label}: " + ", ".join(what))
            self.autocorrelation_view.set_image(
                prepared.autocorrelation, "autocorrelation |inverse FFT of the pattern|, "
                                          "masked pixels as zero")
        finally:
            self._quiet = False
        self.pattern_view.set_tint(prepared.mask, MASK_RGBA, name="mask")
        self.mask_info.value = self._mask_html(prepared)
        self._show_support()

    @staticmethod
    def _mask_html(p: PreparedPattern) -> str:
        total = p.mask.size
        n = int(p.mask.sum())
        bad = int((~np.isfinite(p.pattern)).sum())
        with np.errstate(invalid="ignore"):
            low = int((p.pattern <= 0).sum()) if p.nonpositive else 0
        parts = []
        if bad:
            parts.append(f"{bad} not finite or outside the image")
        if low:
            parts.append(f"{low} at or below zero")
        if p.mask_rects:
            parts.append(f"{len(p.mask_rects)} rectangle(s) drawn")
        why = f" ({'; '.join(parts)})" if parts else ""
        colour = "#b00020" if n > 0.5 * total else "#333"
        hint = (" Many pixels read 0: if this is a photon-counting detector, its zeros are "
                "measurements; untick “pixels ≤ 0 are unmeasured” and mask the beamstop with "
                "a rectangle." if low > 0.2 * total else "")
        return (f"<span style='color:{colour}'><b>Unmeasured pixels:</b> {n} of {total} "
                f"({_percent(n, total)}){html.escape(why)}, tinted red; left free in Fourier "
                f"space.{html.escape(hint, quote=False)}</span>")

    # ---------------------------------------------------------------- support
    def _on_support_regions(self, _change) -> None:
        if self._quiet:
            return
        if self.autocorrelation_view.regions and self.support_mode.value != "rectangles":
            self.support_mode.value = "rectangles"  # drawing one means using them; redraws
        else:
            self._show_support()

    def initial_support(self) -> np.ndarray:
        """The initial support as chosen: the rectangles' union, or the automatic one.

        Raises
        ------
        InvalidInputError
            Saying what to do: no pattern yet, no rectangle drawn, no automatic support.
        """
        prepared = self.prepared
        if prepared is None:
            raise InvalidInputError("choose a diffraction pattern first: a beamline file, an "
                                    "upload or the demo data")
        if self.support_mode.value == "rectangles":
            rects = self.autocorrelation_view.regions
            if not rects:
                raise InvalidInputError(
                    "draw at least one rectangle on the autocorrelation (drag with the mouse, or "
                    "type ROW0:ROW1,COL0:COL1 and press Add), or choose the automatic support")
            return support_from_rectangles(prepared.pattern.shape, rects)
        if prepared.auto_support is None:
            raise InvalidInputError(prepared.auto_error or "no automatic support was found; "
                                    "draw rectangles on the autocorrelation")
        return prepared.auto_support

    def _show_support(self) -> None:
        self.support_threshold.disabled = self.support_mode.value != "auto"
        if self.prepared is None:
            self.support_info.value = ""
            return
        try:
            support = self.initial_support()
        except InvalidInputError as exc:
            self.autocorrelation_view.set_tint(None, name="support")
            self.support_info.value = (f"<span style='color:#b00020'><b>Initial support:</b> "
                                       f"{html.escape(str(exc), quote=False)}</span>")
            return
        self.autocorrelation_view.set_tint(support, SUPPORT_RGBA, name="support")
        n = int(support.sum())
        how = ("the union of the rectangles" if self.support_mode.value == "rectangles"
               else f"automatic, threshold {self.support_threshold.value:g}")
        self.support_info.value = (f"<b>Initial support</b> (green): {n} pixels "
                                   f"({_percent(n, support.size)} of the frame), {how}.")

    # ---------------------------------------------------------------- options and running
    def _on_schedule(self, _change) -> None:
        try:
            steps = parse_schedule(self.schedule.value)
        except InvalidInputError as exc:
            self.schedule_info.value = (f"<span style='color:#b00020'>"
                                        f"{html.escape(str(exc), quote=False)}</span>")
            return
        per = sum(n for _, n in steps)
        rounds, trials = self.rounds.value or 0, self.trials.value or 0
        self.schedule_info.value = (f"<span style='color:#555'>{per} iterations per round; "
                                    f"{per * max(rounds, 0)} per trial, "
                                    f"{per * max(rounds, 0) * max(trials, 0)} in all</span>")

    def options(self) -> PhasingOptions:
        """The phasing options from the fields (checked).

        Raises
        ------
        InvalidInputError
            For a schedule that cannot be read or numbers out of range.
        """
        seed_text = self.seed.value.strip()
        try:
            seed = int(seed_text) if seed_text else None
        except ValueError:
            raise InvalidInputError(f"the seed must be a whole number (or empty for random "
                                    f"starts), got {seed_text!r}") from None
        constraint = self.constraint.value
        options = PhasingOptions(
            schedule=self.schedule.value, rounds=int(self.rounds.value),
            trials=int(self.trials.value), beta=float(self.beta.value),
            positivity=constraint == "positive", real=constraint in ("real", "positive"),
            shrinkwrap=bool(self.shrinkwrap.value), shrinkwrap_sigma=float(self.sigma.value),
            shrinkwrap_threshold=float(self.threshold.value), seed=seed)
        options.steps()  # every check of the options, before anything runs
        return options

    def make_job(self) -> PhasingJob:
        """Everything a run needs, from the page (widget thread)."""
        options = self.options()
        support = self.initial_support()
        prepared = self.prepared
        attrs = {
            "source": self.label, "schedule": options.schedule, "rounds": options.rounds,
            "trials": options.trials, "beta": options.beta, "positivity": options.positivity,
            "real": options.real, "shrinkwrap": options.shrinkwrap,
            "shrinkwrap_sigma": options.shrinkwrap_sigma,
            "shrinkwrap_threshold": options.shrinkwrap_threshold, "seed": options.seed,
            "support_mode": self.support_mode.value,
            "support_rects": [list(r) for r in self.autocorrelation_view.regions],
            "support_threshold": prepared.threshold,
            "mask_nonpositive": prepared.nonpositive,
            "background": prepared.background, "mask_below": prepared.mask_below,
            "mask_rects": [list(r) for r in prepared.mask_rects],
            "masked_pixels": int(prepared.mask.sum()),
            "centered_from": None if prepared.center is None else list(prepared.center),
            "bin_factor": prepared.bin_factor,
        }
        return PhasingJob(intensity=prepared.pattern, mask=prepared.mask, support=support,
                          options=options, label=self.label or "cdi", attrs=attrs,
                          source=prepared.image)

    def run(self) -> threading.Thread | None:
        """Start phasing in a worker thread and return at once (the Run button).

        Nothing starts while a run is going on (Cancel it first). Problems found before the
        start (no data, bad schedule, no support) show as a red message.
        """
        return self.run_panel.run(self._prepare_run)

    def _prepare_run(self) -> Callable:
        job = self.make_job()
        return lambda progress, cancel: self._work(job, progress, cancel)

    def _work(self, job: PhasingJob, progress: Callable, cancel: Callable) -> None:
        result = phase_retrieval(job.intensity, job.support, job.options, mask=job.mask,
                                 progress=sub_progress(progress, 0.0, 0.9), cancel=cancel)

        def step(fraction, stage):
            if cancel():
                raise Cancelled("the phasing was cancelled")
            if self.prepared is None or self.prepared.image is not job.source:
                raise Cancelled("other data were chosen meanwhile")
            progress(0.9 + 0.1 * fraction, stage)

        step(0.0, "showing the reconstruction")
        try:
            self._show_result(result, job)
            folder, files = self._write(result, job, step)
        except BaseException as exc:
            if self.result is result:  # shown, not saved: say so
                self.downloads.value = note_html(
                    "Cancelled: no result files were written." if isinstance(exc, Cancelled)
                    or cancel() else "No result files were written.")
            raise
        self.folder, self.files = folder, files
        self._show_links()

    # ---------------------------------------------------------------- showing a result
    def _show_result(self, result, job: PhasingJob) -> None:
        """Make ``result`` the shown one: reconstruction, summary, error and PRTF plots."""
        self.result, self.job, self.saved = result, job, None
        self.folder, self.files = None, {}
        self.downloads.value = note_html("Writing the result files…")
        self._show_reconstruction()
        self.summary.value = self._summary_html(result, job)
        self.error_plot.value = render_png(error_figure(result))
        self.prtf_plot.value = render_png(prtf_figure(result))
        self.plots.layout.display = None
        self.results_hint.layout.display = "none"
        self.results.layout.display = None

    def _show_saved(self, saved: SavedResult) -> None:
        """Show a saved result's reconstruction (and its plots, when it has them)."""
        self.saved = saved
        self._show_reconstruction()
        self.summary.value = self._saved_html(saved)
        plotted = _saved_as_result(saved)
        if plotted is not None:
            self.error_plot.value = render_png(error_figure(plotted))
            self.prtf_plot.value = render_png(prtf_figure(plotted))
        self.plots.layout.display = None if plotted is not None else "none"
        self.results_hint.layout.display = "none"
        self.results.layout.display = None

    def _shown(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The reconstruction shown (the last phasing's, or a saved one's) and its support."""
        if self.result is not None:
            return np.asarray(self.result.object), np.asarray(self.result.support, bool)
        if self.saved is not None:
            obj = self.saved.image
            support = self.saved.arrays.get("support")
            if support is None or support.shape != obj.shape:
                return obj, None
            return obj, np.asarray(support, bool)
        return None, None

    def _show_reconstruction(self) -> None:
        obj, support = self._shown()
        if obj is None:
            return
        rows, cols = obj.shape
        window = (0, rows, 0, cols) if self.whole_frame.value or support is None else \
            display_window(support)
        self.window = window
        r0, r1, c0, c1 = window
        where = "the whole frame" if window == (0, rows, 0, cols) else (
            f"rows {r0}:{r1}, cols {c0}:{c1} of the {rows} × {cols} frame (around the support)")
        what = "reconstruction" if self.saved is None else f"saved {self.saved.name}"
        self.reconstruction_view.set_image(
            crop(obj, window), f"{what}, {where}; brightness: magnitude, hue: phase")

    @staticmethod
    def _saved_html(saved: SavedResult) -> str:
        rows, cols = saved.image.shape
        attrs = saved.attrs
        parts = [f"<b>Saved {html.escape(saved.kind.upper())} result</b> "
                 f"{html.escape(Path(saved.source).name)}: its {html.escape(saved.name)}, "
                 f"{rows} × {cols} pixels."]
        if isinstance(attrs.get("final_error"), float):
            parts.append(f"Final Fourier error {attrs['final_error']:.3g}")
            if attrs.get("schedule"):
                parts[-1] += (f" ({attrs.get('rounds', 1)} round(s) of "
                              f"{html.escape(str(attrs['schedule']))})")
            parts[-1] += "."
        parts.append("Select a region to refocus it (section 6)"
                     + ("; press Run to phase its pattern again." if "pattern" in saved.arrays
                        else "."))
        return f"<div>{' '.join(parts)}</div>"

    @staticmethod
    def _summary_html(result, job: PhasingJob) -> str:
        opts = job.options
        trials = len(result.trials)
        per_s = getattr(result, "iterations_per_second", float("nan"))
        speed = f", {per_s:.0f} iterations/s" if np.isfinite(per_s) else ""
        device = html.escape(str(getattr(result, "device", "")).upper())
        cut = None if result.prtf is None else prtf_cutoff(*result.prtf)
        if result.prtf is None:
            resolution = f"No resolution estimate: {PRTF_NEEDS} (this run averaged " \
                         f"{len(getattr(result, 'kept', ()) or ())})."
        elif cut is None:
            resolution = "The PRTF stays above 1/e up to the edge of the pattern."
        else:
            half_period = 1.0 / (2.0 * cut * _q_max(result.object.shape))
            resolution = (f"The PRTF falls below 1/e at |q|/|q|max = {cut:.2f}: a half-period "
                          f"resolution of about {half_period:.1f} pixels.")
        spread = getattr(result, "trial_spread", None)
        agreement = html.escape(describe_trial_spread(spread))
        if spread is not None and spread > TRIAL_SPREAD_LIMIT:
            agreement = (f"<span class='speckle-cdi-disagree' style='color:#b45309'><b>"
                         f"{agreement}</b></span>")
        return (f"<div><b>Final Fourier error {result.final_error:.3g}</b> after "
                f"{result.iterations} iterations per trial ({opts.rounds} round(s) of "
                f"{html.escape(opts.schedule)}), {trials} trial(s), in "
                f"{result.elapsed_s:.1f} s ({device}{speed}). {agreement} {resolution} "
                f"Final support: {int(np.asarray(result.support).sum())} pixels.</div>")

    # ---------------------------------------------------------------- files
    def _write(self, result, job: PhasingJob, step):
        obj = np.asarray(result.object)
        arrays = {"reconstruction": obj, "support": np.asarray(result.support, bool),
                  "pattern": job.intensity, "mask": job.mask, "initial_support": job.support,
                  "errors": np.asarray(result.errors, float)}
        cutoff = None
        if result.prtf is not None:
            q, values = result.prtf
            arrays["prtf_q"], arrays["prtf"] = np.asarray(q, float), np.asarray(values, float)
            cutoff = prtf_cutoff(q, values)
        trial_errors = getattr(result, "trial_errors", None)
        if trial_errors is not None and np.size(trial_errors):
            arrays["trial_errors"] = np.asarray(trial_errors, float)
        if result.trials:
            arrays["trials"] = np.stack([np.asarray(t) for t in result.trials])
        if getattr(result, "frc", None) is not None:
            arrays["frc_q"], arrays["frc"] = (np.asarray(a, float) for a in result.frc)
        attrs = dict(job.attrs)
        attrs.update({"kind": "cdi", "final_error": float(result.final_error),
                      "iterations": int(result.iterations),
                      "elapsed_s": float(result.elapsed_s),
                      "device": str(getattr(result, "device", "")),
                      "prtf_cutoff_q_fraction": cutoff,
                      "trial_spread": getattr(result, "trial_spread", None),
                      "window": list(self.window) if self.window else None})
        view = self.reconstruction_view
        picture = view.png()
        errors_png = render_png(error_figure(result))
        prtf_png = render_png(prtf_figure(result))
        with new_result_folder(f"{job.label}-cdi", self.results_dir) as (tmp, final):
            step(0.1, "writing the HDF5 result")
            write_image_result(tmp / "result.h5", arrays, attrs)
            step(0.5, "writing the ZIP")
            write_reconstruction_zip(tmp / "reconstruction.zip", obj, picture, result.support)
            step(0.8, "writing pictures")
            (tmp / "reconstruction.png").write_bytes(picture)
            (tmp / "errors.png").write_bytes(errors_png)
            (tmp / "prtf.png").write_bytes(prtf_png)
            step(0.95, "finishing")
        names = {"hdf5": "result.h5", "zip": "reconstruction.zip", "png": "reconstruction.png",
                 "errors_png": "errors.png", "prtf_png": "prtf.png"}
        return final, {key: final / name for key, name in names.items()}

    def _show_links(self) -> None:
        f = self.files
        entries = [(f["hdf5"], "reconstruction, HDF5 (everything: object, support, trials, "
                               "errors, PRTF)"),
                   (f["zip"], "real and imaginary parts (.npy) and picture, ZIP"),
                   (f["png"], "reconstruction as shown, PNG"),
                   (f["errors_png"], "error plot, PNG"), (f["prtf_png"], "PRTF plot, PNG")]
        self.downloads.value = links_html(entries, self.folder, self.base_url,
                                          self.server_root)

    def clear_results(self) -> None:
        """Forget the shown reconstruction (new data were chosen)."""
        self.result, self.job, self.saved, self.window = None, None, None, None
        self.folder, self.files = None, {}
        self.reconstruction_view.set_image(None)
        self.summary.value = ""
        self.error_plot.value = b""
        self.prtf_plot.value = b""
        self.plots.layout.display = None
        self.downloads.value = ""
        self.run_panel.reset()
        self.results.layout.display = "none"
        self.results_hint.layout.display = None

    # ---------------------------------------------------------------- refocus
    def _refocus_input(self) -> RefocusInput:
        view = self.reconstruction_view
        obj, support = self._shown()
        if obj is None or view.image is None:
            raise InvalidInputError("run the phase retrieval first (section 4), or choose a "
                                    "saved result.h5: the refocus works on a reconstruction")
        r0, _r1, c0, _c1 = self.window
        region = view.region
        full = None if region is None else [region[0] + r0, region[1] + r0,
                                            region[2] + c0, region[3] + c0]
        arrays = {"reconstruction": obj}
        if support is not None:
            arrays["support"] = support
        if self.result is not None:
            schedule = self.job.options.schedule if self.job else ""
            final_error = float(self.result.final_error)
        else:
            schedule = str(self.saved.attrs.get("schedule", ""))
            final_error = self.saved.attrs.get("final_error")
        return RefocusInput(
            field=view.crop(), label=self.label or "cdi", kind="cdi", arrays=arrays,
            attrs={"kind": "cdi", "region": full, "window": list(self.window),
                   "schedule": schedule, "final_error": final_error, "source": self.label})

    # ---------------------------------------------------------------- for scripts and tests
    def wait(self, timeout: float | None = 120) -> bool:
        """Wait until nothing runs in the background (reading, pattern, phasing, refocus)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left():
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if not super().wait(timeout):
            return False
        return self._derive.wait(left()) and self.run_panel.wait(left())


def cdi_dashboard(**kwargs) -> CdiDashboard:
    """Return the CDI phasing dashboard (display it as a notebook cell's last value).

    Parameters
    ----------
    **kwargs
        Passed to :class:`CdiDashboard`.

    Examples
    --------
    >>> from speckle.ui.imaging import cdi_dashboard
    >>> cdi_dashboard()  # doctest: +SKIP
    """
    return CdiDashboard(**kwargs)
