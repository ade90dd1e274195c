"""Supports for CDI phase retrieval: autocorrelation, rectangles, shrink-wrap (numpy or cupy).

A support is a boolean array of the pattern's shape, True where the object may be non-zero.
Conventions (shared with :mod:`speckle.imaging.phasing`):

- Diffraction patterns are *centred*: the zero frequency is at ``(rows // 2, cols // 2)``.
- The autocorrelation is centred the same way (zero shift in the middle of the array).
- Images and supports use array coordinates; FFT-based filters are periodic (the object lives
  on a torus, as it does for phase retrieval).

Pattern pixels that cannot be used (``mask`` True, non-finite values) count as zero intensity
here; negative values (background over-subtracted) are clipped to zero.
"""

from __future__ import annotations

import os

import numpy as np

from ..backend import array_module
from ..errors import InvalidInputError

__all__ = ["autocorrelation", "fft_module", "gaussian_blur", "shrink_wrap",
           "support_from_autocorrelation", "support_from_rectangles", "usable_intensity"]


def fft_module(xp):
    """The FFT functions for an array module: ``scipy.fft`` for numpy, ``xp.fft`` otherwise.

    Returns an object with ``fft2``, ``ifft2``, ``rfft2``, ``irfft2`` that keep single
    precision (complex64 stays complex64) and use every CPU core for numpy arrays.
    """
    if xp is not np:
        return xp.fft
    return _SCIPY_FFT


class _ScipyFFT:
    """scipy.fft with ``workers`` set: multithreaded on the CPU, single precision kept.

    Transforms smaller than ``threaded_from`` values run on one thread: below about 512²
    complex values, waking the other threads costs more than they save (measured on a
    2-core machine: 128², 0.16 ms on one thread against 0.22 ms on two).
    """

    threaded_from = 1 << 18

    def __init__(self):
        import scipy.fft  # noqa: PLC0415 - scipy is a core dependency; imported on first use

        self._fft = scipy.fft
        try:
            self.workers = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not on Linux
            self.workers = os.cpu_count() or 1

    def _workers(self, a) -> int:
        return self.workers if a.size >= self.threaded_from else 1

    def fft2(self, a, overwrite_x=False):
        return self._fft.fft2(a, workers=self._workers(a), overwrite_x=overwrite_x)

    def ifft2(self, a, overwrite_x=False):
        return self._fft.ifft2(a, workers=self._workers(a), overwrite_x=overwrite_x)

    def rfft2(self, a):
        return self._fft.rfft2(a, workers=self._workers(a))

    def irfft2(self, a, s=None):
        return self._fft.irfft2(a, s=s, workers=self._workers(a))


_SCIPY_FFT = _ScipyFFT()


def _check_image(a, what: str):
    if a.ndim != 2 or min(a.shape) < 2:
        raise InvalidInputError(f"the {what} must be a 2D image of at least 2×2 pixels, "
                                f"got shape {tuple(a.shape)}")


def usable_intensity(intensity, mask=None):
    """The pattern as float64 with unusable pixels zeroed and negative values clipped to zero.

    Unusable: ``mask`` True or not finite. Raises InvalidInputError for a non-2D pattern or a
    mask of another shape.
    """
    xp = array_module(intensity, mask)
    i = xp.asarray(intensity, dtype=xp.float64)
    _check_image(i, "diffraction pattern")
    bad = ~xp.isfinite(i)
    if mask is not None:
        m = xp.asarray(mask, dtype=bool)
        if m.shape != i.shape:
            raise InvalidInputError(f"the mask's shape {tuple(m.shape)} differs from the "
                                    f"pattern's {tuple(i.shape)}")
        bad = bad | m
    return xp.where(bad, 0.0, xp.maximum(i, 0.0))


def autocorrelation(intensity, *, mask=None):
    """Autocorrelation of the object: the magnitude of the inverse FFT of the pattern.

    Parameters
    ----------
    intensity : array, (rows, cols)
        Centred diffraction pattern (numpy or cupy).
    mask : bool array, optional
        True where a pixel is not measured; such pixels (and non-finite ones) count as zero.

    Returns
    -------
    ndarray
        Real, non-negative, centred (zero shift at ``(rows // 2, cols // 2)``), same module.
    """
    xp = array_module(intensity, mask)
    i = usable_intensity(intensity, mask)
    ac = fft_module(xp).ifft2(xp.fft.ifftshift(i))
    return xp.fft.fftshift(xp.abs(ac))


