"""A diffraction pattern made ready for phasing: unmeasured pixels, background, centre, binning.

:func:`prepare_pattern` is the one place where a pattern as read becomes the pattern phased,
whoever asks (command line, dashboards, notebooks, the beamtime monitor), always in this order:

1. unmeasured pixels on the pattern as read: the given mask (any non-zero value), non-finite
   pixels, and as asked pixels reading ≤ 0 (``mask_zeros``) or below ``mask_below``; a
   beamstop that reads ≤ 0 at the centre is always unmeasured (:func:`central_zeros`: the
   centre of a diffraction pattern is its brightest part, so zeros there were not measured);
2. the constant ``background`` subtracted (its percentile taken over the measured pixels;
   ``"auto"``: the 1st percentile when it is above zero);
3. the pattern and its mask centred (``center``) and binned (``bin_factor``): a binned pixel is
   unmeasured when any of its pixels is;
4. as asked (``mask_shadows``), the shadows: regions that read far less than their Friedel
   mirror image (:func:`speckle.imaging.shadows.find_shadows`: a blocked detector region reads
   only its pedestal, which is no measurement of zero intensity);
5. ``mask_rects`` (in the prepared pattern's pixels) masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..backend import asnumpy
from ..errors import InvalidInputError
from .shadows import find_shadows
from .conditioning import (background_level, bin_image, center_pattern, shift_image,
                           subtract_background)

__all__ = ["AUTO_BACKGROUND", "PreparedPattern", "as_mask", "central_zeros", "prepare_pattern"]

#: What ``background="auto"`` subtracts: the 1st percentile of the measured pixels when it is
#: above zero. A constant pedestal (a detector offset; ~390 counts in the CDI demo) is
#: something no compact object can produce; a photon-counting pattern, whose 1st percentile is
#: 0, is left as it is.
AUTO_BACKGROUND = "p1"


@dataclass
class PreparedPattern:
    """A pattern ready for phasing.

    Attributes
    ----------
    pattern : numpy.ndarray
        float64, centred and binned as asked (pixels that came in from outside are NaN).
    mask : numpy.ndarray
        bool, True where a pixel is not measured.
    center : (float, float) or None
        The centre of the pattern as read, when it was moved to the middle.
    background : float or None
        The constant subtracted.
    bin_factor : int
    shadowed : int
        Pixels found in shadows and made unmeasured (``mask_shadows``).
    """

    pattern: np.ndarray
    mask: np.ndarray
    center: tuple | None = None
    background: float | None = None
    bin_factor: int = 1
    shadowed: int = 0


def as_mask(mask, shape) -> np.ndarray:
    """Any natural mask as a boolean array: bool, or numbers where non-zero (or NaN) is True.

    Parameters
    ----------
    mask : array_like or None
        bool, any integer or float (non-zero and NaN mean unmeasured); None: nothing masked.
    shape : (rows, cols)
        The pattern's shape, which the mask must have.

    Raises
    ------
    InvalidInputError
        For another shape, or values that are not numbers.
    """
    if mask is None:
        return np.zeros(tuple(shape), bool)
    m = np.asarray(asnumpy(mask))
    if m.shape != tuple(shape):
        raise InvalidInputError(f"the mask is {' × '.join(map(str, m.shape))} but the pattern "
                                f"is {' × '.join(map(str, shape))}; give a mask of the same size")
    if m.dtype.kind == "b":
        return m.copy()
    if m.dtype.kind not in "iuf":
        raise InvalidInputError(f"a mask holds bools or numbers (non-zero = unmeasured), not "
                                f"{m.dtype}")
    return np.nan_to_num(m.astype(np.float64), nan=1.0) != 0


#: :func:`central_zeros` takes the regions that reach this close to the frame's centre
#: (pixels): centring by whole pixels may leave a small beamstop a pixel or two off it.
NEAR_CENTRE = 2


def central_zeros(pattern) -> np.ndarray:
    """The connected regions of pixels reading ≤ 0 (or not finite) at the frame's centre.

    A beamstop that reads zero, as seen by a centred pattern: the regions that reach within
    :data:`NEAR_CENTRE` pixels of the middle pixel. All False when none does.
    """
    p = np.asarray(asnumpy(pattern), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = ~(p > 0)
    r, c = p.shape[0] // 2, p.shape[1] // 2
    near = low[max(r - NEAR_CENTRE, 0):r + NEAR_CENTRE + 1,
               max(c - NEAR_CENTRE, 0):c + NEAR_CENTRE + 1]
    if not near.any():
        return np.zeros(p.shape, bool)
    labels, _ = ndimage.label(low)
    found = labels[max(r - NEAR_CENTRE, 0):r + NEAR_CENTRE + 1,
                   max(c - NEAR_CENTRE, 0):c + NEAR_CENTRE + 1]
    return np.isin(labels, np.unique(found[found > 0]))


def prepare_pattern(image, mask=None, *, background=None, mask_zeros: bool = False,
                    mask_below: float | None = None, center=None, bin_factor: int = 1,
                    mask_shadows: bool = False, mask_rects=()) -> PreparedPattern:
    """Make a diffraction pattern ready for phasing (see the module for the order of steps).

    Parameters
    ----------
    image : array, (rows, cols)
        The pattern as read (numpy or cupy; returned as numpy).
    mask : array_like, optional
        Unmeasured pixels in any natural form (:func:`as_mask`).
    background : float, str or None
        Counts, ``"pN"`` a percentile of the measured pixels, or ``"auto"``
        (:data:`AUTO_BACKGROUND` when it is above zero).
    mask_zeros : bool
        Pixels reading ≤ 0 are unmeasured.
    mask_below : float, optional
        Pixels reading below this are unmeasured.
    center : "auto", (row, col) or None
        Move the found (``"auto"``) or given centre to ``(rows // 2, cols // 2)``; None: keep.
    bin_factor : int
        Sum blocks of ``bin_factor``² pixels.
    mask_shadows : bool
        Make the shadows unmeasured (:func:`speckle.imaging.shadows.find_shadows`).
    mask_rects : sequence of (row0, row1, col0, col1)
        Half-open rectangles of the prepared pattern that are unmeasured.

    Returns
    -------
    PreparedPattern

    Raises
    ------
    InvalidInputError
        For a bad mask, background, centre, factor or rectangle, or when every pixel ends up
        unmeasured.
    """
    raw = np.asarray(asnumpy(image), dtype=np.float64)
    if raw.ndim != 2 or min(raw.shape) < 4:
        raise InvalidInputError(f"a diffraction pattern is a 2D image of at least 4×4 pixels, "
                                f"got shape {raw.shape}")
    unmeasured = as_mask(mask, raw.shape) | ~np.isfinite(raw)
    with np.errstate(invalid="ignore"):
        if mask_zeros:
            unmeasured |= raw <= 0
        if mask_below is not None:
            unmeasured |= raw < float(mask_below)
    raw_low = ~(np.nan_to_num(raw, nan=0.0) > 0)  # for central_zeros, moved with the mask
    pattern, level = raw, None
    spec = None if background is None else str(background).strip().lower()
    if spec == "auto":
        spec = AUTO_BACKGROUND if background_level(raw, AUTO_BACKGROUND,
                                                   mask=unmeasured) > 0 else None
    if spec:
        pattern, level = subtract_background(raw, spec, mask=unmeasured)
        pattern = np.asarray(pattern)
    found = None
    if center is not None:
        given = None if isinstance(center, str) and center.strip().lower() == "auto" else center
        if isinstance(given, str):
            raise InvalidInputError(f"the centre is 'auto' or (row, col), got {center!r}")
        pattern, found = center_pattern(pattern, given, mask=unmeasured, fill=np.nan)
        shift = (raw.shape[0] // 2 - found[0], raw.shape[1] // 2 - found[1])
        unmeasured = np.asarray(shift_image(unmeasured, shift, fill=True), bool)
        raw_low = np.asarray(shift_image(raw_low, shift, fill=True), bool)
        found = (float(found[0]), float(found[1]))
    unmeasured |= central_zeros(np.where(raw_low, 0.0, 1.0))
    factor = int(bin_factor)
    if factor != 1:
        pattern = np.asarray(bin_image(np.where(unmeasured, 0.0, pattern), factor))
        unmeasured = np.asarray(bin_image(unmeasured.astype(np.float64), factor)) > 0
    shadowed = 0
    if mask_shadows:
        shadows = find_shadows(pattern, unmeasured)
        shadowed = int(shadows.sum())
        unmeasured |= shadows
    rows, cols = pattern.shape
    for rect in mask_rects:
        r0, r1, c0, c1 = (int(v) for v in rect)
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise InvalidInputError(f"the masked rectangle rows {r0}:{r1}, columns {c0}:{c1} "
                                    f"leaves the {rows}×{cols} prepared pattern")
        unmeasured[r0:r1, c0:c1] = True
    unmeasured |= ~np.isfinite(pattern)
    if unmeasured.all():
        raise InvalidInputError("every pixel of the pattern is unmeasured (masked, not finite "
                                "or below the threshold): nothing to phase")
    return PreparedPattern(pattern=pattern, mask=unmeasured, center=found, background=level,
                           bin_factor=factor, shadowed=shadowed)
