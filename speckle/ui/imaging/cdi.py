"""The CDI phasing dashboard: a diffraction pattern, its mask and support, phase retrieval, results.

A thin layer over :func:`speckle.imaging.workflow.run_cdi`: the fields make a
:class:`~speckle.imaging.options.CdiOptions` (same names and defaults as ``speckle cdi``), the
pattern is prepared and its support found by the library's own functions
(:func:`~speckle.imaging.prepare.prepare_pattern`,
:func:`~speckle.imaging.workflow.initial_support`), so what is shown is what is phased, and the
result file is the command line's (:func:`speckle.io.imaging_result.write_imaging_result`).

The pattern comes as in the XPCS dashboard (beamline folders, upload, the demo ``cdi``). Its
Fourier modulus √I is shown in log scale (over as many decades as it spans, at least 3) with
the unmeasured pixels tinted red: non-finite ones, a beamstop reading zero at the centre,
pixels ≤ 0 or below a level when asked, and rectangles drawn on it (beamstop, gaps,
saturation); they are left free in Fourier space. A constant background is subtracted first
(``auto`` by default: the 1st percentile when above zero, the demo's pedestal); the pattern
may be centred on its centre of symmetry and binned. Its autocorrelation is shown beside it:
rectangles drawn on it form the initial support, or the support is found automatically
(holographic when the sample has reference apertures, else from the autocorrelation; tinted
green either way). Phasing runs in a worker thread with progress and Cancel; the
reconstruction appears as a complex image (magnitude as brightness, phase as hue), with the
verdict, the Fourier error against iteration and the PRTF against |q|/|q|max. A region of it
can be refocused (:class:`~speckle.ui.imaging.refocus.RefocusPanel`). Each finished run is
written as a result folder: ``result.h5``, ``reconstruction.zip`` (real and imaginary parts
and the support as ``.npy``, plus the picture), and PNG pictures; the folder appears only when
complete, so a cancelled or failed run leaves nothing. A saved result (``result.h5``) chosen as data shows its
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
``speckle-cdi-background``        background subtracted first: auto (default), a number, or pN
                                  a percentile; empty or none: none
``speckle-cdi-mask-below``        pixels below this (after the background) are unmeasured
                                  (empty: none)
``speckle-cdi-center``            "centre the pattern" checkbox
``speckle-cdi-bin``               binning (1, 2, 4)
``speckle-cdi-mask-info``         how many pixels are masked, and why
``speckle-autocorrelation``       the autocorrelation's complex image view; rectangles drawn or
                                  typed on it (``.speckle-region-text``) form the initial support
``speckle-support-mode``          automatic / rectangles toggle
``speckle-support-threshold``     threshold of the automatic support (fraction of the maximum;
                                  empty: from the data)
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
``speckle-cdi-summary``           the verdict (``speckle-cdi-verdict-good|marginal|bad``), what
                                  to try, final error, iterations, time, whether the trials
                                  agree (``speckle-cdi-disagree`` when they do not), resolution
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import traitlets

from ...backend import asnumpy
from ...errors import Cancelled, InvalidInputError
from ...imaging.display import display_window
from ...imaging.figures import PRTF_NEEDS, error_figure, prtf_figure
from ...imaging.options import CdiOptions
from ...imaging.phasing import ALGORITHMS, TRIAL_SPREAD_LIMIT, describe_trial_spread, \
    parse_schedule
from ...imaging.prepare import PreparedPattern, prepare_pattern
from ...imaging.support import autocorrelation_map, support_from_rectangles
from ...imaging.workflow import SUPPORT_NAMES, initial_support, run_cdi
from ...io.dataset import Metadata
from ...io.imaging_result import write_imaging_result
from ...io.images import write_reconstruction_zip
from ..common._common import (RUN_STATES, RunPanel, RunPanelOwner, Tasks, describe_error,
                              note_html, styled, sub_progress)
from ..common.beamtime import apply_refocus, refocus_of
from ..common.export import new_result_folder
from ..common.downloads import links_html, render_png
from ..common.saved_result import SavedResult
from ._base import ImagingDashboard, section
from .complex_view import ComplexImageView, crop, log_decades
from .refocus import RefocusInput

__all__ = ["CONSTRAINTS", "CdiDashboard", "RUN_STATES", "ShownPattern", "cdi_dashboard",
           "fourier_modulus", "log_decades"]

#: Object constraints offered: (label, value).
CONSTRAINTS = (("complex (support only)", "complex"), ("real", "real"),
               ("real and non-negative", "positive"))
SUPPORT_MODES = (("automatic", "auto"), ("rectangles", "rectangles"))
BIN_FACTORS = (1, 2, 4)
MASK_RGBA = (0.95, 0.1, 0.1, 0.55)
SUPPORT_RGBA = (0.1, 0.95, 0.35, 0.35)


# -------------------------------------------------------------------------------- the pattern
@dataclass
class ShownPattern:
    """The pattern shown: as read, as prepared for phasing, and what its support would be.

    Attributes
    ----------
    image : numpy.ndarray
        The image as read.
    prepared : PreparedPattern
        :func:`~speckle.imaging.prepare.prepare_pattern` of it with the fields' options.
    autocorrelation : numpy.ndarray
        :func:`~speckle.imaging.support.autocorrelation_map` of the prepared pattern.
    auto_support : numpy.ndarray or None
        The automatic initial support; None when none could be found (``auto_error`` says
        why).
    auto_method : str
        How it was found (a key of :data:`speckle.imaging.workflow.SUPPORT_NAMES`).
    auto_error : str
    options : CdiOptions
        What made it.
    """

    image: np.ndarray
    prepared: PreparedPattern
    autocorrelation: np.ndarray
    auto_support: np.ndarray | None
    auto_method: str
    auto_error: str
    options: CdiOptions


def fourier_modulus(pattern) -> np.ndarray:
    """``√I`` (negative values as 0, non-finite ones kept): what the pattern view shows.

    The modulus spans half the decades of the intensity (see :func:`log_decades`).
    """
    p = np.asarray(asnumpy(pattern), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(p), np.sqrt(np.maximum(p, 0.0)), p)


def show_pattern(image, options: CdiOptions) -> ShownPattern:
    """Prepare a pattern as :func:`~speckle.imaging.workflow.run_cdi` will, and its support."""
    raw = np.asarray(asnumpy(image), dtype=np.float64)
    prepared = prepare_pattern(raw, background=options.background,
                               mask_zeros=options.mask_zeros, mask_below=options.mask_below,
                               center=options.center, bin_factor=options.bin_factor,
                               mask_shadows=options.mask_shadows, mask_rects=options.mask_rects)
    ac = np.asarray(asnumpy(autocorrelation_map(prepared.pattern, mask=prepared.mask)))
    auto, method, error = None, "autocorrelation", ""
    try:
        auto, method, _ = initial_support(prepared, options)
    except InvalidInputError as exc:
        error = describe_error(exc)
    return ShownPattern(image=raw, prepared=prepared, autocorrelation=ac, auto_support=auto,
                        auto_method=method, auto_error=error, options=options)


def _figures(result) -> tuple[bytes, bytes]:
    """The error and PRTF plots of a result (or of a saved one), as PNG."""
    rounds = result.options.rounds
    return (render_png(error_figure(result.errors, result.trial_errors, rounds,
                                    result.final_error)),
            render_png(prtf_figure(result.prtf, result.frc)))


@dataclass
class PhasingJob:
    """What one phasing run needs (taken on the widget thread when Run is pressed)."""

    image: np.ndarray
    options: CdiOptions
    label: str


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
        options=SimpleNamespace(rounds=int((attrs.get("options") or {}).get("rounds", 1))),
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
    shown : ShownPattern or None
        The pattern shown, as read and as prepared, its autocorrelation and automatic support.
    prepared : PreparedPattern or None
        ``shown.prepared``: the pattern phased and its mask.
    state : str
        One of :data:`RUN_STATES` (a trait).
    result : CdiResult or None
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
        self.shown: ShownPattern | None = None
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
    @property
    def prepared(self) -> PreparedPattern | None:
        """The pattern as it will be phased, and its mask (None before data are chosen)."""
        return None if self.shown is None else self.shown.prepared

    def _build(self) -> None:
        defaults = CdiOptions()
        # 2. the pattern and its mask
        self.pattern_view = _regions_view(
            "Red pixels are left free in the phasing. Drag on the pattern to mask a region "
            "(beamstop, gaps, saturated pixels), or type one.", "speckle-cdi-pattern")
        self.nonpositive = styled(widgets.Checkbox(
            value=defaults.mask_zeros, indent=False, description="pixels ≤ 0 are unmeasured",
            tooltip="gaps and dead pixels read 0; turn off for a photon-counting detector whose "
                    "zeros at high q are measurements", layout=widgets.Layout(width="auto")),
            "speckle-cdi-mask-nonpositive")
        self.shadows = styled(widgets.Checkbox(
            value=defaults.mask_shadows, indent=False, description="shadows are unmeasured",
            tooltip="regions that read far less than their mirror image through the centre "
                    "(blocked by a beamstop arm or a frame) are left free",
            layout=widgets.Layout(width="auto", margin="0 12px")), "speckle-cdi-mask-shadows")
        self.background = _field(widgets.Text, "background", str(defaults.background),
                                 "speckle-cdi-background", width="190px",
                                 placeholder="auto, none, 390 or p1",
                                 tooltip="constant background (pedestal) subtracted first: auto "
                                         "(the 1st percentile when above zero), a number of "
                                         "counts, or pN the N-th percentile of the pattern")
        self.mask_below = _field(widgets.Text, "mask below", "", "speckle-cdi-mask-below",
                                 width="190px", placeholder="none",
                                 tooltip="pixels reading below this value (before the "
                                         "background) are unmeasured")
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
            tooltip="automatic: from the holographic cross-terms when the sample has reference "
                    "apertures, else about half the autocorrelation's extent",
            style={"button_width": "100px", "description_width": "initial"}),
            "speckle-support-mode")
        self.support_threshold = _field(widgets.Text, "threshold", "",
                                        "speckle-support-threshold", placeholder="auto",
                                        tooltip="automatic support: fraction of the maximum of "
                                                "the autocorrelation (empty: from the data)",
                                        width="160px")
        self.support_info = styled(widgets.HTML(), "speckle-support-info")

        # 4. phasing
        self.schedule = _field(widgets.Text, "schedule", defaults.schedule,
                               "speckle-cdi-schedule", width="340px",
                               tooltip="e.g. 99*HIO + 1*ER, 20*ER + 180*HIO, "
                                       "3*(20*ER + 80*HIO) + 20*ER; algorithms: "
                                       + ", ".join(ALGORITHMS))
        self.schedule_info = styled(widgets.HTML(), "speckle-cdi-schedule-info")
        self.rounds = _field(widgets.IntText, "rounds", defaults.rounds, "speckle-cdi-rounds",
                             width="130px",
                             tooltip="shrink-wrap updates the support between rounds")
        self.trials = _field(widgets.IntText, "trials", defaults.trials, "speckle-cdi-trials",
                             width="130px",
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
                            "speckle-cdi-sigma", width="150px", step=0.1,
                            tooltip=f"blur of the last shrink-wrap; the first is "
                                    f"{defaults.shrinkwrap_sigma_start:g} px")
        self.threshold = _field(widgets.FloatText, "threshold", defaults.shrinkwrap_threshold,
                                "speckle-cdi-threshold", width="150px", step=0.01,
                                tooltip="fraction of the maximum of the blurred magnitude")
        self.constraint = styled(widgets.Dropdown(
            options=list(CONSTRAINTS), value="complex", description="object",
            style={"description_width": "initial"}, layout=widgets.Layout(width="260px")),
            "speckle-cdi-constraint")
        self.floor = styled(widgets.Checkbox(
            value=defaults.incoherent_floor, indent=False,
            description="leave out a smooth background",
            tooltip="parasitic or diffuse scattering and partially coherent speckle under the "
                    "pattern, up to its local minimum over three speckles, are not fitted",
            layout=widgets.Layout(width="auto", margin="0 12px")), "speckle-cdi-floor")
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
            widgets.HBox([self.nonpositive, self.shadows, self.center, self.binning], **row),
            widgets.HBox([self.background, self.mask_below], **row),
            self.pattern_view, self.mask_info,
            section("3. Autocorrelation and initial support"),
            widgets.HBox([self.support_mode, self.support_threshold], **row),
            self.autocorrelation_view, self.support_info,
            section("4. Phase retrieval"),
            widgets.HBox([self.schedule, self.schedule_info], **row),
            widgets.HBox([self.rounds, self.trials, self.beta, self.seed], **row),
            widgets.HBox([self.shrinkwrap, self.sigma, self.threshold, self.constraint,
                          self.floor], **row),
            self.run_panel, self.folder_template,
            section("5. Reconstruction"), self.results_hint, self.results,
            section("6. Refocus a region of the reconstruction"), self.refocus, self.page_query,
        ]
        self._on_schedule(None)
        self._show_support()

        for w in (self.nonpositive, self.shadows, self.support_threshold):
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
    def options(self) -> CdiOptions:
        """The options the fields ask for (checked): the same as ``speckle cdi`` takes.

        Raises
        ------
        InvalidInputError
            For a field that cannot be read, a schedule that cannot be read or numbers out of
            range.
        """
        seed_text = self.seed.value.strip()
        try:
            seed = int(seed_text) if seed_text else None
        except ValueError:
            raise InvalidInputError(f"the seed must be a whole number (or empty for random "
                                    f"starts), got {seed_text!r}") from None
        constraint = self.constraint.value
        return replace(
            self._pattern_options(), schedule=self.schedule.value,
            rounds=int(self.rounds.value), trials=int(self.trials.value),
            beta=float(self.beta.value), positivity=constraint == "positive",
            incoherent_floor=bool(self.floor.value),
            real=constraint in ("real", "positive"), shrinkwrap=bool(self.shrinkwrap.value),
            shrinkwrap_sigma=float(self.sigma.value),
            shrinkwrap_threshold=float(self.threshold.value), seed=seed)

    def _pattern_options(self) -> CdiOptions:
        """The options that shape the pattern and its initial support (phasing: defaults)."""
        def number(field, what):
            text = field.value.strip()
            try:
                return float(text) if text else None
            except ValueError:
                raise InvalidInputError(f"cannot read {what} {text!r}: give a number, or leave "
                                        "it empty") from None

        background = self.background.value.strip()
        rects = tuple(tuple(int(v) for v in r) for r in self.autocorrelation_view.regions)
        rectangles = self.support_mode.value == "rectangles" and bool(rects)
        return CdiOptions(
            background=None if background.lower() in ("", "none") else background,
            mask_zeros=bool(self.nonpositive.value), mask_shadows=bool(self.shadows.value),
            mask_below=number(self.mask_below, "“mask below”"),
            center="auto" if self.center.value else None, bin_factor=int(self.binning.value),
            mask_rects=tuple(tuple(int(v) for v in r) for r in self.pattern_view.regions),
            support="rectangles" if rectangles else "auto",
            support_rects=rects if rectangles else (),
            support_threshold=number(self.support_threshold, "the support threshold"))

    # ---------------------------------------------------------------- the beamtime monitor
    def template(self):
        """The fields (pattern, support, phasing) and, once a region was refocused, the refocus
        settings, as a CDI template."""
        from ...monitor.templates import Template

        return Template(kind="cdi", cdi=self.options().to_dict(),
                        refocus=refocus_of(self.refocus, self.reconstruction_view.region))

    def apply_template(self, template) -> None:
        """The template's CDI options in the fields (its rectangles once the data are shown).

        Raises
        ------
        InvalidInputError
            For a binning the page does not offer.
        """
        o = template.options("cdi")
        if o.bin_factor not in BIN_FACTORS:
            raise InvalidInputError(f"this folder's template bins {o.bin_factor}×{o.bin_factor}; "
                                    f"the page offers {', '.join(map(str, BIN_FACTORS))}")
        text = lambda v: "" if v is None else str(v)  # noqa: E731
        self._quiet = True
        try:
            self.nonpositive.value = bool(o.mask_zeros)
            self.shadows.value = bool(o.mask_shadows)
            self.floor.value = bool(o.incoherent_floor)
            self.background.value = "none" if o.background is None else str(o.background)
            self.mask_below.value = text(o.mask_below)
            self.center.value = o.center is not None
            self.binning.value = int(o.bin_factor)
            self.support_mode.value = "rectangles" if o.support == "rectangles" else "auto"
            self.support_threshold.value = text(o.support_threshold)
            self.schedule.value = o.schedule
            self.rounds.value, self.trials.value = int(o.rounds), int(o.trials)
            self.beta.value = float(o.beta)
            self.seed.value = text(o.seed)
            self.shrinkwrap.value = bool(o.shrinkwrap)
            self.sigma.value = float(o.shrinkwrap_sigma)
            self.threshold.value = float(o.shrinkwrap_threshold)
            self.constraint.value = ("positive" if o.positivity else "real" if o.real
                                     else "complex")
        finally:
            self._quiet = False
        if template.refocus:
            apply_refocus(self.refocus, template.options("refocus"))

    def after_template_open(self, template) -> None:
        """The template's rectangles, then the phasing (at once when no masked rectangle
        changes the pattern first)."""
        o = template.options("cdi")
        for r in o.support_rects:
            self.autocorrelation_view.add_region(*r)
        if o.mask_rects:
            for r in o.mask_rects:
                self.pattern_view.add_region(*r)
            self.update_pattern()
            self.run_message.show("The folder's settings are shown: press Run to phase.", "info")
            return
        self.run()

    def _on_dataset(self, change) -> None:
        self.cancel()
        self._derive.invalidate()
        self.clear_results()
        super()._on_dataset(change)

    def _prepare(self, image, metadata, label) -> dict:
        return {"shown": show_pattern(image, self._pattern_options()), "metadata": metadata,
                "label": label}

    def _prepare_saved(self, saved: SavedResult, label: str) -> dict:
        pattern = saved.arrays.get("pattern")
        usable = pattern is not None and pattern.ndim == 2 and not np.iscomplexobj(pattern)
        return {"shown": show_pattern(pattern, self._pattern_options()) if usable else None,
                "metadata": saved.metadata, "label": label, "saved": saved}

    def _show(self, prepared: dict) -> None:
        self.label = prepared["label"]
        self.metadata = prepared["metadata"]
        saved, shown = prepared.get("saved"), prepared["shown"]
        if saved is not None:
            self.refocus.suggest(energy=self.metadata.energy, pitch=saved.pitch)
        else:
            self._suggest_refocus(self.metadata, shown.image.shape)
        if shown is not None:
            self._apply(shown)
        else:  # a saved result without its pattern: nothing to phase
            self.shown = None
            self.pattern_view.set_image(None)
            self.autocorrelation_view.set_image(None)
            self.mask_info.value = ""
            self._show_support()
        if saved is not None:
            self._show_saved(saved)

    def set_pattern(self, intensity, *, label: str = "pattern", metadata=None) -> None:
        """Use a diffraction pattern given as an array (notebooks, simulations, tests).

        The same path as a chosen dataset: prepared, masked and shown in the background
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
        """Prepare the pattern and find its support again with the fields' settings."""
        shown = self.shown
        if shown is None:
            return
        raw = shown.image
        try:
            options = self._pattern_options()
        except (InvalidInputError, ValueError) as exc:
            self.message.error(exc, title="Cannot prepare the pattern:")
            return
        self.message.clear()

        def done(new):
            if self.shown is not None and self.shown.image is raw:
                self._apply(new)

        self._derive.start(lambda: show_pattern(raw, options), done,
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

    def _apply(self, shown: ShownPattern) -> None:
        """Show a prepared pattern: pattern with its mask, autocorrelation with the support."""
        self.shown = shown
        prepared = shown.prepared
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
                shown.autocorrelation, "autocorrelation, unmeasured pixels filled and photon "
                                       "noise damped")
        finally:
            self._quiet = False
        self.pattern_view.set_tint(prepared.mask, MASK_RGBA, name="mask")
        self.mask_info.value = self._mask_html(shown)
        self._show_support()

    @staticmethod
    def _mask_html(shown: ShownPattern) -> str:
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
        shown = self.shown
        if shown is None:
            raise InvalidInputError("choose a diffraction pattern first: a beamline file, an "
                                    "upload or the demo data")
        if self.support_mode.value == "rectangles":
            rects = self.autocorrelation_view.regions
            if not rects:
                raise InvalidInputError(
                    "draw at least one rectangle on the autocorrelation (drag with the mouse, or "
                    "type ROW0:ROW1,COL0:COL1 and press Add), or choose the automatic support")
            return support_from_rectangles(shown.prepared.pattern.shape, rects)
        if shown.auto_support is None:
            raise InvalidInputError(shown.auto_error or "no automatic support was found; "
                                    "draw rectangles on the autocorrelation")
        return shown.auto_support

    def _show_support(self) -> None:
        self.support_threshold.disabled = self.support_mode.value != "auto"
        if self.shown is None:
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
               else f"automatic, from the {SUPPORT_NAMES[self.shown.auto_method]}")
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

    def make_job(self) -> PhasingJob:
        """Everything a run needs, from the page (widget thread)."""
        options = self.options()
        self.initial_support()  # says what to do when there is none
        return PhasingJob(image=self.shown.image, options=options, label=self.label or "cdi")

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
        result = run_cdi(job.image, job.options, source=job.label,
                         progress=sub_progress(progress, 0.0, 0.9), cancel=cancel)

        def step(fraction, stage):
            if cancel():
                raise Cancelled("the phasing was cancelled")
            if self.shown is None or self.shown.image is not job.image:
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
        self.summary.value = self._summary_html(result)
        self.error_plot.value, self.prtf_plot.value = _figures(result)
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
            self.error_plot.value, self.prtf_plot.value = _figures(plotted)
        self.plots.layout.display = None if plotted is not None else "none"
        self.results_hint.layout.display = "none"
        self.results.layout.display = None

    def _shown(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The reconstruction shown (the last phasing's, or a saved one's) and its support."""
        if self.result is not None:
            return np.asarray(self.result.reconstruction), np.asarray(self.result.support, bool)
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
        verdict = attrs.get("verdict")
        if isinstance(verdict, dict) and verdict.get("summary"):
            parts.append(html.escape(str(verdict["summary"])) + ".")
        parts.append("Select a region to refocus it (section 6)"
                     + ("; press Run to phase its pattern again." if "pattern" in saved.arrays
                        else "."))
        return f"<div>{' '.join(parts)}</div>"

    @staticmethod
    def _summary_html(result) -> str:
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

    # ---------------------------------------------------------------- files
    def _write(self, result, job: PhasingJob, step):
        view = self.reconstruction_view
        picture = view.png()
        errors_png, prtf_png = _figures(result)
        with new_result_folder(f"{job.label}-cdi", self.results_dir) as (tmp, final):
            step(0.1, "writing the HDF5 result")
            write_imaging_result(result, tmp / "result.h5")
            step(0.5, "writing the ZIP")
            write_reconstruction_zip(tmp / "reconstruction.zip", result.reconstruction, picture,
                                     result.support)
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
        entries = [(f["hdf5"], "reconstruction, HDF5 (everything: reconstruction, support, "
                               "trials, errors, PRTF, verdict)"),
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
        obj, _ = self._shown()
        if obj is None or view.image is None:
            raise InvalidInputError("run the phase retrieval first (section 4), or choose a "
                                    "saved result.h5: the refocus works on a reconstruction")
        r0, r1, c0, c1 = self.window
        region = view.region or (0, r1 - r0, 0, c1 - c0)  # in the window; the whole object
        full = (region[0] + r0, region[1] + r0, region[2] + c0, region[3] + c0)
        return RefocusInput(field=view.crop(), label=self.label or "cdi", kind="cdi",
                            image=obj, region=full)

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
