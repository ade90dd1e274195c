"""Shadows on a diffraction pattern: regions that read nothing where Friedel's law says light.

A detector region behind a beamstop arm, a frame or a blocked area reads only its pedestal,
and after the background is subtracted it looks like a measurement of zero intensity. Phase
retrieval would then force the object's diffraction to vanish there, which no object does:
the region must be unmeasured (free) instead. Nothing tells it apart on its own, but its
mirror image does: the diffraction of a thin object obeys Friedel's law closely, ``I(q) ≈
I(−q)`` (exactly for a real object; a complex one changes the speckle's detail, not its mean
over a few speckles). A region whose local mean intensity is a small fraction of its mirror
image's is a shadow. On the ALS CDI demo this finds the blocked band at the left edge
(about 75 × 470 pixels); on simulated patterns of complex objects it finds nothing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .center import find_center
from .floor import measured_values

__all__ = ["SHADOW_RATIO", "find_shadows"]

#: A region is a shadow where its local mean is below this fraction of its mirror image's.
SHADOW_RATIO = 0.1
#: Smallest shadow, as a fraction of the pattern's pixels, and at least two windows across
#: (smaller dark spots are left alone).
MIN_AREA = 0.002


def _mirror(a, known, doubled):
    """``a`` at the mirror image through a centre (``doubled`` = twice the centre, whole
    pixels): ``a[doubled − i]``, and where that lies inside the frame and is ``known``."""
    rows, cols = a.shape
    r = doubled[0] - np.arange(rows)
    c = doubled[1] - np.arange(cols)
    inside = ((r >= 0) & (r < rows))[:, None] & ((c >= 0) & (c < cols))[None, :]
    rr, cc = np.clip(r, 0, rows - 1), np.clip(c, 0, cols - 1)
    return a[rr[:, None], cc[None, :]], inside & known[rr[:, None], cc[None, :]]


def find_shadows(pattern, mask=None) -> np.ndarray:
    """Regions of a pattern that read far less than their Friedel mirror image.

    The measured intensity is averaged over windows of about 1/32 of the pattern's side
    (17 pixels at 512²; unmeasured pixels take no part); a pixel whose window mean is below
    :data:`SHADOW_RATIO` of the mean at its mirror image through the pattern's centre of
    symmetry (:func:`speckle.imaging.center.find_center`: a pattern not centred yet is
    judged about its own centre; both measured, a small allowance for noise added to each)
    is dark (the centre is found again without the shadows found first, which pull it);
    connected dark regions of at least :data:`MIN_AREA` of the pixels (and two windows
    across) are shadows, closed over a window (a detector stripe across a shadow is no light either)
    and grown by half a window: the window's mean near a shadow's edge takes in light from
    beyond it.

    Parameters
    ----------
    pattern : array, (rows, cols)
        Diffraction intensity, its background (pedestal) already subtracted.
    mask : bool array, optional
        Pixels already known to be unmeasured.

    Returns
    -------
    numpy.ndarray
        bool, True in the shadows (not in ``mask``).
    """
    values, measured = measured_values(pattern, mask, allow_empty=True)
    if measured.sum() < 16:
        return np.zeros(values.shape, bool)
    shadows = _shadows(values, measured)
    if shadows.any():  # a shadow pulls the centre of symmetry: once more without it
        shadows = _shadows(values, measured, ~shadows)
    return shadows


def _shadows(values, measured, usable=None):
    """:func:`find_shadows` about the centre found from the ``usable`` measured pixels."""
    shape = values.shape
    side = max(5, min(shape) // 32) | 1
    count = ndimage.uniform_filter(measured.astype(np.float64), side, mode="constant")
    known = count > 0.25  # a quarter of the window measured at least
    local = np.where(known, ndimage.uniform_filter(values, side, mode="constant") /
                     np.maximum(count, 1e-12), 0.0)
    # the mirror image through the pattern's own centre of symmetry (a pattern that is not
    # centred yet is not asymmetric about the frame's middle for that)
    use = measured if usable is None else measured & usable
    centre = find_center(np.where(use, values, 0.0), mask=~use)
    mirror, mirror_known = _mirror(local, known, (round(2 * centre[0]), round(2 * centre[1])))
    allowance = 0.01 * float(np.median(local[known])) if known.any() else 0.0
    dark = measured & known & mirror_known & (
        local + allowance < SHADOW_RATIO * (mirror + allowance))
    labels, n = ndimage.label(dark)
    if n == 0:
        return np.zeros(shape, bool)
    sizes = ndimage.sum_labels(dark, labels, np.arange(1, n + 1))
    smallest = max(MIN_AREA * values.size, (2 * side) ** 2)
    big = np.isin(labels, 1 + np.nonzero(sizes >= smallest)[0])
    if not big.any():
        return big
    # a thin line or a speck inside a shadow (a detector stripe) is no light either
    whole = ndimage.binary_fill_holes(ndimage.binary_closing(
        big, np.ones((side, side), bool), border_value=0) | big)
    # the window mean stays above the ratio up to half a window inside a shadow's edge
    return ndimage.binary_dilation(whole, iterations=max(1, side // 2)) & measured
