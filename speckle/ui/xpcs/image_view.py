"""The detector image, and the regions the analysis will use.

The image (first frame or time average; linear, sqrt or log colour scale) is an interactive
ipympl canvas with the shared region editor
(:class:`~speckle.ui.common.region_editor.RegionEditor`): dragging on it draws a rectangular
region, regions are listed beside it with Delete, and a region can be typed as
``ROW0:ROW1,COL0:COL1``. The regions become the ROIs of the XPCS partition
(:func:`speckle.xpcs.partitions.rectangles`). Alternatively, q-rings are computed from the
geometry (energy in eV, distance in m, pixel size in µm, beam centre in pixels, q in 1/Å at the
interface; everything is converted to SI before it reaches
:func:`speckle.xpcs.partitions.q_rings`).
"""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets
import numpy as np
import traitlets
from matplotlib.figure import Figure

from ...errors import InvalidInputError
from ...plots import bin_outlines, plot_image
from ...xpcs.geometry import Geometry
from ...xpcs.partitions import Partition, q_rings, rectangles
from ..common._common import MessageBox, Tasks, styled
from ..common.canvas import interactive_canvas
from ..common.region_editor import RegionEditor, RegionEditorOwner

__all__ = ["ImageView"]

ANGSTROM = 1e-10  # m; q[1/m] = q[1/Å] / ANGSTROM
MICRON = 1e-6
#: The time average shown before an analysis reads at most this many bytes of frames.
PREVIEW_BYTES = 256 * 2**20
_MODES = ("rectangles", "q-rings")


def _number(description, value=0.0, step=None, width="230px", tooltip=""):
    return widgets.FloatText(value=value, description=description, step=step,
                             style={"description_width": "110px"}, tooltip=tooltip,
                             layout=widgets.Layout(width=width))


#: Static bins per q-ring (radial), as the command line's default: finer static bins keep
#: uneven intensity inside a ring from inflating g2.
STATIC_PER_RING = 5


