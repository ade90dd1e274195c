"""What every image on a dashboard shares: an ipympl canvas, and rectangles drawn on it.

The canvas (:func:`interactive_canvas`) renders under a lock so that worker threads can change
its figure; rectangles are drawn with the mouse (:func:`rectangle_selector`, matplotlib's
``RectangleSelector``) and outlined (:func:`draw_rectangles`). The regions themselves are
:mod:`speckle.ui.common.regions`'s, edited by
:class:`~speckle.ui.common.region_editor.RegionEditor`.
"""

from __future__ import annotations

import warnings

from ipympl.backend_nbagg import Canvas, FigureManager
from matplotlib.patches import Rectangle
from matplotlib.widgets import RectangleSelector

__all__ = ["draw_rectangles", "interactive_canvas", "rectangle_selector"]


class _LockedCanvas(Canvas):
    """An ipympl canvas whose rendering waits for figure changes made by other threads."""

    def __init__(self, figure, lock, **kwargs):
        self._speckle_lock = lock
        super().__init__(figure, **kwargs)

    def draw(self):
        with self._speckle_lock:
            super().draw()


def interactive_canvas(figure, lock) -> tuple[Canvas, FigureManager]:
    """An ipympl canvas (no header or footer, toolbar on the left) for a pyplot-free Figure.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    lock : threading.RLock
        Held while the canvas renders; hold it while changing the figure from other threads.

    Returns
    -------
    canvas, manager
        Keep the manager referenced as long as the canvas is shown.
    """
    canvas = _LockedCanvas(figure, lock)
    with warnings.catch_warnings():  # ipympl's Toolbar passes the canvas on to traitlets
        warnings.filterwarnings("ignore", "Passing unrecognized arguments", DeprecationWarning)
        manager = FigureManager(canvas, 0)
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.toolbar_position = "left"
    return canvas, manager


def rectangle_selector(ax, on_drawn) -> RectangleSelector:
    """Drag with the left button on ``ax`` to draw a rectangle: ``on_drawn(press, release)``."""
    return RectangleSelector(ax, on_drawn, useblit=False, button=[1], minspanx=1, minspany=1,
                             spancoords="data", interactive=False,
                             props={"edgecolor": "white", "fill": False, "linewidth": 1.2})


def draw_rectangles(ax, rects, numbered: bool = True) -> list:
    """White outlines of half-open pixel rectangles on ``ax`` (numbered from 1); the artists."""
    artists = []
    for i, (r0, r1, c0, c1) in enumerate(rects, start=1):
        patch = Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False,
                          edgecolor="white", linewidth=1.2)
        ax.add_patch(patch)
        artists.append(patch)
        if numbered:
            artists.append(ax.text(c0 - 0.5, r0 - 0.5, f" {i}", color="white", va="top",
                                   ha="left", fontsize=9, fontweight="bold"))
    return artists
