"""What every image on a dashboard shares: an ipympl canvas, and rectangles drawn on it.

The canvas (:func:`interactive_canvas`) renders under a lock so that worker threads can change
its figure; rectangles are drawn with the mouse (:func:`rectangle_selector`, matplotlib's
``RectangleSelector``), converted to half-open pixel ranges (:func:`roi_from_extents`),
typed (:func:`typed_region`) and outlined (:func:`draw_rectangles`).
"""

from __future__ import annotations

import math
import warnings

from ipympl.backend_nbagg import Canvas, FigureManager
from matplotlib.patches import Rectangle
from matplotlib.widgets import RectangleSelector

from ...errors import InvalidInputError
from ...xpcs.partitions import parse_roi

__all__ = ["draw_rectangles", "interactive_canvas", "rectangle_selector", "roi_from_extents",
           "typed_region"]


def roi_from_extents(x0, x1, y0, y1, shape) -> tuple[int, int, int, int] | None:
    """Pixels covered by a rectangle drawn in image coordinates (pixel centres at integers).

    Parameters
    ----------
    x0, x1, y0, y1 : float
        Column and row extents as drawn (any order).
    shape : (rows, cols)

    Returns
    -------
    (row0, row1, col0, col1) or None
        Half-open pixel ranges clipped to the detector; None when nothing is left.
    """
    x0, x1 = sorted((float(x0), float(x1)))
    y0, y1 = sorted((float(y0), float(y1)))
    r0 = max(0, math.floor(y0 + 0.5))
    r1 = min(int(shape[0]), math.floor(y1 + 0.5) + 1)
    c0 = max(0, math.floor(x0 + 0.5))
    c1 = min(int(shape[1]), math.floor(x1 + 0.5) + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    return (r0, r1, c0, c1)


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


def typed_region(text, message) -> tuple[int, int, int, int] | None:
    """The region typed in ``text`` (a Text widget, ROW0:ROW1,COL0:COL1), or None.

    None when nothing is typed, or when the text cannot be read (the reason is shown in
    ``message``, a :class:`~speckle.ui.common._common.MessageBox`).
    """
    value = text.value.strip()
    if not value:
        return None
    try:
        return parse_roi(value)
    except InvalidInputError as exc:
        message.error(exc)
        return None