def gaussian_blur(image, sigma: float):
    """Periodic Gaussian blur of a real image by multiplication in Fourier space.

    Parameters
    ----------
    image : real array, (rows, cols)
    sigma : float
        Standard deviation in pixels; 0 returns a copy.

    Returns
    -------
    ndarray
        Same shape and module, float.
    """
    xp = array_module(image)
    a = xp.asarray(image)
    a = a.astype(a.dtype if a.dtype.kind == "f" else xp.float64, copy=True)
    if not sigma >= 0 or not np.isfinite(sigma):
        raise InvalidInputError(f"the blur sigma must be zero or positive, got {sigma}")
    if sigma == 0:
        return a
    fy = xp.fft.fftfreq(a.shape[0])[:, None]
    fx = xp.fft.rfftfreq(a.shape[1])[None, :]
    kernel = xp.exp(-2.0 * np.pi**2 * sigma**2 * (fy**2 + fx**2)).astype(a.dtype)
    fft = fft_module(xp)
    return fft.irfft2(fft.rfft2(a) * kernel, s=a.shape)


def _threshold_support(values, threshold: float):
    xp = array_module(values)
    if not 0 <= threshold <= 1:
        raise InvalidInputError(f"the support threshold is a fraction of the maximum, "
                                f"between 0 and 1; got {threshold}")
    top = float(xp.max(values))
    if not top > 0:
        return xp.zeros(values.shape, dtype=bool)
    return values >= threshold * top


def support_from_autocorrelation(intensity, threshold: float = 0.04, *, sigma: float = 1.0,
                                 mask=None):
    """An initial support: the region where the (blurred) autocorrelation is significant.

    The autocorrelation of an object of support S is non-zero on S − S, a region that
    contains a translate of S: it is the loose starting support that shrink-wrap then
    tightens (Marchesini et al., Phys. Rev. B 68, 140101, 2003).

    Parameters
    ----------
    intensity : array, (rows, cols)
        Centred diffraction pattern.
    threshold : float
        Fraction of the maximum of the blurred autocorrelation.
    sigma : float
        Gaussian blur in pixels before thresholding (smooths speckle noise).
    mask : bool array, optional
        True where a pixel is not measured.

    Returns
    -------
    bool ndarray
        Centred support, same module as ``intensity``.

    Raises
    ------
    InvalidInputError
        When the pattern holds no usable positive intensity.
    """
    ac = autocorrelation(intensity, mask=mask)
    support = _threshold_support(gaussian_blur(ac, sigma), threshold)
    xp = array_module(support)
    if not bool(xp.any(support)):
        raise InvalidInputError("the diffraction pattern holds no positive intensity: "
                                "no support can be found from its autocorrelation")
    return support


def support_from_rectangles(shape, rects):
    """A support made of rectangles (their union).

    Parameters
    ----------
    shape : (rows, cols)
    rects : sequence of (row0, row1, col0, col1)
        Half-open pixel ranges, like ``array[row0:row1, col0:col1]``.

    Returns
    -------
    numpy bool ndarray

    Raises
    ------
    InvalidInputError
        For an empty list, an empty rectangle or one reaching outside the frame.
    """
    rows, cols = (int(s) for s in shape)
    rects = list(rects)
    if not rects:
        raise InvalidInputError("give at least one rectangle for the support")
    support = np.zeros((rows, cols), dtype=bool)
    for rect in rects:
        try:
            r0, r1, c0, c1 = (int(v) for v in rect)
        except (TypeError, ValueError):
            raise InvalidInputError(f"a support rectangle is (row0, row1, col0, col1), "
                                    f"got {rect!r}") from None
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise InvalidInputError(
                f"the support rectangle rows {r0}:{r1}, columns {c0}:{c1} is empty or "
                f"leaves the {rows}×{cols} frame")
        support[r0:r1, c0:c1] = True
    return support


def shrink_wrap(obj, sigma: float, threshold: float):
    """Shrink-wrap support update: blur ``|obj|`` and keep what exceeds a fraction of its max.

    Parameters
    ----------
    obj : array, (rows, cols)
        Current object estimate (complex or real).
    sigma : float
        Gaussian blur, pixels.
    threshold : float
        Fraction (0-1) of the maximum of the blurred magnitude.

    Returns
    -------
    bool ndarray
        Same module; all False when ``obj`` is zero.
    """
    xp = array_module(obj)
    a = xp.asarray(obj)
    _check_image(a, "object")
    mag = xp.abs(a)
    return _threshold_support(gaussian_blur(mag, sigma), threshold)