class ImageView(RegionEditorOwner, widgets.VBox):
    """Detector image with region drawing and q-ring controls.

    Attributes
    ----------
    regions_version : int
        Incremented whenever the regions (rectangles or q-rings) change (a trait: the
        dashboard observes it for the automatic re-analysis).
    regions : list of (row0, row1, col0, col1)
        The rectangles, in the order drawn (a copy).
    editor : RegionEditor
        The rectangles' controls (also :attr:`rect_panel`); its ``model`` holds them.

    Notes
    -----
    CSS classes: ``speckle-image-view``, ``speckle-image`` (the canvas),
    ``speckle-image-kind``, ``speckle-image-scale``, ``speckle-region-mode``, the region
    editor's (``speckle-region-*``, see :class:`RegionEditor`), ``speckle-qrings`` (the ring
    fields),
    ``speckle-error``, ``speckle-image-empty`` (the hint shown instead of the image before any
    dataset).
    """

    regions_version = traitlets.Int(0)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-image-view")
        self._lock = threading.RLock()
        self._tasks = Tasks("image")
        self._dataset = None
        self._first = None
        self._mean = None
        self._mean_note = ""
        self._shape = None
        self._overlay = []
        self._rings_cache = None
        self._quiet = False

        self.kind = styled(widgets.ToggleButtons(
            options=[("first frame", "first"), ("time average", "mean")], value="mean",
            style={"button_width": "110px"}), "speckle-image-kind")
        self.scale = styled(widgets.ToggleButtons(
            options=["linear", "sqrt", "log"], value="log", style={"button_width": "70px"}),
            "speckle-image-scale")
        self.caption = widgets.HTML()

        self.figure = Figure(figsize=(5.4, 4.6), layout="constrained")
        self.ax = self.figure.add_subplot()
        self._image = self.ax.imshow(np.zeros((2, 2)), origin="upper", cmap="viridis",
                                     interpolation="nearest")
        self._colorbar = self.figure.colorbar(self._image, ax=self.ax, label="counts")
        self.ax.set_xlabel("column (pixel)")
        self.ax.set_ylabel("row (pixel)")
        self.canvas, self._manager = interactive_canvas(self.figure, self._lock)
        styled(self.canvas, "speckle-image")

        self.mode = styled(widgets.ToggleButtons(options=list(_MODES), value="rectangles",
                                                 description="regions",
                                                 style={"button_width": "100px"}),
                           "speckle-region-mode")
        self.message = MessageBox()
        # rectangles
        self.editor = RegionEditor(
            max_regions=None, message=self.message, before_add=self._rectangles_mode,
            help_text="Drag on the image to draw a region, or type one (half-open pixel "
                      "ranges).")
        self.selector = self.editor.attach(self.ax)
        self.rect_panel = self.editor
        # q-rings
        self.energy = _number("energy (eV)", step=10)
        self.distance = _number("distance (m)", step=0.01)
        self.pixel_um = _number("pixel size (µm)", step=1)
        self.center_row = _number("beam row (px)", step=1)
        self.center_col = _number("beam col (px)", step=1)
        self.q_min = _number("q min (1/Å)", step=1e-4)
        self.q_width = _number("q width (1/Å)", step=1e-4)
        self.q_step = _number("q step (1/Å)", step=1e-4,
                              tooltip="distance between ring starts; 0 = the width")
        self.n_rings = widgets.BoundedIntText(value=8, min=1, max=200, description="rings",
                                              style={"description_width": "110px"},
                                              layout=widgets.Layout(width="230px"))
        self.suggest_button = widgets.Button(description="Suggest rings",
                                             tooltip="spread the rings over the detector")
        self.ring_panel = styled(widgets.VBox([
            self.energy, self.distance, self.pixel_um, self.center_row, self.center_col,
            self.q_min, self.q_width, self.q_step, self.n_rings, self.suggest_button]),
            "speckle-qrings")

        self.side = widgets.VBox([self.mode, self.rect_panel, self.ring_panel],
                                 layout=widgets.Layout(margin="0 0 0 12px"))
        self.empty_hint = styled(widgets.HTML(
            "<div style='color:#555;padding:18px 0'>Choose a dataset above (beamline data, an "
            "upload or the demo data): its image appears here, and you draw the regions or "
            "choose q-rings on it.</div>"), "speckle-image-empty")
        self._with_data = [
            widgets.HBox([self.kind, self.scale], layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HBox([widgets.VBox([self.canvas, self.caption]), self.side],
                         layout=widgets.Layout(flex_flow="row wrap")),
        ]
        self.children = [self.empty_hint, *self._with_data, self.message]
        self._show_data(False)
        self._show_mode()

        self.kind.observe(lambda _c: self.redraw(), "value")
        self.scale.observe(lambda _c: self.redraw(), "value")
        self.mode.observe(self._on_mode, "value")
        self.editor.observe(self._on_editor, "regions_version")
        self.suggest_button.on_click(lambda _b: self.suggest_rings())
        for field in (self.energy, self.distance, self.pixel_um, self.center_row,
                      self.center_col, self.q_min, self.q_width, self.q_step, self.n_rings):
            field.observe(self._on_ring_field, "value")

    # ---------------------------------------------------------------- dataset and image
    def set_dataset(self, ds, rings: dict | None = None) -> None:
        """Show a new dataset: its first frame now, its time average when computed.

        The geometry fields are filled from the dataset's metadata; regions from another
        detector shape are dropped. With a known geometry the regions default to q-rings.

        Parameters
        ----------
        ds : Dataset or None
        rings : dict, optional
            Suggested rings, ``q_min``, ``q_width``, ``q_step`` (1/Å) and ``n_rings``;
            default spread over the detector (:meth:`suggest_rings`).
        """
        self._tasks.invalidate()
        self.message.clear()
        with self._lock:
            self._dataset = ds
            self._first = self._mean = None
            self._mean_note = ""
        self._show_data(ds is not None)
        if ds is None:
            self.caption.value = ""
            return
        try:
            first = np.asarray(ds.frame(0), dtype=float)
        except Exception as exc:  # noqa: BLE001 - damaged data found on reading: say so
            first = None
            self.message.error(exc, title="Cannot read the first frame:")
        shape = tuple(ds.frame_shape)
        md = ds.metadata
        self._quiet = True
        try:
            self._shape = shape
            self.editor.model.set_shape(shape)  # regions of another detector are dropped
            self.energy.value = round(md.energy, 2) if md.energy else 0.0
            self.distance.value = md.distance or 0.0
            self.pixel_um.value = (md.pixel_size[0] / MICRON) if md.pixel_size else 0.0
            centre = md.beam_center or (0.0, 0.0)
            self.center_row.value, self.center_col.value = float(centre[0]), float(centre[1])
            known = all(v is not None for v in (md.energy, md.distance, md.pixel_size,
                                                md.beam_center))
            if known and rings:
                self.q_min.value = float(rings["q_min"])
                self.q_width.value = float(rings["q_width"])
                self.q_step.value = float(rings.get("q_step") or 0.0)
                self.n_rings.value = int(rings["n_rings"])
            elif known:
                self.suggest_rings(notify=False)
            self.mode.value = "q-rings" if known and not self.regions else "rectangles"
        finally:
            self._quiet = False
        self._show_mode()
        with self._lock:
            self._first = first
        self.redraw()
        self._changed()
        if first is not None:
            self._start_mean(ds)

    def _show_data(self, shown: bool) -> None:
        """The image and the region controls with data; before any, a hint instead of empty
        axes."""
        self.empty_hint.layout.display = "none" if shown else None
        for box in self._with_data:
            box.layout.display = None if shown else "none"

    def _start_mean(self, ds) -> None:
        frame_bytes = max(1, int(np.prod(ds.frame_shape)) * np.dtype(ds.dtype).itemsize)
        n = int(min(ds.n_frames, max(1, PREVIEW_BYTES // frame_bytes)))

        def compute():
            total = np.zeros(ds.frame_shape, np.float64)
            for _start, chunk in ds.iter_chunks(stop=n):
                total += chunk.sum(axis=0, dtype=np.float64)
            return total / n

        def done(mean):
            note = ("all frames" if n == ds.n_frames
                    else f"the first {n} of {ds.n_frames} frames (Analyze averages them all)")
            self.set_mean_image(mean, note)

        def failed(exc):
            self.message.error(exc, title="Cannot compute the time average:")

        self._tasks.start(compute, done, failed)

    def set_mean_image(self, image, note: str = "all frames") -> None:
        """Use ``image`` as the time average (e.g. ``result.mean_image`` after an analysis)."""
        image = np.asarray(image, dtype=float)
        with self._lock:
            if self._shape is None or image.shape != self._shape:
                return
            self._mean, self._mean_note = image, note
        if self.kind.value == "mean":
            self.redraw()

    def redraw(self) -> None:
        """Redraw the image and the regions' outlines."""
        with self._lock:
            first, mean, note = self._first, self._mean, self._mean_note
            if first is None:
                return
            if self.kind.value == "mean" and mean is not None:
                image, what = mean, f"time average of {note}"
            elif self.kind.value == "mean":
                image, what = first, "first frame (the time average is being computed…)"
            else:
                image, what = first, "first frame"
            try:
                ref = plot_image(image, self.scale.value)  # the library's colour scaling
            except InvalidInputError as exc:
                self.message.error(exc)
                return
            shown = ref.axes[0].images[0]
            self._image.set_data(shown.get_array())
            self._image.set_norm(shown.norm)
            extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
            if self._image.get_extent() != list(extent):
                self._image.set_extent(extent)
                self.ax.set_xlim(extent[0], extent[1])  # also after a zoom on another image
                self.ax.set_ylim(extent[2], extent[3])
            self._colorbar.update_normal(self._image)
            self._colorbar.set_label(f"counts ({self.scale.value} scale)")
            self._draw_overlay()
        self.caption.value = f"<span style='color:#555'>{html.escape(what)}</span>"
        self.canvas.draw_idle()

    def _draw_overlay(self) -> None:
        for artist in self._overlay:
            artist.remove()
        self._overlay = []
        if self._shape is None:
            return
        if self.mode.value == "rectangles":
            self._overlay = self.editor.outlines(self.ax)
        else:
            try:
                part = self._rings()
            except InvalidInputError:
                return  # the message is shown by the field handler
            outlines = bin_outlines(part)
            self.ax.add_artist(outlines)
            self._overlay.append(outlines)

    # ---------------------------------------------------------------- rectangles
    def _rectangles_mode(self) -> None:
        # a region added while q-rings are shown switches to rectangles: one change, not two
        if self.mode.value != "rectangles":
            quiet, self._quiet = self._quiet, True
            try:
                self.mode.value = "rectangles"
            finally:
                self._quiet = quiet

    def _on_editor(self, _change) -> None:
        if not self._quiet:
            self._regions_changed()

    # ---------------------------------------------------------------- q-rings
    def geometry(self) -> Geometry:
        """The geometry from the fields (SI units).

        Raises
        ------
        InvalidInputError
            When a field is not positive (the file did not give it and nobody typed it).
        """
        missing = [name for name, field in (("photon energy (eV)", self.energy),
                                            ("distance (m)", self.distance),
                                            ("pixel size (µm)", self.pixel_um))
                   if not (field.value or 0) > 0]
        if missing:
            raise InvalidInputError(
                f"enter the {', '.join(missing)} in the q-ring fields: the file does not say, "
                "and q cannot be computed without it")
        return Geometry(energy=self.energy.value, distance=self.distance.value,
                        pixel_size=self.pixel_um.value * MICRON,
                        beam_center=(self.center_row.value, self.center_col.value))

    def _rings(self) -> Partition:
        if self._shape is None:
            raise InvalidInputError("choose a dataset first")
        fields = (self.energy, self.distance, self.pixel_um, self.center_row, self.center_col,
                  self.q_min, self.q_width, self.q_step, self.n_rings)
        key = (self._shape, *(f.value for f in fields))
        cached = self._rings_cache
        if cached is not None and cached[0] == key:
            return cached[1]  # large detectors: the q-map is worth computing once
        step = self.q_step.value or None
        part = q_rings(self._shape, self.geometry(), q_min=self.q_min.value / ANGSTROM,
                       q_width=self.q_width.value / ANGSTROM,
                       q_step=None if step is None else step / ANGSTROM,
                       n_rings=self.n_rings.value, static_per_dynamic=STATIC_PER_RING)
        self._rings_cache = (key, part)
        return part

    def suggest_rings(self, notify: bool = True) -> None:
        """Spread the rings from the 2nd to the 90th percentile of q over the detector."""
        if self._shape is None:
            return
        try:
            q = self.geometry().q_map(self._shape) * ANGSTROM
        except InvalidInputError as exc:
            self.message.error(exc, title="Cannot compute q:")
            return
        lo, hi = np.percentile(q, [2, 90])
        quiet, self._quiet = self._quiet, True
        try:
            n = self.n_rings.value
            self.q_min.value = float(f"{lo:.3g}")
            self.q_width.value = float(f"{(hi - lo) / n:.3g}")
            self.q_step.value = 0.0
        finally:
            self._quiet = quiet
        if notify:
            self._on_ring_field(None)

    def _on_ring_field(self, _change) -> None:
        if self._quiet:
            return
        if self.mode.value == "q-rings":
            try:
                self._rings()
                self.message.clear()
            except InvalidInputError as exc:
                self.message.error(exc, title="q-rings:")
            self._regions_changed()

    # ---------------------------------------------------------------- mode and partition
    def _show_mode(self) -> None:
        rect = self.mode.value == "rectangles"
        self.rect_panel.layout.display = None if rect else "none"
        self.ring_panel.layout.display = "none" if rect else None
        self.selector.set_active(rect)

    def _on_mode(self, _change) -> None:
        self._show_mode()
        if self._quiet:
            return
        self.message.clear()
        if self.mode.value == "q-rings":
            self._on_ring_field(None)
        else:
            self._regions_changed()

    def _regions_changed(self) -> None:
        with self._lock:
            self._draw_overlay()
        self.canvas.draw_idle()
        self._changed()

    def _changed(self) -> None:
        self.regions_version += 1

    def partition(self) -> Partition:
        """Build the partition the analysis will use.

        Raises
        ------
        InvalidInputError
            With what to do: no dataset, no region drawn, impossible rings.
        """
        if self._shape is None:
            raise InvalidInputError("choose a dataset first (beamline data, upload or demo)")
        if self.mode.value == "rectangles":
            if not self.regions:
                raise InvalidInputError(
                    "draw at least one region on the image (drag with the mouse, or type "
                    "ROW0:ROW1,COL0:COL1 and press Add), or choose q-rings")
            return rectangles(self._shape, self.regions)  # the regions are the ROIs
        return self._rings()

    def wait(self, timeout: float | None = 60) -> bool:
        """Wait until the time average is computed (for scripts and tests)."""
        return self._tasks.wait(timeout)
