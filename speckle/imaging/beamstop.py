"""The intensity behind a beamstop, estimated from the compactness of the autocorrelation.

A beamstop hides the lowest frequencies of a pattern. Its pixels are few (a disc of 2-4 pixels
radius: 13-50), but leaving them out (or filling them from their neighbours) adds to the
autocorrelation a broad, smooth error the size of the frame over the beamstop's size, which
buries the weak cross-terms of small references; taking the low frequencies out instead leaves
only the edges of each term, whose middle is then found several pixels off.

The autocorrelation of a sample of finite size is compact: it vanishes outside its support
(the central term and the cross-terms), most of the frame. The missing intensities are the
values that make it vanish there best: a linear least-squares problem in as many unknowns as
hidden pixels, whose normal equations need only two FFTs (:func:`fill_beamstop`). This is the
Gerchberg-Papoulis extrapolation solved in one step.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import InvalidInputError
from .floor import measured_values
from .prepare import central_zeros
from .support import autocorrelation_level, autocorrelation_map

__all__ = ["MAX_HIDDEN", "autocorrelation_extent", "fill_beamstop"]

#: At most this many hidden pixels are solved for (a beamstop of about 11 pixels radius); a
#: larger hole is left as it is.
MAX_HIDDEN = 400


def _central_hole(mask) -> np.ndarray:
    """The connected unmeasured region at the frame's centre (all False when the centre is
    measured)."""
    return central_zeros(np.where(mask, 0.0, 1.0))


def autocorrelation_extent(pattern, mask, hole) -> np.ndarray:
    """Where the autocorrelation of a pattern with a central ``hole`` may be non-zero (centred).

    The map of :func:`speckle.imaging.support.autocorrelation_map` (the low frequencies out
    to 1.5 times the hole's radius taken out: the terms' edges stand out) above its own level
    (:func:`speckle.imaging.support.autocorrelation_level`), each region's holes filled and
    grown by the blur that the missing low frequencies leave (the frame over 2π times the
    hole's radius, at least 3 pixels): generous, so that no part of a term is taken for empty
    field.
    """
    ac = np.asarray(autocorrelation_map(pattern, mask=mask, local_energy=False))
    inside = ac >= autocorrelation_level(ac)
    radius = math.sqrt(float(hole.sum()) / math.pi)
    grow = max(3, int(math.ceil(min(pattern.shape) / (2 * math.pi * max(radius, 1.0)))))
    inside = ndimage.binary_fill_holes(ndimage.binary_closing(inside, iterations=2))
    return ndimage.binary_dilation(inside, iterations=grow)


def _solve(values, measured, hole, extent):
    """The pattern with ``hole`` filled by least squares against ``extent`` (see below)."""
    rows, cols = values.shape
    count = int(hole.sum())
    # FFT order: zero frequency and zero shift at [0, 0]
    known = np.fft.ifftshift(np.where(measured, values, 0.0))
    empty = ~np.fft.ifftshift(extent)
    autocorrelation = np.fft.ifft2(known)
    qr, qc = np.nonzero(np.fft.ifftshift(hole))
    # with e_i(x) = exp(2πi q_i·x / N): N⁴ Σ_{x empty} e_i* e_j = N² (δ_ij − ifft2(extent)[q_j − q_i])
    size = rows * cols
    inside_ft = np.fft.ifft2(np.fft.ifftshift(extent).astype(np.float64))
    gram = size * (np.eye(count) - inside_ft[(qr[None, :] - qr[:, None]) % rows,
                                             (qc[None, :] - qc[:, None]) % cols])
    rhs = size * np.fft.fft2(np.where(empty, autocorrelation, 0.0))[qr, qc]
    try:
        hidden_values = np.linalg.solve(gram, -rhs)
    except np.linalg.LinAlgError:
        hidden_values = np.linalg.lstsq(gram, -rhs, rcond=None)[0]
    filled = np.fft.ifftshift(values.copy())
    filled[qr, qc] = np.maximum(hidden_values.real, 0.0)
    return np.fft.fftshift(filled)


#: :func:`fill_beamstop`'s second pass takes into the extent what stands this many times above
#: the median of the filled pattern's autocorrelation (the empty field's level).
ABOVE_FLOOR = 4.0


def _grown_extent(filled, measured, extent):
    """``extent`` and whatever the filled pattern's autocorrelation shows above the empty
    field (:data:`ABOVE_FLOOR` times its median: the cross-terms of small references, a
    thousandth of the central term, which the first extent misses), grown by 3 pixels."""
    ac = np.asarray(autocorrelation_map(filled, mask=~measured, local_energy=True))
    inside = ndimage.binary_fill_holes(ac >= ABOVE_FLOOR * float(np.median(ac)))
    return extent | ndimage.binary_dilation(inside, iterations=3)


def fill_beamstop(pattern, mask=None, *, extent=None):
    """Estimate the intensity hidden by a central beamstop (and nothing else).

    Solves for the hidden pixels (the unmeasured region connected to the frame's centre) the
    intensities whose autocorrelation is smallest outside ``extent`` (least squares, exact:
    the normal equations are the Gram matrix of plane waves over the empty field, one FFT of
    ``extent``). The values are real and clipped at zero.

    Parameters
    ----------
    pattern : array, (rows, cols)
        Centred intensity (a hologram or a diffraction pattern), background subtracted.
    mask : bool array, optional
        True where a pixel is not measured; non-finite pixels are not measured either.
    extent : bool array, optional
        Where the centred autocorrelation may be non-zero; None:
        :func:`autocorrelation_extent`.

    Returns
    -------
    filled : numpy.ndarray
        float64, the pattern with the hidden pixels estimated (other unmeasured pixels 0).
    hidden : numpy.ndarray
        bool, the pixels that were estimated (all False when the centre was measured or the
        hole is larger than :data:`MAX_HIDDEN` pixels).

    Raises
    ------
    InvalidInputError
        For a pattern that is not 2D, or an extent of another shape.
    """
    values, measured = measured_values(pattern, mask)
    hole = _central_hole(~measured)
    count = int(hole.sum())
    if count == 0 or count > MAX_HIDDEN:
        return values, np.zeros(values.shape, bool)
    given = extent is not None
    if not given:
        extent = autocorrelation_extent(values, ~measured, hole)
    extent = np.asarray(extent, bool)
    if extent.shape != values.shape:
        raise InvalidInputError(f"the extent's shape {extent.shape} differs from the "
                                f"pattern's {values.shape}")
    rest = measured | hole  # the other unmeasured pixels stay out of the autocorrelation
    filled = _solve(values, measured, hole, extent)
    if not given:  # once more, with what the filled pattern shows
        filled = _solve(values, measured, hole, _grown_extent(filled, rest, extent))
    return filled, hole
