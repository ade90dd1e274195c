"""A complex image on screen: magnitude as brightness, phase as hue, and regions drawn on it.

:class:`ComplexImageView` shows a 2D array (complex or real) on an interactive ipympl canvas in
one of four views: ``complex`` (:func:`speckle.imaging.display.complex_to_rgb`: magnitude as
brightness, phase as a cyclic hue), ``magnitude`` (grey), ``phase`` (cyclic colours, -π..π) or
``real`` part (diverging colours, symmetric about zero), each magnitude in linear, sqrt or log
scale. Its regions are edited by the shared
:class:`~speckle.ui.common.region_editor.RegionEditor`: dragging on the image selects a
rectangular region, a region can also be typed as ``ROW0:ROW1,COL0:COL1`` (half-open pixel
ranges). With ``max_regions=1`` (FTH, refocusing) a new region replaces the old one; with more
(a CDI support drawn from rectangles) they accumulate in a list with Delete and Clear.
"""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets
import numpy as np
import traitlets
from matplotlib.figure import Figure

from ...backend import asnumpy
from ...errors import InvalidInputError
from ...imaging.display import SCALES
from ..common._common import MessageBox, styled
from ..common.canvas import interactive_canvas
from ..common.region_editor import RegionEditor, RegionEditorOwner
from ..common.regions import RegionList
from .render import DECADES, VIEWS, crop, image_png, render_rgb

__all__ = ["ComplexImageView"]

