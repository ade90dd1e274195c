"""Resolution estimates: phase retrieval transfer function (PRTF) and Fourier ring correlation.

Both are averages over rings of |q| and return ``(q_fraction, values)``: ``q_fraction`` is the
ring centre as a fraction of the largest |q| in the frame (the corner), in ``n_bins`` equal
rings; values are numpy arrays, NaN for a ring without usable pixels. |q| is measured in
cycles per pixel along each axis, so rectangular frames get round rings.

- ``prtf``: the magnitude of the Fourier transform of the (aligned, averaged) reconstruction
  divided by the measured modulus ``sqrt(I)``, averaged over the measured pixels of each ring
  (Chapman et al., JOSA A 23, 1179, 2006). Reconstructions are in the scale in which
  ``|fft2(object)|`` matches ``sqrt(I)`` (unnormalised forward FFT), as
  :func:`speckle.imaging.phasing.phase_retrieval` returns them. 1 means the phases are
  reproducible at that |q|; the usual resolution cut-off is where it falls below 1/e.
  It is only meaningful for an average of at least two independent reconstructions: a single
  one fits ``sqrt(I)`` by construction and gives ≈ 1 whatever its phases.
  Computed per pixel over the pixels with ``I > 0``, it is biased low at low counts: leaving
  out the zero counts keeps the pixels whose count fluctuated up, where ``sqrt(I)`` exceeds
  the true modulus (at 0.1 expected counts a kept pixel has ``sqrt(I) ≥ 1`` against 0.32), so
  a ring of few counts per pixel reads lower than the phases' reproducibility alone would.
- ``frc``: ``Re Σ F₁ F₂* / sqrt(Σ|F₁|² Σ|F₂|²)`` per ring (van Heel, Ultramicroscopy 21, 95,
  1987) of two images already aligned (for example two half-set averages). For two halves
  of one retrieval, aligned to a shared reference and fitting the same data, it is a
  self-consistency measure, not an independent resolution estimate.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module, asnumpy
from ..errors import InvalidInputError
from .align import align_to
from .support import fft_module

__all__ = ["frc", "prtf", "ring_index"]


def ring_index(shape, n_bins: int, xp=np):
    """Ring number (0 … n_bins-1) of every pixel of a centred frame, and the ring centres.

    Returns
    -------
    index : int array, ``shape``
    q_fraction : numpy array, (n_bins,)
    """
    n_bins = int(n_bins)
    if n_bins < 1:
        raise InvalidInputError(f"the number of rings must be at least 1, got {n_bins}")
    fy = xp.fft.fftshift(xp.fft.fftfreq(shape[0]))[:, None]
    fx = xp.fft.fftshift(xp.fft.fftfreq(shape[1]))[None, :]
    q = xp.sqrt(fy**2 + fx**2)
    q /= q.max()
    index = xp.minimum((q * n_bins).astype(xp.int64), n_bins - 1)
    return index, (np.arange(n_bins) + 0.5) / n_bins


def _ring_sum(index, values, n_bins: int, xp):
    return xp.bincount(index.ravel(), weights=values.ravel(), minlength=n_bins)[:n_bins]


def _ring_ratio(num, den):
    num, den = asnumpy(num).astype(float), asnumpy(den).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _average(reconstructions, xp):
    if isinstance(reconstructions, (list, tuple)) or getattr(reconstructions, "ndim", 2) == 3:
        items = [xp.asarray(r) for r in reconstructions]
        if not items:
            raise InvalidInputError("give at least one reconstruction")
        ref = items[0]
        total = ref.astype(xp.complex128)
        for r in items[1:]:
            total = total + align_to(ref, r)
        return total / len(items)
    return xp.asarray(reconstructions)


def prtf(intensity, reconstructions, mask=None, n_bins: int = 50):
    """Phase retrieval transfer function against |q| / |q|max.

    Parameters
    ----------
    intensity : array, (rows, cols)
        The centred measured pattern.
    reconstructions : array (rows, cols), or a sequence / (n, rows, cols) stack
        One (averaged) reconstruction, or several that are aligned to the first and averaged.
    mask : bool array, optional
        True where a pixel is not measured; such pixels, non-finite ones and those with
        ``I <= 0`` are left out.
    n_bins : int
        Number of rings.

    Returns
    -------
    q_fraction, values : numpy arrays, (n_bins,)
    """
    xp = array_module(intensity, mask)
    i = xp.asarray(intensity, dtype=xp.float64)
    avg = _average(reconstructions, xp)
    if i.ndim != 2 or avg.shape != i.shape:
        raise InvalidInputError(f"the reconstruction's shape {tuple(avg.shape)} differs from "
                                f"the pattern's {tuple(i.shape)}")
    valid = xp.isfinite(i) & (i > 0)
    if mask is not None:
        valid &= ~xp.asarray(mask, dtype=bool)
    modulus = xp.abs(xp.fft.fftshift(fft_module(xp).fft2(avg)))
    ratio = xp.where(valid, modulus / xp.sqrt(xp.where(valid, i, 1.0)), 0.0)
    index, q = ring_index(i.shape, n_bins, xp)
    num = _ring_sum(index, ratio, n_bins, xp)
    den = _ring_sum(index, valid.astype(xp.float64), n_bins, xp)
    return q, _ring_ratio(num, den)


def frc(a, b, n_bins: int = 50):
    """Fourier ring correlation of two images against |q| / |q|max.

    Parameters
    ----------
    a, b : array, (rows, cols)
        Real or complex images of one shape, already aligned.
    n_bins : int

    Returns
    -------
    q_fraction, values : numpy arrays, (n_bins,)
    """
    xp = array_module(a, b)
    a, b = xp.asarray(a), xp.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise InvalidInputError(f"FRC needs two 2D images of one shape, got {tuple(a.shape)} "
                                f"and {tuple(b.shape)}")
    fft = fft_module(xp)
    fa = xp.fft.fftshift(fft.fft2(a.astype(xp.complex128)))
    fb = xp.fft.fftshift(fft.fft2(b.astype(xp.complex128)))
    index, q = ring_index(a.shape, n_bins, xp)
    cross = _ring_sum(index, (fa * xp.conj(fb)).real, n_bins, xp)
    pa = _ring_sum(index, xp.abs(fa) ** 2, n_bins, xp)
    pb = _ring_sum(index, xp.abs(fb) ** 2, n_bins, xp)
    return q, _ring_ratio(cross, np.sqrt(asnumpy(pa) * asnumpy(pb)))
