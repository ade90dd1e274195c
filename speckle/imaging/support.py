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

import math
import os

import numpy as np
from scipy import ndimage

from ..backend import array_module, asnumpy
from ..errors import InvalidInputError
from .conditioning import remove_dust

__all__ = ["OBJECT_SCALE", "autocorrelation", "autocorrelation_level", "autocorrelation_map",
           "autocorrelation_support", "fft_module", "gaussian_blur", "scale_about_centre",
           "shrink_wrap", "support_from_autocorrelation", "support_from_cross_terms", "support_from_rectangles",
           "usable_intensity"]


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
    return _usable_and_bad(intensity, mask)[0]


def _usable_and_bad(intensity, mask):
    """(:func:`usable_intensity`, the unusable pixels)."""
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
    return xp.where(bad, 0.0, xp.maximum(xp.nan_to_num(i), 0.0)), bad


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


#: Fraction of the autocorrelation's extent kept by :func:`support_from_autocorrelation`: an
#: object's autocorrelation spans S − S, twice the object along every direction; slightly more
#: than half leaves room for objects that are not convex and for shrink-wrap to tighten.
OBJECT_SCALE = 0.55
#: The local energy of :func:`autocorrelation_map` is blurred over the frame's side / this
#: (3 pixels at 256²).
ENERGY_BLUR = 85
#: The autocorrelation's extent never reaches below this fraction of its maximum (noiseless
#: data have no floor for :func:`autocorrelation_level` to find).
MIN_LEVEL = 0.01


