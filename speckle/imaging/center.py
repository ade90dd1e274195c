"""The centre of a diffraction pattern or hologram: its centre of inversion symmetry.

One function, :func:`find_center`, for every imaging path: FTH inversion
(:func:`speckle.imaging.fth.reconstruct`), pattern centring
(:func:`speckle.imaging.conditioning.center_pattern`) and the workflow. Numpy or cupy, as the
input.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module, asnumpy
from ..errors import InvalidInputError

__all__ = ["WEIGHTS", "find_center"]


def _parabolic_offset(left: float, mid: float, right: float) -> float:
    """Sub-sample position of a peak from three samples (Gaussian fit when all positive)."""
    if min(left, mid, right) > 0:
        left, mid, right = np.log(left), np.log(mid), np.log(right)
    denom = left - 2 * mid + right
    if not denom < 0:  # flat or not a maximum: no refinement
        return 0.0
    return float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))


#: The weights :func:`find_center` offers (see there).
WEIGHTS = ("sqrt", "log")


def find_center(pattern, *, mask=None, weight: str = "sqrt") -> tuple[float, float]:
    """Centre of inversion symmetry of a diffraction pattern or hologram, sub-pixel.

    A pattern obeying Friedel's law satisfies ``I(c + u) = I(c − u)``; its autoconvolution
    ``Σ_x a(x) a(s − x)`` is then largest at ``s = 2c`` (Cauchy–Schwarz). The weight ``a`` is
    taken from ``I − m``, with ``m`` the median of the measured pixels (a flat background is
    symmetric about the middle of the array, not about the pattern's centre; what lies below
    it counts as 0): its square root (``weight="sqrt"``: the weak speckle counts more than in
    the intensity, the bright centre still leads) or ``log(1 + (I − m) / s)`` with ``s`` the
    median of what remains (``weight="log"``: the weak fringes of a hologram lead).
    Unmeasured pixels (``mask``, non-finite) count as 0. The autoconvolution is computed by
    zero-padded FFTs (no wrap-around: the centre may lie anywhere in the frame), its peak
    refined to sub-pixel precision by a three-point Gaussian fit along each axis; the centre
    is half the peak's position.

    Both find the centre of simulated holograms of absorbing objects within 0.05 pixel and of
    noisy patterns of real objects within 0.25 pixel, beside an asymmetric beamstop and on a
    pedestal too (``tests/test_center.py``). The centre of an object with phase contrast is
    not fixed by its intensity alone: a linear phase (a tilt) across the object moves its
    pattern, so a pattern and its tilted-object twin are the same data. Such patterns are not
    point-symmetric (``|F(q)| ≠ |F(−q)|``), and the centre found is the one that makes them
    most symmetric, which depends on the weight: for the phase holograms of
    ``tests/test_fth.py`` within 0.1 pixel with ``"log"`` (0.3 with ``"sqrt"``), which is what
    FTH uses; on the ALS CDI demo, whose stripes and shadow are not point-symmetric, ``"log"``
    lands 1.4 pixels from the central peak and ``"sqrt"`` on it, which is what pattern
    centring uses. Strongly tilted complex objects can move it by up to 2.5 pixels; the
    reconstruction then carries a linear phase ramp, not a shift.

    Parameters
    ----------
    pattern : array, (rows, cols)
        Real intensity, numpy or cupy.
    mask : bool array, optional
        True at pixels to leave out (beamstop, gaps, hot pixels).
    weight : {"sqrt", "log"}
        How the intensity is weighted (above): ``"sqrt"`` for diffraction patterns,
        ``"log"`` for holograms.

    Returns
    -------
    (row, col) : tuple of float
        0-based pixel coordinates.

    Raises
    ------
    InvalidInputError
        For a non-2D or complex image, a mask of another shape, an unknown weight, or no
        usable pixel.
    """
    if weight not in WEIGHTS:
        raise InvalidInputError(f"the centre's weight is one of {', '.join(WEIGHTS)}, got "
                                f"{weight!r}")
    xp = array_module(pattern)
    a = xp.asarray(pattern)
    if a.ndim != 2 or min(a.shape) < 4:
        raise InvalidInputError(f"a pattern is one 2D image of at least 4×4 pixels, got shape "
                                f"{tuple(a.shape)}")
    if a.dtype.kind == "c":
        raise InvalidInputError("a pattern is a real intensity, not complex")
    if a.dtype.kind not in "biuf":
        raise InvalidInputError(f"a pattern holds numbers, not {a.dtype}")
    a = a.astype(xp.float64)
    bad = ~xp.isfinite(a)
    if mask is not None:
        m = xp.asarray(mask) if array_module(mask) is xp else xp.asarray(asnumpy(mask))
        if m.shape != a.shape:
            raise InvalidInputError(f"the mask's shape {tuple(m.shape)} differs from the "
                                    f"pattern's {tuple(a.shape)}")
        bad = bad | m.astype(bool)
    if bool(bad.all()):
        raise InvalidInputError("every pixel of the pattern is masked; cannot find its centre")
    level = float(xp.median(a[~bad]))
    above = xp.maximum(xp.where(bad, 0.0, a - level), 0.0)
    if not bool((above > 0).any()):
        raise InvalidInputError("the pattern has no positive unmasked pixel; cannot find its "
                                "centre")
    if weight == "sqrt":
        amp = xp.sqrt(above)
    else:
        amp = xp.log1p(above / float(xp.median(above[above > 0])))
    shape = (2 * a.shape[0], 2 * a.shape[1])
    f = xp.fft.rfft2(amp, s=shape)
    conv = asnumpy(xp.fft.irfft2(f * f, s=shape))
    sr, sc = divmod(int(np.argmax(conv)), shape[1])
    ref = float(conv[sr, sc])
    dr = _parabolic_offset(float(conv[sr - 1, sc]), ref, float(conv[(sr + 1) % shape[0], sc]))
    dc = _parabolic_offset(float(conv[sr, sc - 1]), ref, float(conv[sr, (sc + 1) % shape[1]]))
    return ((sr + dr) / 2.0, (sc + dc) / 2.0)
