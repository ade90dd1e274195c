"""Complex images as pictures, in plain Python: what the imaging views and files show.

:func:`render_rgb` turns a complex (or real) image into an RGB picture in one of
:data:`VIEWS` and a scale; :func:`image_png` encodes it; :func:`log_decades` chooses how many
decades a pattern's log scale shows; :func:`crop` cuts a region out.
:class:`~speckle.ui.imaging.complex_view.ComplexImageView` shows them on screen.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib import colormaps
from matplotlib.image import imsave

from ...backend import asnumpy
from ...errors import InvalidInputError
from ...imaging.display import SCALES, brightness, complex_to_rgb

__all__ = ["DECADES", "PATTERN_DECADES", "VIEWS", "crop", "image_png", "log_decades",
           "render_rgb"]

#: What the view can show of a complex image.
VIEWS = ("complex", "magnitude", "phase", "real")
#: Decades below the maximum that the log scale shows by default.
DECADES = 3.0
#: A pattern's or hologram's log scale shows as many decades as it spans, within these bounds.
PATTERN_DECADES = (3.0, 8.0)


def log_decades(image, bounds=PATTERN_DECADES) -> float:
    """How many decades a log scale needs to show every positive value of ``image``.

    ``log10(max / min)`` of the finite positive values, rounded up to half a decade and kept
    within ``bounds`` (a photon-counting pattern of 10⁹ photons at its peak spans 4.5 decades
    of √I; the default 3 would leave its high-q speckle black).
    """
    a = np.asarray(asnumpy(image), dtype=np.float64)
    positive = a[np.isfinite(a) & (a > 0)]
    if positive.size == 0:
        return bounds[0]
    span = math.ceil(2 * math.log10(positive.max() / positive.min())) / 2
    return float(min(max(span, bounds[0]), bounds[1]))


def render_rgb(image, view: str = "complex", scale: str = "linear",
               decades: float = DECADES) -> np.ndarray:
    """An image as an RGB picture, as :class:`ComplexImageView` shows it.

    Parameters
    ----------
    image : array, (rows, cols)
        Complex or real; numpy or cupy. Non-finite pixels show black.
    view : {"complex", "magnitude", "phase", "real"}
        Magnitude as brightness and phase as hue; the magnitude in grey; the phase in cyclic
        colours (``twilight``, -π to π); the real part in diverging colours (``RdBu_r``,
        symmetric about zero).
    scale : {"linear", "sqrt", "log"}
        Scale of the magnitude (complex and magnitude views; the real part's magnitude keeps
        its sign).
    decades : float
        How many decades below the maximum the log scale shows (darker is black).

    Returns
    -------
    numpy.ndarray
        (rows, cols, 3) float in [0, 1].
    """
    if view not in VIEWS:
        raise InvalidInputError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if scale not in SCALES:
        raise InvalidInputError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    data = np.asarray(asnumpy(image))
    if data.ndim != 2:
        raise InvalidInputError(f"an image has 2 dimensions, got shape {data.shape}")
    finite = np.isfinite(data)
    data = np.where(finite, data, 0)
    if view == "complex":
        rgb = complex_to_rgb(data, scale=scale, decades=decades)
    elif view == "magnitude":
        rgb = np.repeat(brightness(np.abs(data), scale, decades=decades)[..., None], 3, axis=-1)
    elif view == "phase":
        phase = np.angle(data) if np.iscomplexobj(data) else np.where(data < 0, np.pi, 0.0)
        rgb = colormaps["twilight"]((phase + np.pi) / (2 * np.pi))[..., :3]
    else:
        real = np.real(data).astype(float)
        level = brightness(np.abs(real), scale, decades=decades)
        rgb = colormaps["RdBu_r"](0.5 + 0.5 * np.sign(real) * level)[..., :3]
    rgb = np.where(finite[..., None], rgb, 0.0)
    return np.clip(rgb, 0.0, 1.0)


def image_png(rgb: np.ndarray) -> bytes:
    """An RGB picture as PNG bytes, one image pixel per PNG pixel."""
    with io.BytesIO() as buf:
        imsave(buf, np.asarray(rgb), format="png")
        return buf.getvalue()


def crop(image, region):
    """``image[r0:r1, c0:c1]`` for a region ``(r0, r1, c0, c1)``, or the whole image for None."""
    if region is None:
        return image
    r0, r1, c0, c1 = region
    return image[r0:r1, c0:c1]