class ComplexImageView(RegionEditorOwner, widgets.VBox):
    """A complex (or real) image with view and scale choices, and rectangular regions.

    Parameters
    ----------
    max_regions : int or None
        How many regions may be selected (default 1: a new one replaces the old); None for
        any number; 0 for none (no region controls).
    regions : RegionList, optional
        The regions to edit, when a controller holds them (its ``max_regions`` then counts).
    view : str
        Initial view, one of :data:`VIEWS`.
    scale : str
        Initial scale, one of :data:`speckle.imaging.display.SCALES`.
    views : sequence of str, optional
        The views offered (default all).
    help_text : str, optional
        The hint above the region controls.
    figsize : (float, float)
        Inches of the canvas' figure.
    decades : float
        Decades below the maximum shown by the log scale (a pattern spanning more needs more;
        settable later, the image is redrawn).

    Attributes
    ----------
    editor : RegionEditor
        The regions' controls beside the image (also :attr:`side`); its ``model`` holds them.
    regions : list of (row0, row1, col0, col1)
        Half-open pixel ranges, in the order selected (a copy).
    tints : dict of str to numpy.ndarray
        The pixels tinted by each layer of :meth:`set_tint` (bool arrays).
    regions_version : int
        Incremented whenever the regions change (a trait: observe it).
    image_version : int
        Incremented whenever a new image is shown (a trait).

    Notes
    -----
    CSS classes: ``speckle-complex-image`` (the whole), ``speckle-complex-canvas`` (the ipympl
    canvas), ``speckle-complex-view``, ``speckle-complex-scale``, the region editor's
    (``speckle-region-*``, see :class:`RegionEditor`) and ``speckle-error``.
    """

    regions_version = traitlets.Int(0)
    image_version = traitlets.Int(0)

    def __init__(self, *, max_regions: int | None = 1, regions: RegionList | None = None,
                 view: str = "complex",
                 scale: str = "linear", views=VIEWS, help_text: str | None = None,
                 figsize=(5.4, 4.8), decades: float = DECADES, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-complex-image")
        self.max_regions = max_regions if regions is None else regions.max_regions
        self.tints: dict[str, np.ndarray] = {}
        self._decades = float(decades)
        self._image = None
        self._rgb = None
        self._lock = threading.RLock()
        self._overlay = []
        self._tint_artists = {}

        views = [v for v in VIEWS if v in views]
        self.view = styled(widgets.ToggleButtons(options=views, value=view,
                                                 style={"button_width": "84px"}),
                           "speckle-complex-view")
        self.scale = styled(widgets.ToggleButtons(options=list(SCALES), value=scale,
                                                  style={"button_width": "64px"}),
                            "speckle-complex-scale")
        self.caption = widgets.HTML()
        self.figure = Figure(figsize=figsize, layout="constrained")
        self.ax = self.figure.add_subplot()
        self._shown = self.ax.imshow(np.zeros((2, 2, 3)), origin="upper",
                                     interpolation="nearest")
        self.ax.set_xlabel("column (pixel)")
        self.ax.set_ylabel("row (pixel)")
        self.canvas, self._manager = interactive_canvas(self.figure, self._lock)
        styled(self.canvas, "speckle-complex-canvas")
        self.message = MessageBox()
        self.editor = RegionEditor(max_regions=max_regions, model=regions, help_text=help_text,
                                   message=self.message,
                                   layout=widgets.Layout(margin="0 0 0 12px", max_width="300px"))
        self.selector = self.editor.attach(self.ax)
        self.side = self.editor
        if len(views) == 1:
            self.view.layout.display = "none"
        self.children = [
            widgets.HBox([self.view, self.scale], layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HBox([widgets.VBox([self.canvas, self.caption]), self.side],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.message,
        ]
        self.view.observe(lambda _c: self.redraw(), "value")
        self.scale.observe(lambda _c: self.redraw(), "value")
        self.editor.observe(lambda _c: self._regions_changed(), "regions_version")

    # ---------------------------------------------------------------- the image
    @property
    def image(self) -> np.ndarray | None:
        """The image shown (numpy), or None."""
        return self._image

    @property
    def shape(self) -> tuple[int, int] | None:
        """(rows, cols) of the image shown, or None."""
        return None if self._image is None else self._image.shape

    def set_image(self, image, caption: str = "") -> None:
        """Show a new image (safe from a worker thread).

        Regions and tints are kept when the shape is the same, else dropped.

        Parameters
        ----------
        image : array, (rows, cols) or None
            Complex or real, numpy or cupy (copied to the host).
        caption : str
            Plain text under the image.
        """
        if image is None:
            with self._lock:
                self._image = self._rgb = None
            self.caption.value = ""
            self.editor.model.set_shape(None)
            for name in list(self.tints):
                self.set_tint(None, name=name)
            return
        data = np.asarray(asnumpy(image))
        if data.ndim != 2 or min(data.shape) < 2:
            raise InvalidInputError(f"an image needs 2 dimensions of at least 2 pixels, got "
                                    f"shape {data.shape}")
        with self._lock:
            self._image = data
        self.editor.model.set_shape(data.shape)  # another shape: the regions are dropped
        for name in [n for n, mask in self.tints.items() if mask.shape != data.shape]:
            self.set_tint(None, name=name)  # a tint of another image's pixels
        self.message.clear()
        self.caption.value = f"<span style='color:#555'>{html.escape(caption)}</span>"
        self.redraw()
        self.image_version += 1

    @property
    def decades(self) -> float:
        """Decades below the maximum shown by the log scale (setting it redraws)."""
        return self._decades

    @decades.setter
    def decades(self, value: float) -> None:
        value = float(value)
        if value != self._decades:
            self._decades = value
            self.redraw()

    def set_tint(self, where, rgba=(0.95, 0.1, 0.1, 0.55), name: str = "tint") -> None:
        """Tint some pixels with a half-transparent colour over the image (safe from a thread).

        Parameters
        ----------
        where : bool array, (rows, cols), or None
            The pixels to tint (of the image's shape); None or none True hides the layer.
        rgba : (float, float, float, float)
            The colour and its opacity.
        name : str
            The layer: each name is one tint, drawn over the image and under the regions.
        """
        mask = None if where is None else np.asarray(asnumpy(where), dtype=bool)
        with self._lock:
            artist = self._tint_artists.get(name)
            if mask is None or not mask.any():
                self.tints.pop(name, None)
                if artist is not None:
                    artist.set_visible(False)
            else:
                if artist is None:
                    artist = self._tint_artists[name] = self.ax.imshow(
                        np.zeros((2, 2, 4)), origin="upper", interpolation="nearest", zorder=2)
                rows, cols = mask.shape
                layer = np.zeros(mask.shape + (4,), dtype=np.float32)
                layer[mask] = rgba
                artist.set_data(layer)
                artist.set_extent((-0.5, cols - 0.5, rows - 0.5, -0.5))
                artist.set_visible(True)
                self.tints[name] = mask
        self.canvas.draw_idle()

    def rgb(self) -> np.ndarray | None:
        """The picture shown, (rows, cols, 3) floats in [0, 1]."""
        return self._rgb

    def png(self) -> bytes:
        """The picture shown as PNG (one pixel per image pixel)."""
        if self._rgb is None:
            raise InvalidInputError("no image is shown yet")
        return image_png(self._rgb)

    def redraw(self) -> None:
        """Render the image in the chosen view and scale, with the regions' outlines."""
        with self._lock:
            image = self._image
            if image is None:
                return
            try:
                rgb = render_rgb(image, self.view.value, self.scale.value, self._decades)
            except InvalidInputError as exc:
                self.message.error(exc)
                return
            self._rgb = rgb
            self._shown.set_data(rgb)
            extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
            if self._shown.get_extent() != list(extent):
                self._shown.set_extent(extent)
                self.ax.set_xlim(extent[0], extent[1])
                self.ax.set_ylim(extent[2], extent[3])
            self._draw_overlay()
        self.canvas.draw_idle()

    def _draw_overlay(self) -> None:
        for artist in self._overlay:
            artist.remove()
        self._overlay = self.editor.outlines(self.ax)

    # ---------------------------------------------------------------- regions
    def crop(self, image=None):
        """The image shown (or ``image``, of the same shape) cut to :attr:`region`."""
        return crop(self._image if image is None else image, self.region)

    def _regions_changed(self) -> None:
        with self._lock:
            self._draw_overlay()
        self.canvas.draw_idle()
        self.regions_version += 1
