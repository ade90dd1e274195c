"""The CDI phasing dashboard: a diffraction pattern, its mask and support, phase retrieval, results.

The widgets of the page, bound to a plain-Python
:class:`~speckle.ui.imaging.cdi_controller.CdiController` that holds the state and does the
work over :func:`speckle.imaging.workflow.run_cdi`: the fields make a
:class:`~speckle.imaging.options.CdiOptions` (same names and defaults as ``speckle cdi``), the
pattern is prepared and its support found by the library's own functions
(:func:`~speckle.imaging.prepare.prepare_pattern`,
:func:`~speckle.imaging.workflow.initial_support`), so what is shown is what is phased, and the
result file is the command line's (:func:`speckle.io.imaging_result.write_imaging_result`).
What the page says in words is :mod:`speckle.ui.imaging.cdi_text`'s.

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
complete, so a cancelled or failed run leaves nothing. A saved result (``result.h5``) chosen
as data shows its reconstruction in section 5, ready to refocus, and its pattern (when saved)
in section 2.

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

import ipywidgets as widgets
import numpy as np
import traitlets

from ...backend import asnumpy
from ...errors import Cancelled, InvalidInputError
from ...imaging.options import CdiOptions
from ...imaging.phasing import ALGORITHMS
from ...imaging.workflow import SUPPORT_NAMES
from ...io.dataset import Metadata
from ..common._common import (
    RUN_STATES,
    RunPanel,
    RunPanelOwner,
    Tasks,
    delegated,
    describe_error,
    note_html,
    styled,
    sub_progress,
)
from ..common.beamtime import apply_refocus, refocus_of
from ..common.downloads import links_html
from ..common.saved_result import SavedResult
from ._base import ImagingDashboard, section
from .cdi_controller import (
    BIN_FACTORS,
    CdiController,
    PhasingJob,
    ShownPattern,
    fourier_modulus,
    result_figures,
    saved_as_result,
)
from .cdi_text import mask_html, percent, saved_html, summary_html
from .complex_view import ComplexImageView
from .refocus_controller import RefocusInput
from .render import crop, log_decades

__all__ = ["CONSTRAINT_CHOICES", "RUN_STATES", "CdiDashboard", "cdi_dashboard"]

#: Object constraints offered: (label, value of :attr:`CdiFields.constraint`).
CONSTRAINT_CHOICES = (("complex (support only)", "complex"), ("real", "real"),
                      ("real and non-negative", "positive"))
SUPPORT_CHOICES = (("automatic", "auto"), ("rectangles", "rectangles"))
MASK_RGBA = (0.95, 0.1, 0.1, 0.55)
SUPPORT_RGBA = (0.1, 0.95, 0.35, 0.35)
#: The page's widgets (attribute names) bound to :class:`CdiFields` (field names).
BINDINGS = (("nonpositive", "mask_zeros"), ("shadows", "mask_shadows"),
            ("background", "background"), ("mask_below", "mask_below"), ("center", "center"),
            ("binning", "bin_factor"), ("support_mode", "support_mode"),
            ("support_threshold", "support_threshold"), ("schedule", "schedule"),
            ("rounds", "rounds"), ("trials", "trials"), ("beta", "beta"), ("seed", "seed"),
            ("shrinkwrap", "shrinkwrap"), ("sigma", "shrinkwrap_sigma"),
            ("threshold", "shrinkwrap_threshold"), ("constraint", "constraint"),
            ("floor", "incoherent_floor"))


def _regions_view(help_text: str, css: str, regions) -> ComplexImageView:
    """A real image (log scale) with the controller's rectangles (tints go over it)."""
    return styled(ComplexImageView(regions=regions, view="magnitude", scale="log",
                                   views=("magnitude",), figsize=(4.6, 4.0),
                                   help_text=help_text), css)


