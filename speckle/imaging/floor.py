"""How much of a diffraction pattern may not be the object's coherent scattering.

A measured pattern is the coherent diffraction of the object plus what no object in a compact
support can produce: parasitic scattering from slits and pinholes, diffuse scattering and
fluorescence, a pedestal that drifts across the detector, and speckle washed out by partial
coherence. Forcing the modulus of a reconstruction to the whole measured intensity makes
phase retrieval fit that part with fine, random structure, different in every trial. On the
ALS CDI demo the speckle contrast falls from 0.34 (20 pixels from the centre) to 0.06 (200
pixels out): most of the intensity at high q is such a background.

A coherent speckle pattern has dark points between its grains: within a few speckles of any
pixel the coherent intensity comes close to zero. Whatever smooth background lies under it is
therefore at most the local minimum of the measured intensity over a window a few speckles
wide. :func:`incoherent_floor` gives that bound (the *floor*; the light blur against pixel
noise lifts the speckle's dark points by a few percent of its mean: on simulated speckle over a
planted background the floor is 1.03 of it at the median, below 1.25 of it at 99 % of the
pixels, ``tests/test_floor.py``), so that the modulus constraint can accept any coherent
intensity between ``I − floor`` and ``I``
(:func:`speckle.imaging.phasing.phase_retrieval`'s ``floor``). A pattern without background
(simulated, or photon counting with the speckle resolved) has a floor near zero (0.3-3 % of
the intensity on the simulated patterns of ``tests/test_imaging_workflow.py``), and the
constraint is the usual one; on the demo it is 10-15 % of the intensity 20-40 pixels from
the centre and 45-60 % beyond 200 pixels.

:func:`speckle_size` measures the speckle grain from the data: the full width at half maximum
of the autocovariance of the pattern's relative fluctuations.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..backend import asnumpy
from ..errors import InvalidInputError

__all__ = ["FLOOR_SPECKLES", "incoherent_floor", "measured_values", "speckle_size"]

#: The window of :func:`incoherent_floor`, in speckle widths: wide enough to hold a dark point
#: of the coherent speckle, narrow enough to follow the background.
FLOOR_SPECKLES = 3
#: Before its local minimum is taken, the pattern is blurred over this fraction of a speckle's
#: width: enough to calm pixel noise (which would pull the minimum below the background), too
#: little to fill the speckle's dark points.
PRESMOOTH = 0.125
#: Envelope blur (pixels) that :func:`speckle_size` divides the pattern by.
ENVELOPE_SIGMA = 12.0
#: :func:`speckle_size` looks at lags up to this many pixels.
MAX_LAG = 32


def measured_values(pattern, mask=None, *, allow_empty: bool = False):
    """A pattern's measured values (negative ones as 0, the rest 0) and where it was measured.

    Parameters
    ----------
    pattern : array, (rows, cols)
        At least 8 × 8 pixels (numpy or cupy; returned as numpy).
    mask : bool array, optional
        True where a pixel is not measured; non-finite pixels are not measured either.
    allow_empty : bool
        Return nothing measured instead of refusing it.

    Returns
    -------
    values : numpy.ndarray
        float64.
    measured : numpy.ndarray
        bool.

    Raises
    ------
    InvalidInputError
        For a pattern that is not 2D or too small, a mask of another shape, or (unless
        ``allow_empty``) nothing measured.
    """
    p = np.asarray(asnumpy(pattern), dtype=np.float64)
    if p.ndim != 2 or min(p.shape) < 8:
        raise InvalidInputError(f"a diffraction pattern is a 2D image of at least 8×8 pixels, "
                                f"got shape {p.shape}")
    measured = np.isfinite(p)
    if mask is not None:
        m = np.asarray(asnumpy(mask), dtype=bool)
        if m.shape != p.shape:
            raise InvalidInputError(f"the mask's shape {m.shape} differs from the pattern's "
                                    f"{p.shape}")
        measured &= ~m
    if not (allow_empty or measured.any()):
        raise InvalidInputError("every pixel of the pattern is unmeasured")
    return np.where(measured, np.maximum(np.nan_to_num(p), 0.0), 0.0), measured


def _smooth(values, measured, sigma):
    """Gaussian blur of the measured pixels only (normalised convolution); 0 where none."""
    num = ndimage.gaussian_filter(values * measured, sigma, mode="constant")
    den = ndimage.gaussian_filter(measured.astype(np.float64), sigma, mode="constant")
    return np.where(den > 1e-3, num / np.maximum(den, 1e-12), 0.0)


def speckle_size(pattern, mask=None) -> float:
    """The speckle grain of a diffraction pattern: FWHM in pixels, from the data.

    The pattern is divided by its envelope (a Gaussian blur of :data:`ENVELOPE_SIGMA` pixels);
    the autocovariance of the relative fluctuations over the measured pixels brighter than the
    median envelope (where photon noise does not dominate) falls to half its value at one
    pixel's lag at the speckle's half width, along each axis. Lag 0 is left out: it holds the
    uncorrelated noise.

    Parameters
    ----------
    pattern : array, (rows, cols)
        Centred diffraction intensity.
    mask : bool array, optional
        True where a pixel is not measured.

    Returns
    -------
    float
        The mean of the two axes' FWHM, pixels (at least 1; at most ``2 × MAX_LAG``).
    """
    p, measured = measured_values(pattern, mask)
    env = _smooth(p, measured, ENVELOPE_SIGMA)
    use = measured & (env > np.median(env[measured])) & (env > 0)
    if use.sum() < 64:
        return 1.0
    c = np.where(use, p / np.where(env > 0, env, 1.0) - 1.0, 0.0)
    c[use] -= c[use].mean()
    rows, cols = p.shape
    shape = (2 * rows, 2 * cols)  # zero-padded: no wrap-around
    f = np.fft.rfft2(c, s=shape)
    w = np.fft.rfft2(use.astype(np.float64), s=shape)
    cov = np.fft.irfft2(np.abs(f) ** 2, s=shape)
    pairs = np.fft.irfft2(np.abs(w) ** 2, s=shape)
    widths = []
    for axis_cov, axis_pairs in ((cov[:MAX_LAG + 1, 0], pairs[:MAX_LAG + 1, 0]),
                                 (cov[0, :MAX_LAG + 1], pairs[0, :MAX_LAG + 1])):
        ac = axis_cov / np.maximum(axis_pairs, 1.0)
        if not ac[1] > 0:
            widths.append(1.0)
            continue
        below = np.nonzero(ac[1:] < ac[1] / 2)[0]
        if below.size == 0:
            widths.append(2.0 * MAX_LAG)
            continue
        k = int(below[0]) + 1  # first lag below half
        a, b = ac[k - 1], ac[k]
        half = (k - 1) + (a - ac[1] / 2) / (a - b) if a != b else float(k)
        widths.append(max(1.0, 2.0 * half))
    return float(np.mean(widths))


def incoherent_floor(pattern, mask=None, *, window: int | None = None) -> np.ndarray:
    """An upper bound on the smooth background under a pattern's coherent speckle.

    The local minimum over a square ``window`` of the measured intensity (blurred over
    :data:`PRESMOOTH` of a speckle against pixel noise), blurred over half the window so that
    it is as smooth as a background and never above that minimum. Unmeasured pixels take no
    part; where a whole window is unmeasured the floor is 0.

    Parameters
    ----------
    pattern : array, (rows, cols)
        Centred diffraction intensity, background (pedestal) already subtracted.
    mask : bool array, optional
        True where a pixel is not measured.
    window : int, optional
        Side of the window, pixels; None: :data:`FLOOR_SPECKLES` speckles
        (:func:`speckle_size`), at least 5 pixels and at most a quarter of the pattern.

    Returns
    -------
    numpy.ndarray
        float64, the pattern's shape, ≥ 0 and ≤ the (lightly blurred) intensity's local
        minimum.
    """
    p, measured = measured_values(pattern, mask)
    grain = speckle_size(p, ~measured)
    if window is None:
        window = FLOOR_SPECKLES * grain
    side = int(min(max(5, math.ceil(window)), max(5, min(p.shape) // 4)))
    side += 1 - side % 2  # odd: centred on the pixel
    values = _smooth(p, measured, PRESMOOTH * grain)
    low = ndimage.minimum_filter(np.where(measured, values, np.inf), size=side, mode="nearest")
    low = np.where(np.isfinite(low), low, 0.0)
    return np.clip(ndimage.gaussian_filter(low, side / 2, mode="nearest"), 0.0, low)
