"""Complex images for people: magnitude as brightness, phase as hue.

:func:`complex_to_rgb` maps a complex field to an RGB picture (HSV with full saturation): the
hue goes round the colour circle with the phase (0 red, 2π/3 green, 4π/3 blue), the brightness
follows the magnitude in a linear, square-root or logarithmic scale, and zero is black.
:func:`plot_complex` puts such a picture in a matplotlib figure (no pyplot state, like
:mod:`speckle.plots`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure

from ..backend import asnumpy
from ..errors import InvalidInputError

__all__ = ["SCALES", "brightness", "complex_to_rgb", "display_window", "plot_complex"]

SCALES = ("linear", "sqrt", "log")


def brightness(magnitude, scale: str = "linear", vmax: float | None = None,
               decades: float = 3.0) -> np.ndarray:
    """Magnitudes scaled to [0, 1] for display.

    Parameters
    ----------
    magnitude : array
        Non-negative values (numpy or cupy).
    scale : {"linear", "sqrt", "log"}
        ``m / vmax``, its square root, or ``1 + log10(m / vmax) / decades`` (``decades`` below
        ``vmax`` map to black).
    vmax : float, optional
        The magnitude shown at full brightness; default the largest.
    decades : float
        Range of the log scale.

    Returns
    -------
    numpy.ndarray
        float64 in [0, 1], same shape.
    """
    if scale not in SCALES:
        raise InvalidInputError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    m = np.asarray(asnumpy(magnitude), dtype=np.float64)
    finite = np.isfinite(m)
    m = np.where(finite, m, 0.0)
    if vmax is None:
        vmax = float(m.max()) if m.size else 0.0
    vmax = float(vmax)
    if not vmax > 0:
        return np.zeros(m.shape)
    x = np.clip(m / vmax, 0.0, 1.0)
    if scale == "sqrt":
        x = np.sqrt(x)
    elif scale == "log":
        if not decades > 0:
            raise InvalidInputError(f"the log scale needs a positive number of decades, "
                                    f"got {decades}")
        with np.errstate(divide="ignore"):
            x = np.clip(1 + np.log10(x) / decades, 0.0, 1.0)
    return x


def complex_to_rgb(field, scale: str = "linear", vmax: float | None = None,
                   decades: float = 3.0) -> np.ndarray:
    """RGB picture of a complex field: magnitude as brightness, phase as hue.

    Parameters
    ----------
    field : array, (rows, cols)
        Complex (or real: negative values show as phase π, cyan), numpy or cupy. Non-finite
        pixels are black.
    scale : {"linear", "sqrt", "log"}
        Brightness scale, see :func:`brightness`.
    vmax : float, optional
        Magnitude shown at full brightness (default the largest).
    decades : float
        Range of the log scale.

    Returns
    -------
    numpy.ndarray
        (rows, cols, 3) float64 in [0, 1]. Hue = ``phase / 2π`` (mod 1): phase 0 is red
        (1, 0, 0), 2π/3 green, 4π/3 blue; saturation 1; value = brightness.
    """
    z = np.asarray(asnumpy(field))
    if z.ndim != 2:
        raise InvalidInputError(f"a complex image must be 2D, got shape {z.shape}")
    if z.dtype.kind not in "biufc":
        raise InvalidInputError(f"a complex image must hold numbers, not {z.dtype}")
    finite = np.isfinite(z)
    z = np.where(finite, z, 0)
    hsv = np.empty(z.shape + (3,))
    hsv[..., 0] = np.mod(np.angle(z) / (2 * np.pi), 1.0)
    hsv[..., 1] = 1.0
    hsv[..., 2] = brightness(np.abs(z), scale, vmax, decades)
    return hsv_to_rgb(hsv)


def plot_complex(field, scale: str = "linear", *, vmax: float | None = None,
                 title: str | None = None, pixel_size: float | None = None,
                 figsize=(5.2, 4.8)) -> Figure:
    """A figure of a complex field (:func:`complex_to_rgb`) with a phase colour wheel.

    Parameters
    ----------
    field : array, (rows, cols)
    scale : {"linear", "sqrt", "log"}
    vmax : float, optional
    title : str, optional
    pixel_size : float, optional
        m; when given the axes are in µm, else in pixels.
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
    """
    rgb = complex_to_rgb(field, scale, vmax)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    rows, cols = rgb.shape[:2]
    if pixel_size:
        um = float(pixel_size) * 1e6
        ax.imshow(rgb, extent=(0, cols * um, rows * um, 0), interpolation="nearest")
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
    else:
        ax.imshow(rgb, interpolation="nearest")
        ax.set_xlabel("column (pixels)")
        ax.set_ylabel("row (pixels)")
    if title:
        ax.set_title(title)
    wheel = ax.inset_axes((0.84, 0.02, 0.14, 0.14))
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    disc = (xx + 1j * -yy) * (np.hypot(xx, yy) <= 1)
    wheel.imshow(complex_to_rgb(disc / np.abs(disc).max()), interpolation="bilinear")
    wheel.set_axis_off()
    return fig


def display_window(support, margin: int = 16, min_side: int = 64) -> tuple[int, int, int, int]:
    """The part of a frame worth showing of a reconstruction: its support's box with a margin.

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