def _describe_phasing_error(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return ("Not enough memory for this phasing: bin the pattern (section 2), use fewer "
                "trials, or ask for a server with more memory.")
    return describe_error(exc)


def _field(cls, description: str, value, css: str, tooltip: str = "", width="200px", **kw):
    return styled(cls(value=value, description=description, tooltip=tooltip,
                      continuous_update=True, style={"description_width": "initial"},
                      layout=widgets.Layout(width=width, margin="0 12px 0 0"), **kw), css)


class CdiDashboard(RunPanelOwner, ImagingDashboard):
    """Coherent diffraction imaging (phase retrieval) as one widget.

    The widgets only show and edit the state of :attr:`controller`
    (:class:`~speckle.ui.imaging.cdi_controller.CdiController`), which does the work.

    Parameters
    ----------
    demos : sequence of str
        Demo datasets offered (default the CDI demo).
    **kwargs
        See :class:`~speckle.ui.imaging._base.ImagingDashboard` (``data_dirs``, ``upload_dir``,
        ``results_dir``, ``base_url``, ``server_root``).

    Attributes
    ----------
    controller : CdiController
        The fields, regions, pattern, result and files; the operations.
    chooser : DataChooser
    pattern_view, autocorrelation_view, reconstruction_view : ComplexImageView
    refocus : RefocusPanel
    shown, prepared, result, job, saved, window, folder, files, label
        The controller's (read only).
    state : str
        One of :data:`RUN_STATES` (a trait).
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

    shown = delegated("controller", "shown")
    prepared = delegated("controller", "prepared")
    result = delegated("controller", "result")
    job = delegated("controller", "job")
    saved = delegated("controller", "saved")
    window = delegated("controller", "window")
    folder = delegated("controller", "folder")
    files = delegated("controller", "files")
    label = delegated("controller", "label")

    def __init__(self, *, demos=("cdi",), **kwargs):
        super().__init__(demos=demos, **kwargs)
        self.add_class("speckle-cdi")
        self.controller = CdiController()
        self._derive = Tasks("cdi-pattern")
        self._quiet = False
        self._build()

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        defaults = CdiOptions()
        c = self.controller
        # 2. the pattern and its mask
        self.pattern_view = _regions_view(
            "Red pixels are left free in the phasing. Drag on the pattern to mask a region "
            "(beamstop, gaps, saturated pixels), or type one.", "speckle-cdi-pattern",
            c.mask_regions)
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
            "initial support. Or choose the automatic support.", "speckle-autocorrelation",
            c.support_regions)
        self.support_mode = styled(widgets.ToggleButtons(
            options=list(SUPPORT_CHOICES), value="auto", description="support",
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
            options=list(CONSTRAINT_CHOICES), value="complex", description="object",
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
        self._push_fields()
        for attr, name in BINDINGS:  # first: the handlers below read the controller
            getattr(self, attr).observe(self._binder(name), "value")
        self._on_schedule(None)
        self._show_support()

        for w in (self.nonpositive, self.shadows, self.support_threshold):
            w.observe(lambda _c: None if self._quiet else self.update_pattern(), "value")
        for w in (self.background, self.mask_below):
            w.observe(lambda _c: None if self._quiet else self.update_pattern(), "value")
        for w in (self.center, self.binning):
            w.observe(lambda _c: None if self._quiet else self._geometry_changed(), "value")
        self.pattern_view.observe(self._on_mask_regions, "regions_version")
        self.autocorrelation_view.observe(self._on_support_regions, "regions_version")
        self.support_mode.observe(lambda _c: self._show_support(), "value")
        self.schedule.observe(self._on_schedule, "value")
        for w in (self.rounds, self.trials):
            w.observe(self._on_schedule, "value")
        self.whole_frame.observe(lambda _c: self._show_reconstruction(), "value")
        self.run_button.on_click(lambda _b: self.run())

    # ---------------------------------------------------------------- fields <-> controller
    def _binder(self, name: str) -> Callable:
        def bind(change):
            setattr(self.controller.fields, name, change["new"])
        return bind

    def _push_fields(self) -> None:
        """Show the controller's fields in the widgets (without reacting to them)."""
        quiet, self._quiet = self._quiet, True
        try:
            for attr, name in BINDINGS:
                getattr(self, attr).value = getattr(self.controller.fields, name)
        finally:
            self._quiet = quiet

    def options(self) -> CdiOptions:
        """The options the fields ask for (checked): see :meth:`CdiController.options`."""
        return self.controller.options()

    def initial_support(self) -> np.ndarray:
        """The initial support as chosen: see :meth:`CdiController.initial_support`."""
        return self.controller.initial_support()

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
        self.controller.apply_options(template.options("cdi"))
        self._push_fields()
        self._show_support()
        if template.refocus:
            apply_refocus(self.refocus, template.options("refocus"))

    def after_template_open(self, template) -> None:
        """The template's rectangles, then the phasing (at once when no masked rectangle
        changes the pattern first)."""
        o = template.options("cdi")
        try:
            self.controller.apply_rectangles(o)
        except InvalidInputError as exc:
            self.run_message.error(exc, title="The folder's rectangles do not fit this pattern:")
            return
        if o.mask_rects:
            self.run_message.show("The folder's settings are shown: press Run to phase.", "info")
            return
        self.run()

    # ---------------------------------------------------------------- data to pattern
    def _on_dataset(self, change) -> None:
        self.cancel()
        self._derive.invalidate()
        self.clear_results()
        super()._on_dataset(change)

    def _prepare(self, image, metadata, label) -> dict:
        return {"shown": self.controller.prepare(image), "metadata": metadata, "label": label}

    def _prepare_saved(self, saved: SavedResult, label: str) -> dict:
        pattern = saved.arrays.get("pattern")
        usable = pattern is not None and pattern.ndim == 2 and not np.iscomplexobj(pattern)
        return {"shown": self.controller.prepare(pattern) if usable else None,
                "metadata": saved.metadata, "label": label, "saved": saved}

    def _show(self, prepared: dict) -> None:
        self.controller.label = prepared["label"]
        self.metadata = prepared["metadata"]
        saved, shown = prepared.get("saved"), prepared["shown"]
        if saved is not None:
            self.refocus.suggest(energy=self.metadata.energy, pitch=saved.pitch)
        else:
            self._suggest_refocus(self.metadata, shown.image.shape)
        if shown is not None:
            self._apply(shown)
        else:  # a saved result without its pattern: nothing to phase
            self.controller.apply(None)
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
        shown = self.controller.shown
        if shown is None:
            return
        raw = shown.image
        try:
            self.controller.pattern_options()  # a field that cannot be read: said now
        except (InvalidInputError, ValueError) as exc:
            self.message.error(exc, title="Cannot prepare the pattern:")
            return
        self.message.clear()

        def done(new):
            if self.controller.is_current(raw):
                self._apply(new)

        self._derive.start(lambda: self.controller.prepare(raw), done,
                           lambda exc: self.message.error(exc, title="Cannot prepare the "
                                                                     "pattern:"))

    def _geometry_changed(self) -> None:
        self._quiet = True
        try:
            self.controller.geometry_changed()
        finally:
            self._quiet = False
        self.update_pattern()

    def _on_mask_regions(self, _change) -> None:
        if not self._quiet:
            self.update_pattern()

    def _apply(self, shown: ShownPattern) -> None:
        """Show a prepared pattern: pattern with its mask, autocorrelation with the support."""
        prepared = shown.prepared
        rows, cols = prepared.pattern.shape
        what = [f"{rows} × {cols} pixels; shown: the Fourier modulus √I"]
        if prepared.center is not None:
            what.append(f"centred from ({prepared.center[0]:.1f}, {prepared.center[1]:.1f})")
        if prepared.bin_factor > 1:
            what.append(f"binned {prepared.bin_factor}×{prepared.bin_factor}")
        self._quiet = True
        try:
            self.controller.apply(shown)
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
        self.mask_info.value = mask_html(shown)
        self._show_support()

    # ---------------------------------------------------------------- support
    def _on_support_regions(self, _change) -> None:
        if self._quiet:
            return
        mode = self.controller.fields.support_mode  # drawing a rectangle chose rectangles
        if self.support_mode.value != mode:
            self.support_mode.value = mode  # redraws
        else:
            self._show_support()

    def _show_support(self) -> None:
        mode = self.controller.fields.support_mode
        self.support_threshold.disabled = mode != "auto"
        shown = self.controller.shown
        if shown is None:
            self.support_info.value = ""
            return
        try:
            support = self.controller.initial_support()
        except InvalidInputError as exc:
            self.autocorrelation_view.set_tint(None, name="support")
            self.support_info.value = (f"<span style='color:#b00020'><b>Initial support:</b> "
                                       f"{html.escape(str(exc), quote=False)}</span>")
            return
        self.autocorrelation_view.set_tint(support, SUPPORT_RGBA, name="support")
        n = int(support.sum())
        how = ("the union of the rectangles" if mode == "rectangles"
               else f"automatic, from the {SUPPORT_NAMES[shown.auto_method]}")
        self.support_info.value = (f"<b>Initial support</b> (green): {n} pixels "
                                   f"({percent(n, support.size)} of the frame), {how}.")

    # ---------------------------------------------------------------- options and running
    def _on_schedule(self, _change) -> None:
        try:
            per, trial, total = self.controller.iterations()
        except InvalidInputError as exc:
            self.schedule_info.value = (f"<span style='color:#b00020'>"
                                        f"{html.escape(str(exc), quote=False)}</span>")
            return
        self.schedule_info.value = (f"<span style='color:#555'>{per} iterations per round; "
                                    f"{trial} per trial, {total} in all</span>")

    def make_job(self) -> PhasingJob:
        """Everything a run needs, from the page (widget thread)."""
        return self.controller.make_job()

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
        result = self.controller.phase(job, progress=sub_progress(progress, 0.0, 0.9),
                                       cancel=cancel)

        def step(fraction, stage):
            if cancel():
                raise Cancelled("the phasing was cancelled")
            if not self.controller.is_current(job.image):
                raise Cancelled("other data were chosen meanwhile")
            progress(0.9 + 0.1 * fraction, stage)

        step(0.0, "showing the reconstruction")
        try:
            self._show_result(result, job)
            self.controller.write(result, job, self.reconstruction_view.png(), step,
                                  self.results_dir)
        except BaseException as exc:
            if self.result is result:  # shown, not saved: say so
                self.downloads.value = note_html(
                    "Cancelled: no result files were written." if isinstance(exc, Cancelled)
                    or cancel() else "No result files were written.")
            raise
        self._show_links()

    # ---------------------------------------------------------------- showing a result
    def _show_result(self, result, job: PhasingJob) -> None:
        """Make ``result`` the shown one: reconstruction, summary, error and PRTF plots."""
        self.controller.accept(result, job)
        self.downloads.value = note_html("Writing the result files…")
        self._show_reconstruction()
        self.summary.value = summary_html(result)
        self.error_plot.value, self.prtf_plot.value = result_figures(result)
        self.plots.layout.display = None
        self.results_hint.layout.display = "none"
        self.results.layout.display = None

    def _show_saved(self, saved: SavedResult) -> None:
        """Show a saved result's reconstruction (and its plots, when it has them)."""
        self.controller.saved = saved
        self._show_reconstruction()
        self.summary.value = saved_html(saved)
        plotted = saved_as_result(saved)
        if plotted is not None:
            self.error_plot.value, self.prtf_plot.value = result_figures(plotted)
        self.plots.layout.display = None if plotted is not None else "none"
        self.results_hint.layout.display = "none"
        self.results.layout.display = None

    def _show_reconstruction(self) -> None:
        window = self.controller.choose_window(bool(self.whole_frame.value))
        if window is None:
            return
        obj, _ = self.controller.reconstruction()
        rows, cols = obj.shape
        r0, r1, c0, c1 = window
        where = "the whole frame" if window == (0, rows, 0, cols) else (
            f"rows {r0}:{r1}, cols {c0}:{c1} of the {rows} × {cols} frame (around the support)")
        what = "reconstruction" if self.saved is None else f"saved {self.saved.name}"
        self.reconstruction_view.set_image(
            crop(obj, window), f"{what}, {where}; brightness: magnitude, hue: phase")

    # ---------------------------------------------------------------- files
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
        self.controller.clear_result()
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
        obj, region = self.controller.refocus_region(view.region)
        return RefocusInput(field=view.crop(), label=self.label or "cdi", kind="cdi",
                            image=obj, region=region)

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