def _central_hole_radius(bad) -> float:
    """Equivalent radius (pixels) of the unusable region at the pattern's centre (0 if none)."""
    b = np.asarray(asnumpy(bad))
    centre = (b.shape[0] // 2, b.shape[1] // 2)
    if not b[centre]:
        return 0.0
    labels, _ = ndimage.label(b)
    return math.sqrt(float((labels == labels[centre]).sum()) / math.pi)


def autocorrelation_map(intensity, *, mask=None, local_energy: bool = True):
    """A clean picture of the object's autocorrelation, for finding a support.

    The plain autocorrelation of detector data is spoiled by what the detector did not
    measure: a hole at the centre (beamstop) rings over the whole frame and scattered dead
    pixels print a speckled floor. Here the unusable pixels (``mask``, non-finite) are first
    filled from their neighbours (:func:`speckle.imaging.conditioning.remove_dust`); the
    pattern is then filtered by smooth Gaussian windows: the high frequencies, where photon noise
    dominates, are damped (width a sixth of the frame), and when there is a hole at the centre
    (a beamstop) the low frequencies out to 1.5× its radius are taken out by a Gaussian, so
    that the hole's edge rings less over the frame (a compact halo about the centre remains).
    The magnitude of the inverse FFT is squared, blurred over an 85th of the frame's side (3
    pixels at 256²; a local energy: flat parts between edges stay filled) and its square root
    returned; with ``local_energy`` False, the magnitude itself.

    Parameters
    ----------
    intensity : array, (rows, cols)
        Centred diffraction pattern (numpy or cupy).
    mask : bool array, optional
        True where a pixel is not measured.
    local_energy : bool
        Blur the energy (for supports) or not (for locating cross-terms).

    Returns
    -------
    ndarray
        Non-negative, maximum 1, centred; same module as ``intensity``.

    Raises
    ------
    InvalidInputError
        When the pattern holds no usable positive intensity.
    """
    xp = array_module(intensity, mask)
    i, bad = _usable_and_bad(intensity, mask)
    if not float(i.max()) > 0:
        raise InvalidInputError("the diffraction pattern holds no positive intensity: "
                                "no support can be found from its autocorrelation")
    if bool(bad.any()):
        i = remove_dust(i, bad, sigma=1.0)
    rows, cols = i.shape
    fy = (xp.arange(rows) - rows // 2)[:, None]
    fx = (xp.arange(cols) - cols // 2)[None, :]
    q2 = (fy**2 + fx**2).astype(xp.float64)
    window = xp.exp(-q2 / (2 * (min(rows, cols) / 6) ** 2))
    hole = _central_hole_radius(bad)
    if hole > 0:
        window *= 1 - xp.exp(-q2 / (2 * (1.5 * hole) ** 2))
    ac = xp.abs(xp.fft.fftshift(fft_module(xp).ifft2(xp.fft.ifftshift(i * window))))
    if local_energy:
        ac = xp.sqrt(xp.maximum(gaussian_blur(ac**2, min(rows, cols) / ENERGY_BLUR), 0.0))
    local = ac
    return local / float(local.max())


def _otsu(values, bins: int = 256) -> float:
    """Otsu's threshold: the level that best splits ``values`` into two classes."""
    hist, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def autocorrelation_level(ac_map) -> float:
    """Where the object's autocorrelation ends: Otsu's split of ``log(ac_map)``.

    The map of :func:`autocorrelation_map` is orders of magnitude above its floor inside the
    autocorrelation and flat outside; in logarithm the two form two clear classes, and the
    level between them follows the data instead of being a fixed fraction of the maximum
    (never below :data:`MIN_LEVEL`).

    Returns
    -------
    float
        A fraction of the map's maximum.
    """
    a = np.asarray(asnumpy(ac_map), dtype=np.float64)
    top = float(a.max())
    logs = np.log10(np.maximum(a / top, 1e-12))
    return max(float(10 ** _otsu(logs)), MIN_LEVEL)


def autocorrelation_support(intensity, threshold: float | None = None, *, mask=None,
                            central_only: bool = True):
    """Where the object's autocorrelation is: :func:`autocorrelation_map` thresholded.

    Parameters
    ----------
    intensity : array, (rows, cols)
        Centred diffraction pattern.
    threshold : float, optional
        Fraction (0-1) of the map's maximum; None: :func:`autocorrelation_level`.
    mask : bool array, optional
        True where a pixel is not measured.
    central_only : bool
        Keep only the connected region around the centre (holes filled); False keeps every
        region (cross-terms of references included).

    Returns
    -------
    bool ndarray
        Same module as ``intensity``.
    """
    xp = array_module(intensity, mask)
    ac_map = autocorrelation_map(intensity, mask=mask)
    level = autocorrelation_level(ac_map) if threshold is None else float(threshold)
    if not 0 < level < 1:
        raise InvalidInputError(f"the support threshold is a fraction of the maximum, between "
                                f"0 and 1; got {threshold}")
    inside = np.asarray(asnumpy(ac_map)) >= level
    if central_only:
        labels, _ = ndimage.label(inside)
        inside = ndimage.binary_fill_holes(labels == labels[inside.shape[0] // 2,
                                                            inside.shape[1] // 2])
    return xp.asarray(inside)


def scale_about_centre(support, factor: float):
    """A support shrunk (or grown) by ``factor`` about the frame's centre, nearest pixel."""
    xp = array_module(support)
    s = xp.asarray(support, dtype=bool)
    if not factor > 0:
        raise InvalidInputError(f"the scale factor must be positive, got {factor}")
    rows, cols = s.shape
    r = xp.clip(xp.rint(rows // 2 + (xp.arange(rows) - rows // 2) / factor), 0, rows - 1)
    c = xp.clip(xp.rint(cols // 2 + (xp.arange(cols) - cols // 2) / factor), 0, cols - 1)
    inside_r = xp.abs(xp.arange(rows) - rows // 2) / factor < rows / 2
    inside_c = xp.abs(xp.arange(cols) - cols // 2) / factor < cols / 2
    out = s[r.astype(xp.int64)[:, None], c.astype(xp.int64)[None, :]]
    return out & inside_r[:, None] & inside_c[None, :]


def support_from_autocorrelation(intensity, threshold: float | None = None, *, mask=None,
                                 scale: float = OBJECT_SCALE):
    """An initial support: the object's estimated extent from its autocorrelation.

    The autocorrelation of an object of support S is non-zero on S − S, twice the object's
    extent about the centre and a region that contains a translate of S (Marchesini et al.,
    Phys. Rev. B 68, 140101, 2003). Its extent is found by :func:`autocorrelation_support`
    (noise, unmeasured pixels and a beamstop taken care of; the threshold from the data) and
    shrunk by ``scale`` about the centre: a loose support of about the object's size, which
    shrink-wrap then tightens.

    Parameters
    ----------
    intensity : array, (rows, cols)
        Centred diffraction pattern.
    threshold : float, optional
        Fraction of the maximum of :func:`autocorrelation_map`; None: from the data.
    mask : bool array, optional
        True where a pixel is not measured.
    scale : float
        Fraction of the autocorrelation's extent kept (1: all of it).

    Returns
    -------
    bool ndarray
        Centred support, same module as ``intensity``.

    Raises
    ------
    InvalidInputError
        When the pattern holds no usable positive intensity.
    """
    support = scale_about_centre(autocorrelation_support(intensity, threshold, mask=mask), scale)
    xp = array_module(support)
    if not bool(xp.any(support)):  # a tiny autocorrelation: keep at least its centre
        support[support.shape[0] // 2, support.shape[1] // 2] = True
    return support


def support_from_cross_terms(intensity, terms, *, mask=None, threshold: float | None = None,
                             min_pixels: int = 9):
    """An initial support for a sample with reference apertures, from its cross-terms.

    The autocorrelation of an exit wave of support S lies in A = S − S. For any point p of S,
    S − p ⊂ A: S lies in A moved by p. The cross-term of the object with a reference lies at
    d = (object − reference), so in the frame where that reference sits at the centre, S lies
    in A ∩ (A + d); with a second reference, whose cross-term is at e, also in A + (d − e)
    (the second reference's position in that frame; of ± e, the one that keeps more of the
    intersection). This is Fienup's locator-set intersection (Fienup, Crimmins & Holsztynski,
    JOSA 72, 610, 1982): the object, the references and a little more, tighter than the
    autocorrelation and not point-symmetric, so phasing does not stall between twins.

    Parameters
    ----------
    intensity : array, (rows, cols)
        Centred diffraction pattern.
    terms : sequence of CrossTerm
        Cross-terms found in its autocorrelation, strongest first
        (:func:`speckle.imaging.workflow.find_cross_terms`).
    mask : bool array, optional
        True where a pixel is not measured.
    threshold : float, optional
        Of the autocorrelation's extent, a fraction of the map's maximum; None: from the data.
    min_pixels : int
        Regions of the intersection smaller than this are dropped.

    Returns
    -------
    numpy bool ndarray or None
        None when the terms give no usable support: none of them lies in a region of the
        autocorrelation apart from the central one, or the intersection is empty.
    """
    extent = np.asarray(asnumpy(autocorrelation_support(intensity, threshold, mask=mask,
                                                        central_only=False)))
    rows, cols = extent.shape
    centre = np.array([rows // 2, cols // 2])
    # a term of this sample lies in a region of the autocorrelation of its own
    labels, _ = ndimage.label(extent)
    central = labels[centre[0], centre[1]]
    terms = [t for t in terms
             if labels[int(round(t.row)) % rows, int(round(t.col)) % cols] not in (0, central)]
    if not terms:
        return None

    def offset(term):
        return np.rint(np.array([term.row, term.col]) - centre).astype(int)

    def moved(v):
        return np.roll(extent, tuple(int(x) for x in v), axis=(0, 1))

    first = terms[0]
    d = offset(first)
    support = extent & moved(d)
    seen = {0, first.twin}
    for i, term in enumerate(terms):
        if i in seen:
            continue
        seen.update({i, term.twin})
        e = offset(term)
        options = [support & moved(d - e), support & moved(d + e)]
        best = max(options, key=lambda s: int(s.sum()))
        if best.sum() >= 0.5 * support.sum():  # a reference of this sample: keep it
            support = best
    labels, n = ndimage.label(support)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.flatnonzero(sizes >= min_pixels)
    support = np.isin(labels, keep[keep > 0])
    return support if support.any() else None


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
