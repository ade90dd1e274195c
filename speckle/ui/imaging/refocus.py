"""Refocusing a region of a complex image: a sweep of propagation distances and its sharpness.

:class:`RefocusPanel` asks its ``source`` for the field to refocus (a region of an FTH or CDI
reconstruction, or any complex image) and refocuses it with
:func:`speckle.imaging.workflow.run_refocus` in a worker thread (progress, Cancel), as the
command line and the beamtime monitor do; it plots the sharpness against the distance with a
marker that can be dragged along the curve (or moved with the slider bound to it), and shows
the field at the marker's distance, or its gradient. Each finished sweep is written as a
result folder: the sharpness table (CSV), pictures (PNG) and the HDF5 result in the one
refocus layout (:func:`speckle.io.imaging_result.write_imaging_result`). Units at the
interface: eV, nm, µm; SI inside. The widgets only show and edit the state of a plain-Python
:class:`~speckle.ui.imaging.refocus_controller.RefocusController`, which does the work.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import traitlets
from matplotlib.figure import Figure

from ...errors import InvalidInputError
from ...imaging.display import SCALES
from ...imaging.focus import METRICS
from ...imaging.options import RefocusOptions
from ..common._common import (
    RunPanel,
    RunPanelOwner,
    Tasks,
    delegated,
    note_html,
    styled,
    sub_progress,
)
from ..common.canvas import interactive_canvas
from ..common.downloads import links_html
from ..common.server import base_url as default_base_url
from .refocus_controller import (
    FRAME_PIXELS,
    METRIC_LABELS,
    UM,
    RefocusController,
    RefocusInput,
    upscale,
)
from .render import image_png

__all__ = ["RefocusPanel"]

#: The panel's widgets (attribute names) bound to :class:`RefocusFields` (field names).
BINDINGS = ("energy", "pitch", "z_from", "z_to", "steps", "apodization", "metric", "extremum",
            "method")


def _number(description: str, value: float, css: str, tooltip: str = "", step=None):
    return styled(widgets.FloatText(value=value, description=description, step=step,
                                    tooltip=tooltip, style={"description_width": "120px"},
                                    layout=widgets.Layout(width="240px")), css)


class RefocusPanel(RunPanelOwner, widgets.VBox):
    """Energy, pixel pitch, distances, apodization, metric; Run/Cancel; sharpness and frames.

    Parameters
    ----------
    source : callable, optional
        ``source() -> RefocusInput``, called on the widget thread when a sweep starts; raises
        :class:`~speckle.errors.InvalidInputError` with what the user must do first.
    results_dir, base_url, server_root : optional
        Where result folders go and how they are linked (see
        :class:`~speckle.ui.common.base.Dashboard`).

    Attributes
    ----------
    controller : RefocusController
        The fields, the sweep, the marker, the result folder; the operations.
    state : str
        "idle", "running", "done", "cancelled" or "failed" (a trait).
    result, sweep, input, folder, files
        The controller's (read only): the last finished refocus
        (:func:`speckle.imaging.workflow.run_refocus`), its sweep, what it was given, its
        result folder and files.
    index : int
        Index into ``sweep.distances`` of the marker (the slider's value; a trait).
    error : str
        The last failure in words ("" when none).
    run_panel : RunPanel
        Refocus / Cancel, progress, stage and the message.

    Notes
    -----
    CSS classes: ``speckle-refocus`` (the whole), ``speckle-refocus-energy``,
    ``speckle-refocus-pitch`` (either also ``speckle-refocus-assumed`` while it holds a default
    the data did not give and the user has not edited; ``speckle-refocus-assumed-note`` then
    says so), ``speckle-refocus-from``, ``speckle-refocus-to``,
    ``speckle-refocus-steps``, ``speckle-refocus-apodization``, ``speckle-refocus-metric``,
    ``speckle-refocus-extremum``, ``speckle-refocus-method``, ``speckle-refocus-run``,
    ``speckle-refocus-cancel``, ``speckle-refocus-progress``, ``speckle-refocus-stage`` (the
    run panel's, also ``speckle-run-panel``...), ``speckle-refocus-hint`` (shown until a sweep
    ran), ``speckle-refocus-results`` (the plots, hidden until then), ``speckle-sharpness-plot`` (the ipympl canvas; drag on it to move the marker),
    ``speckle-focus-slider``, ``speckle-focus-distance`` (the marker's distance),
    ``speckle-focus-best`` (best distance per metric), ``speckle-focus-frame`` (the field at the
    marker, an image), ``speckle-focus-caption``, ``speckle-gradient-toggle`` (field /
    gradient), ``speckle-focus-scale``, ``speckle-save-frame``, ``speckle-download`` (links
    ``a.speckle-download-link``) and ``speckle-error``.
    """

    state = traitlets.Unicode("idle")
    index = traitlets.Int(0)

    result = delegated("controller", "result")
    sweep = delegated("controller", "sweep")
    input = delegated("controller", "input")
    folder = delegated("controller", "folder")
    files = delegated("controller", "files")
    distance = delegated("controller", "distance")

    def __init__(self, source: Callable[[], RefocusInput] | None = None, *, results_dir=None,
                 base_url: str | None = None, server_root=None, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-refocus")
        self.source = source
        self.results_dir = results_dir
        self.base_url = base_url or default_base_url()
        self.server_root = server_root
        self.controller = RefocusController()
        self.frame_png = b""
        self._lock = threading.RLock()
        self._frames = Tasks("refocus-frame")
        self._dragging = False

        self.energy = _number("energy (eV)", 780.0, "speckle-refocus-energy", step=1)
        self.pitch = _number("pixel pitch (nm)", 20.0, "speckle-refocus-pitch",
                             tooltip="size of one image pixel in the sample plane", step=1)
        self.assumed_note = styled(widgets.HTML(), "speckle-refocus-assumed-note")
        self._assumed: set[str] = set()
        self._filling = False
        for name in ("energy", "pitch"):
            getattr(self, name).observe(lambda _c, n=name: self._edited(n), "value")
        self.z_from = _number("from (µm)", -10.0, "speckle-refocus-from", step=1)
        self.z_to = _number("to (µm)", 10.0, "speckle-refocus-to", step=1)
        self.steps = styled(widgets.BoundedIntText(
            value=41, min=3, max=2001, description="distances", style={"description_width":
                                                                       "120px"},
            layout=widgets.Layout(width="240px")), "speckle-refocus-steps")
        self.apodization = styled(widgets.FloatSlider(
            value=0.1, min=0.0, max=0.5, step=0.01, description="apodization",
            tooltip="smooth edge window, as a fraction of the half-size of the region",
            style={"description_width": "120px"}, layout=widgets.Layout(width="320px")),
            "speckle-refocus-apodization")
        self.metric = styled(widgets.Dropdown(
            options=[(METRIC_LABELS.get(m, m), m) for m in METRICS],
            description="sharpness", style={"description_width": "120px"},
            layout=widgets.Layout(width="320px")), "speckle-refocus-metric")
        self.extremum = styled(widgets.Dropdown(
            options=[("its maximum", "max"), ("its minimum", "min")],
            description="focus at",
            tooltip="which extremum of the sharpness marks the focus (phase objects: some "
                    "metrics are minimal in focus)",
            style={"description_width": "120px"}, layout=widgets.Layout(width="320px")),
            "speckle-refocus-extremum")
        self.method = styled(widgets.Dropdown(
            options=[("angular spectrum (exact)", "angular"), ("Fresnel (paraxial)", "fresnel")],
            description="propagation", style={"description_width": "120px"},
            layout=widgets.Layout(width="320px")), "speckle-refocus-method")
        self._own(RunPanel(label="Refocus", what="The refocus sweep", prefix="speckle-refocus",
                           name="refocus", progress_width="280px"))
        self.message = self.run_panel.message

        # results: the sharpness curve with its marker, the slider, the frame
        self.figure = Figure(figsize=(5.2, 3.4), layout="constrained")
        self.ax = self.figure.add_subplot()
        self.ax.set_xlabel("propagation distance (µm)")
        self.ax.set_ylabel("sharpness")
        (self._curve,) = self.ax.plot([], [], "o-", color="#1f77b4", markersize=3)
        self._best_line = self.ax.axvline(0.0, color="#2ca02c", linestyle="--", linewidth=1)
        self._marker = self.ax.axvline(0.0, color="#d62728", linewidth=2)
        self.plot, self._manager = interactive_canvas(self.figure, self._lock)
        styled(self.plot, "speckle-sharpness-plot")
        self.plot.mpl_connect("button_press_event", self._on_press)
        self.plot.mpl_connect("motion_notify_event", self._on_motion)
        self.plot.mpl_connect("button_release_event", self._on_release)
        self.slider = styled(widgets.IntSlider(value=0, min=0, max=1, readout=False,
                                               continuous_update=True, disabled=True,
                                               description="distance",
                                               layout=widgets.Layout(width="360px")),
                             "speckle-focus-slider")
        self.distance_text = styled(widgets.HTML(), "speckle-focus-distance")
        self.best_button = widgets.Button(description="to the best", icon="bullseye",
                                          disabled=True, layout=widgets.Layout(width="120px"))
        self.best_text = styled(widgets.HTML(), "speckle-focus-best")
        self.frame_view = styled(widgets.ToggleButtons(
            options=[("field", "field"), ("gradient", "gradient")], value="field",
            style={"button_width": "80px"}), "speckle-gradient-toggle")
        self.frame_scale = styled(widgets.ToggleButtons(options=list(SCALES), value="linear",
                                                        style={"button_width": "64px"}),
                                  "speckle-focus-scale")
        self.frame = styled(widgets.Image(format="png", layout=widgets.Layout(
            width=f"{FRAME_PIXELS}px", max_width="100%")), "speckle-focus-frame")
        self.frame_caption = styled(widgets.HTML(), "speckle-focus-caption")
        self.save_frame_button = styled(widgets.Button(description="Save this frame",
                                                       icon="save", disabled=True,
                                                       layout=widgets.Layout(width="auto")),
                                        "speckle-save-frame")
        self.downloads = styled(widgets.HTML(), "speckle-download")
        self._body = styled(widgets.VBox([
            widgets.HBox([
                widgets.VBox([self.plot, widgets.HBox([self.slider, self.best_button]),
                              self.distance_text, self.best_text]),
                widgets.VBox([widgets.HBox([self.frame_view, self.frame_scale],
                                           layout=widgets.Layout(flex_flow="row wrap")),
                              self.frame, self.frame_caption, self.save_frame_button],
                             layout=widgets.Layout(margin="0 0 0 12px")),
            ], layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start")),
            self.downloads,
        ]), "speckle-refocus-results")
        self.hint = styled(widgets.HTML(
            "<div style='color:#555;padding:4px 0'>Press <b>Refocus</b>: the sharpness against "
            "the distance appears here, with the field at the red marker beside it.</div>"),
            "speckle-refocus-hint")
        self.children = [
            self.assumed_note,
            widgets.HBox([widgets.VBox([self.energy, self.pitch, self.steps]),
                          widgets.VBox([self.z_from, self.z_to]),
                          widgets.VBox([self.apodization, self.metric, self.extremum,
                                        self.method])],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.run_panel,
            self.hint,
            self._body,
        ]
        self.frame.layout.display = "none"  # until the first frame is rendered
        self._push_fields()
        for name in BINDINGS:  # first: the handlers below read the controller
            getattr(self, name).observe(self._binder(name), "value")
        self._show_body(False)
        self.run_button.on_click(lambda _b: self.run())
        self.best_button.on_click(lambda _b: self.go_to_best())
        self.save_frame_button.on_click(lambda _b: self.save_frame())
        self.slider.observe(lambda c: setattr(self, "index", int(c["new"])), "value")
        self.observe(self._on_index, "index")
        self.metric.observe(self._on_metric, "value")
        self.extremum.observe(lambda _c: self._metric_changed(), "value")
        self.frame_view.observe(lambda _c: self.show_frame(), "value")
        self.frame_scale.observe(lambda _c: self.show_frame(), "value")

    # ---------------------------------------------------------------- fields <-> controller
    def _binder(self, name: str) -> Callable:
        def bind(change):
            setattr(self.controller.fields, name, change["new"])
        return bind

    def _push_fields(self) -> None:
        """Show the controller's fields in the widgets."""
        for name in BINDINGS:
            getattr(self, name).value = getattr(self.controller.fields, name)

    # ---------------------------------------------------------------- parameters
    def set_parameters(self, *, energy: float | None = None, pitch: float | None = None,
                       z_range: tuple[float, float] | None = None) -> None:
        """Fill the fields (SI units: eV, m, (m, m)); None leaves a field as it is."""
        self.controller.set_parameters(energy=energy, pitch=pitch, z_range=z_range)
        self._push_fields()

    def suggest(self, *, energy: float | None, pitch: float | None) -> None:
        """Fill energy (eV) and pitch (m) from the data; mark those it lacks as assumed.

        A field the data does not give keeps its value (a default) but is marked "not from the
        file — check" (CSS ``speckle-refocus-assumed``) until the user edits it.
        """
        self._filling = True
        try:
            self.set_parameters(energy=energy, pitch=pitch)
        finally:
            self._filling = False
        self._mark("energy", not energy)
        self._mark("pitch", not pitch)

    @property
    def assumed(self) -> set[str]:
        """The fields (``"energy"``, ``"pitch"``) holding a value not from the data."""
        return set(self._assumed)

    def _edited(self, name: str) -> None:
        if not self._filling:
            self._mark(name, False)

    def _mark(self, name: str, assumed: bool) -> None:
        widget = getattr(self, name)
        if assumed:
            self._assumed.add(name)
            widget.add_class("speckle-refocus-assumed")
        else:
            self._assumed.discard(name)
            widget.remove_class("speckle-refocus-assumed")
        words = {"energy": f"energy ({self.energy.value:g} eV)",
                 "pitch": f"pixel pitch ({self.pitch.value:g} nm)"}
        missing = [words[n] for n in ("energy", "pitch") if n in self._assumed]
        self.assumed_note.value = "" if not missing else (
            "<div class='speckle-refocus-assumed' style='color:#b35900;padding:2px 0'>⚠ "
            f"{' and '.join(missing)}: not from the file — check "
            f"{'them' if len(missing) > 1 else 'it'} (the distances scale with both).</div>")

    def parameters(self) -> dict:
        """The sweep's parameters from the fields, in SI units (see
        :meth:`RefocusController.parameters`)."""
        return self.controller.parameters()

    # ---------------------------------------------------------------- running
    def run(self) -> threading.Thread | None:
        """Start a sweep in a worker thread and return at once (the Refocus button)."""
        return self.run_panel.run(self._prepare)

    def wait(self, timeout: float | None = 120) -> bool:
        """Wait for the sweep and the frame being rendered; True when nothing runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.run_panel.wait(timeout):
            return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._frames.wait(remaining)

    def options(self, region=None) -> RefocusOptions:
        """The fields as :class:`~speckle.imaging.options.RefocusOptions` (checked), for
        ``region`` of the field."""
        return self.controller.options(region)

    def _prepare(self) -> Callable:
        """Widget thread: the sweep's input and options, checked."""
        if self.source is None:
            raise InvalidInputError("nothing to refocus: choose data first")
        self.parameters()  # the fields' own messages first
        given = self.source()
        options = self.controller.check(given)
        return lambda progress, cancel: self._work(given, options, progress, cancel)

    def _work(self, given: RefocusInput, options: RefocusOptions, progress: Callable,
              cancel: Callable) -> None:
        try:
            result = self.controller.refocus(given, options,
                                             progress=sub_progress(progress, 0.0, 0.8),
                                             cancel=cancel)
            step = sub_progress(progress, 0.8, 1.0, cancel, "the refocus sweep was cancelled")
            step(0.0, "plotting")
            self._show_sweep(result, given)
            self.controller.write(step, self.results_dir)
        except BaseException:
            if self.sweep is not None and self.folder is None:
                self.downloads.value = note_html("No result files were written.")
            raise
        self._show_links()
        self.save_frame_button.disabled = False

    # ---------------------------------------------------------------- showing a sweep
    def _show_sweep(self, result, given: RefocusInput) -> None:
        """Make ``result``'s sweep the shown one: curve, marker at the best distance, frame."""
        self._frames.invalidate()
        self.controller.accept(result, given)
        sweep = result.sweep
        self.downloads.value = note_html("Writing the result files…")
        self.save_frame_button.disabled = True
        self._show_body(True)
        best = self.controller.index
        self.slider.max = len(sweep.distances) - 1
        self._plot_curve()
        self.best_text.value = self._best_html()
        self.slider.disabled = self.best_button.disabled = False
        if self.slider.value == best:
            self._on_index({"new": best})
        else:
            self.slider.value = best  # the marker follows (index)

    def best_distance(self, metric: str | None = None) -> float:
        """The best distance (m) of ``metric`` (default the chosen one) in the last sweep
        (see :meth:`RefocusController.best_distance`)."""
        return self.controller.best_distance(metric)

    def _plot_curve(self) -> None:
        sweep = self.sweep
        if sweep is None:
            return
        metric = self.controller.fields.metric
        z_um = [float(z) / UM for z in sweep.distances]
        values = [float(v) for v in sweep.sharpness[metric]]
        with self._lock:
            self._curve.set_data(z_um, values)
            self._best_line.set_xdata([self.best_distance() / UM] * 2)
            self._marker.set_xdata([z_um[self.index]] * 2)
            self.ax.set_ylabel(f"sharpness: {METRIC_LABELS.get(metric, metric)}")
            self.ax.relim()
            self.ax.autoscale_view()
        self.plot.draw_idle()

    def _best_html(self) -> str:
        items = "".join(
            f"<li>{html.escape(METRIC_LABELS.get(m, m))}: <b>{z / UM:.3f} µm</b></li>"
            for m, z in self.controller.best_distances().items())
        return (f"<div>Sharpest at (green line):<ul style='margin:2px 0'>{items}</ul></div>")

    def _on_metric(self, change) -> None:
        extremum = self.controller.default_extremum(change["new"])
        if self.extremum.value != extremum:
            self.extremum.value = extremum  # redraws
        else:
            self._metric_changed()

    def _metric_changed(self) -> None:
        if self.sweep is not None and self.metric.value in self.sweep.sharpness:
            self._plot_curve()
            self.best_text.value = self._best_html()

    def go_to_best(self) -> None:
        """Move the marker to the best distance of the chosen metric."""
        if self.sweep is not None:
            self.slider.value = self.controller.best_index()

    def _on_index(self, change) -> None:
        if self.sweep is None:
            return
        i = int(change["new"])
        self.controller.index = i
        if self.slider.value != i:
            self.slider.value = i
        z = self.distance
        with self._lock:
            self._marker.set_xdata([z / UM] * 2)
        self.plot.draw_idle()
        self.distance_text.value = (f"<b>z = {z / UM:+.3f} µm</b> "
                                    f"<span style='color:#555'>({i + 1} of "
                                    f"{len(self.sweep.distances)})</span>")
        self.show_frame()

    # the marker follows the mouse on the plot
    def _index_at(self, x) -> int | None:
        if self.sweep is None or x is None:
            return None
        return self.controller.index_at(x)

    def _on_press(self, event) -> None:
        if event.inaxes is not self.ax or event.button != 1:
            return
        self._dragging = True
        i = self._index_at(event.xdata)
        if i is not None:
            self.index = i

    def _on_motion(self, event) -> None:
        if not self._dragging or event.inaxes is not self.ax:
            return
        i = self._index_at(event.xdata)
        if i is not None and i != self.index:
            self.index = i

    def _on_release(self, _event) -> None:
        self._dragging = False

    # ---------------------------------------------------------------- the frame at the marker
    def frame_at(self, distance: float, view: str | None = None):
        """The field (or its gradient magnitude) at ``distance`` (m) of the last sweep."""
        return self.controller.frame_at(distance, view or self.frame_view.value)

    def show_frame(self) -> None:
        """Render the frame at the marker in the background (a newer request wins)."""
        if self.sweep is None:
            return
        z, view, scale = self.distance, self.frame_view.value, self.frame_scale.value

        def render():
            return image_png(upscale(self.controller.frame_rgb(z, view, scale)))

        def done(png):
            self.frame_png = png
            self.frame.value = png
            self.frame.layout.display = None
            what = "|∇ field|" if view == "gradient" else "field (brightness: magnitude, hue: phase)"
            self.frame_caption.value = (f"<span style='color:#555'>{what} at z = "
                                        f"{z / UM:+.3f} µm, {scale} scale</span>")

        def failed(exc):
            self.message.error(exc, title="Cannot show this distance:")

        self._frames.start(render, done, failed)

    # ---------------------------------------------------------------- files
    def save_frame(self) -> Path | None:
        """Add the frame shown at the marker to the result folder (PNG) and offer it."""
        if self.folder is None or not self.frame_png or self.sweep is None:
            return None
        self._frames.wait(30)
        try:
            path = self.controller.save_frame(self.frame_view.value, self.frame_scale.value)
        except Exception as exc:  # noqa: BLE001 - shown in the page
            self.message.error(exc, title="The frame was not saved:")
            return None
        self._show_links()
        return path

    def _show_links(self) -> None:
        f = self.files
        entries = [(f["csv"], "sharpness table, CSV"), (f["hdf5"], "result, HDF5"),
                   (f["sharpness_png"], "sharpness plot, PNG"),
                   (f["best_png"], "field at the best distance, PNG"),
                   (f["input_png"], "field before propagation, PNG")]
        if "frame_png" in f:
            entries.append((f["frame_png"], f"saved frame {f['frame_png'].name}"))
        self.downloads.value = links_html(entries, self.folder, self.base_url,
                                          self.server_root)

    def _show_body(self, shown: bool) -> None:
        """The plots and frame after a sweep; the hint before."""
        self._body.layout.display = None if shown else "none"
        self.hint.layout.display = "none" if shown else None

    def clear(self) -> None:
        """Forget the shown sweep (new data was chosen)."""
        self.cancel()
        self._frames.invalidate()
        self.controller.clear()
        self.frame_png = b""
        self.frame.value = b""
        self.frame.layout.display = "none"
        self.frame_caption.value = ""
        self.downloads.value = ""
        self.best_text.value = ""
        self.distance_text.value = ""
        self.slider.disabled = self.best_button.disabled = True
        self.save_frame_button.disabled = True
        self.run_panel.reset()
        self._show_body(False)
        with self._lock:
            self._curve.set_data([], [])
        self.plot.draw_idle()
