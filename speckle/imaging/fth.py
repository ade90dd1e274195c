"""Fourier transform holography: centring, inversion, helicity difference, phase rotation.

Conventions (locked by tests/test_fth.py):

- A hologram is the far-field intensity ``|FFT(exit wave)|²`` recorded with the zero frequency
  at the hologram's centre (found by :func:`find_center`, ideally ``(rows // 2, cols // 2)``).
- :func:`reconstruct` applies the *inverse* FFT, so the reconstruction is the exit wave's
  autocorrelation ``R(x) = Σ_y e(y) e*(y - x)``, centred at ``(rows // 2, cols // 2)``. An object
  ``o`` at position ``p_o`` and a reference ``r`` at ``p_r`` give the cross-term ``o ⋆ r`` at
  ``p_o - p_r`` (upright, not conjugated) and its twin, conjugated and point-inverted, at
  ``p_r - p_o``. With several references every one gives its own pair of cross-terms.
- A sub-pixel centre is applied exactly as a phase ramp on the reconstruction (the Fourier
  shift theorem), not by interpolating the hologram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import array_module, asnumpy
from ..errors import InvalidInputError

__all__ = [
    "CrossTerm",
    "FthReconstruction",
    "apodization_window",
    "find_center",
    "find_cross_terms",
    "helicity_difference",
    "reconstruct",
    "rotate_phase_to_real",
]


def _hologram(hologram, xp=None, name="hologram"):
    """The hologram as a real float 2D array of ``xp`` (default: its own module)."""
    xp = xp or array_module(hologram)
    if array_module(hologram) is not xp:  # numpy -> cupy or back
        hologram = xp.asarray(asnumpy(hologram))
    h = xp.asarray(hologram)
    if h.ndim != 2:
        raise InvalidInputError(f"the {name} must be one 2D image, got shape {h.shape}")
    if min(h.shape) < 4:
        raise InvalidInputError(f"the {name} of shape {h.shape} is too small to invert")
    if h.dtype.kind == "c":
        raise InvalidInputError(f"the {name} must be a real intensity, not complex")
    if h.dtype.kind not in "biuf":
        raise InvalidInputError(f"the {name} must hold numbers, not {h.dtype}")
    h = h.astype(np.float64 if h.dtype.itemsize > 4 or h.dtype.kind in "iu" else np.float32)
    finite = xp.isfinite(h)
    if not bool(finite.all()):
        if not bool(finite.any()):
            raise InvalidInputError(f"the {name} has no finite value")
        h = xp.where(finite, h, 0)  # missing pixels (NaN) count as unmeasured: zero
    return h, xp


def _parabolic(m, c, p) -> float:
    """Sub-pixel offset of a peak from three samples (minus, centre, plus)."""
    den = m - 2 * c + p
    if not den < 0:  # flat or not a maximum: keep the integer position
        return 0.0
    return float(np.clip(0.5 * (m - p) / den, -0.5, 0.5))


def find_center(hologram) -> tuple[float, float]:
    """Centre of a hologram, from its cross-correlation with its 180°-rotated copy.

    A pattern point-symmetric about ``c`` matches its rotated copy best when shifted by ``2c``:
    the autoconvolution ``h * h`` (the correlation with the rotated copy) peaks at ``2c``. The
    peak is refined to sub-pixel precision by a parabola through its neighbours along each axis.

    Parameters
    ----------
    hologram : array, (rows, cols)
        Real intensity, numpy or cupy. Non-finite pixels are ignored (set to zero).

    Returns
    -------
    (float, float)
        (row, col) in pixels, in the middle half of the image (a centre closer to an edge than a
        quarter of the size cannot be told from its alias).

    Notes
    -----
    The logarithm ``log(1 + I / median(I))`` of the (non-negative) intensity is correlated, so
    that the bright centre does not outweigh the speckle that carries the symmetry. Holograms of
    objects with phase contrast are not exactly point-symmetric (``|F(q)| ≠ |F(-q)|``); on
    simulated ones the centre was still found within 0.1 pixel.
    """
    h, xp = _hologram(hologram)
    h = xp.maximum(h, 0)
    positive = h[h > 0]
    if positive.size == 0:
        raise InvalidInputError("the hologram has no positive intensity; nothing to centre")
    a = xp.log1p(h / float(xp.median(positive)))
    a = a - a.mean()
    spec = xp.fft.rfft2(a)
    conv = xp.fft.irfft2(spec * spec, s=a.shape)  # h * h; peaks at 2c (mod the shape)
    rows, cols = a.shape
    flat = int(xp.argmax(conv))
    pr, pc = divmod(flat, cols)
    conv = asnumpy(conv)
    dr = _parabolic(conv[(pr - 1) % rows, pc], conv[pr, pc], conv[(pr + 1) % rows, pc])
    dc = _parabolic(conv[pr, (pc - 1) % cols], conv[pr, pc], conv[pr, (pc + 1) % cols])
    centre = []
    for p, d, n in ((pr, dr, rows), (pc, dc, cols)):
        c = (p + d) / 2  # c and c + n/2 both fit; keep the one in the middle half
        if not n / 4 <= c < 3 * n / 4:
            c += n / 2
        if c >= 3 * n / 4:
            c -= n
        centre.append(float(c))
    return centre[0], centre[1]


def apodization_window(shape, center, apodization: float, xp=np):
    """Radial window: 1 inside, a cos² edge over ``apodization`` of the half-size, 0 beyond.

    Parameters
    ----------
    shape : (rows, cols)
    center : (float, float)
        Centre of the window (row, col), pixels.
    apodization : float
        Width of the edge as a fraction of the half-size, in (0, 1].
    xp : module
        numpy or cupy.

    Returns
    -------
    float array, ``shape``
    """
    rows, cols = shape
    r = xp.arange(rows, dtype=np.float64)[:, None] - center[0]
    c = xp.arange(cols, dtype=np.float64)[None, :] - center[1]
    rho = xp.sqrt((r / (rows / 2)) ** 2 + (c / (cols / 2)) ** 2)  # 1 at the edge's middle
    t = xp.clip((rho - (1 - apodization)) / apodization, 0, 1)
    return xp.cos(t * (np.pi / 2)) ** 2


@dataclass
class FthReconstruction:
    """The result of :func:`reconstruct`.

    Attributes
    ----------
    image : numpy.ndarray
        Complex reconstruction, centred at ``(rows // 2, cols // 2)``.
    center : (float, float)
        The hologram centre used (row, col), pixels.
    apodization : float
        The window's edge width as a fraction of the half-size (0: none).
    """

    image: np.ndarray
    center: tuple[float, float]
    apodization: float


def reconstruct(hologram, *, center=None, apodization: float = 0.0,
                xp=None) -> FthReconstruction:
    """Invert a Fourier transform hologram to its complex, centred reconstruction.

    Parameters
    ----------
    hologram : array, (rows, cols)
        Real intensity, numpy or cupy; NaN pixels count as unmeasured (zero).
    center : (float, float), optional
        Zero frequency of the hologram (row, col), sub-pixel allowed; default
        :func:`find_center`.
    apodization : float
        Width of a smooth (cos²) radial edge window about ``center``, as a fraction of the
        half-size (0 = no window, 1 = the window falls from the centre on). Softens the edge of
        the recorded pattern, which otherwise rings in the reconstruction.
    xp : module, optional
        numpy or cupy to compute with (default: the hologram's own).

    Returns
    -------
    FthReconstruction
    """
    h, xp = _hologram(hologram, xp)
    try:
        apodization = float(apodization)
    except (TypeError, ValueError):
        raise InvalidInputError(f"the apodization must be a number, got {apodization!r}") \
            from None
    if not 0 <= apodization <= 1:
        raise InvalidInputError(f"the apodization must be between 0 and 1 (a fraction of the "
                                f"half-size), got {apodization}")
    rows, cols = h.shape
    if center is None:
        center = find_center(h)
    try:
        cr, cc = (float(v) for v in center)
    except (TypeError, ValueError):
        raise InvalidInputError(f"cannot read the centre {center!r}: give (row, col)") from None
    if not (0 <= cr <= rows - 1 and 0 <= cc <= cols - 1):
        raise InvalidInputError(f"the centre ({cr:g}, {cc:g}) lies outside the {rows} × {cols} "
                                "hologram")
    if apodization > 0:
        h = h * apodization_window(h.shape, (cr, cc), apodization, xp)
    rec = xp.fft.fftshift(xp.fft.ifft2(h))
    # sample (i, j) of the hologram is the frequency (i - cr, j - cc): the centre's offset is a
    # phase ramp exp(-2πi (cr y / rows + cc x / cols)) over the centred coordinates (y, x)
    y = xp.arange(rows, dtype=np.float64) - rows // 2
    x = xp.arange(cols, dtype=np.float64) - cols // 2
    rec *= xp.exp(-2j * np.pi * cr * y / rows)[:, None]
    rec *= xp.exp(-2j * np.pi * cc * x / cols)[None, :]
    return FthReconstruction(image=asnumpy(rec), center=(cr, cc), apodization=apodization)


def helicity_difference(positive, negative, factor: float | None = None):
    """Magnetic (XMCD) hologram ``positive − f·(positive + negative)``.

    Parameters
    ----------
    positive, negative : array, (rows, cols)
        Holograms recorded with opposite helicities (or opposite fields), numpy or cupy.
    factor : float, optional
        ``f``. By default ``sum(positive) / sum(positive + negative)``, which cancels the total
        (charge) intensity so that only the helicity-dependent part remains; 0.5 gives
        ``(positive − negative) / 2``.

    Returns
    -------
    array
        Same array module as ``positive``.
    """
    pos, xp = _hologram(positive, name="positive-helicity hologram")
    neg, _ = _hologram(negative, xp, name="negative-helicity hologram")
    if pos.shape != neg.shape:
        raise InvalidInputError(f"the two helicities have different shapes {pos.shape} and "
                                f"{neg.shape}; give holograms of the same detector region")
    total = pos + neg
    if factor is None:
        norm = float(total.sum())
        if norm == 0:
            raise InvalidInputError("the two holograms sum to zero; cannot normalise them")
        factor = float(pos.sum()) / norm
    elif not math.isfinite(float(factor)):
        raise InvalidInputError(f"the helicity factor must be finite, got {factor}")
    return pos - float(factor) * total


def _region_values(image, region, xp):
    if region is None:
        return image.ravel()
    if isinstance(region, (tuple, list)) and len(region) == 4:
        r0, r1, c0, c1 = (int(v) for v in region)
        values = image[r0:r1, c0:c1]
    else:
        mask = xp.asarray(region)
        if mask.dtype != bool or mask.shape != image.shape:
            raise InvalidInputError("the region must be (row0, row1, col0, col1) or a boolean "
                                    f"mask of the image's shape {image.shape}")
        values = image[mask]
    if values.size == 0:
        raise InvalidInputError(f"the region {region if isinstance(region, (tuple, list)) else ''}"
                                " selects no pixel of the image")
    return values.ravel()


def rotate_phase_to_real(image, region=None):
    """Rotate the global phase so that the contrast lies in the real part.

    The phase ``φ`` is the principal axis of the complex values: ``φ = arg(Σ z²) / 2``, which
    maximises ``Σ Re(z e^{-iφ})²``; of the two opposite choices, the one giving a non-negative
    ``Σ Re`` is kept. For an XMCD difference reconstruction whose values are ``±m e^{iφ₀}``,
    the rotated image is ``±m``: the magnetic contrast, real.

    Parameters
    ----------
    image : complex array
        numpy or cupy.
    region : (row0, row1, col0, col1) or bool array, optional
        Pixels that define the phase (half-open rows and columns, or a mask); default all.

    Returns
    -------
    rotated : complex array
        ``image · exp(-iφ)``, same array module.
    phi : float
        radians, in (-π, π].
    """
    xp = array_module(image)
    image = xp.asarray(image)
    if image.ndim != 2:
        raise InvalidInputError(f"the image must be 2D, got shape {image.shape}")
    z = _region_values(image, region, xp).astype(np.complex128)
    s2 = complex(asnumpy((z * z).sum()))
    phi = 0.5 * math.atan2(s2.imag, s2.real)
    if float((z * np.exp(-1j * phi)).real.sum()) < 0:
        phi += math.pi
    phi = math.remainder(phi, 2 * math.pi)
    if phi == -math.pi:
        phi = math.pi
    return image * np.exp(-1j * phi), phi


@dataclass(frozen=True)
class CrossTerm:
    """A bright region of a reconstruction away from its centre (an object-reference term).

    Attributes
    ----------
    row, col : float
        Magnitude-weighted centroid, pixels.
    box : (int, int, int, int)
        (row0, row1, col0, col1), half-open, enclosing the region.
    strength : float
        Sum of the (smoothed) magnitude over the region.
    """

    row: float
    col: float
    box: tuple[int, int, int, int]
    strength: float


def find_cross_terms(image, *, threshold: float = 0.1, min_pixels: int = 9,
                     smoothing: float = 2.0) -> list[CrossTerm]:
    """Locate the cross-terms of an FTH reconstruction (for a first region to look at).

    The magnitude is smoothed. Going up from the noise level (median + 5 robust standard
    deviations) in geometric steps, the first level at which something besides the connected
    region around the centre (the autocorrelation) stands out separates the cross-terms; they
    are then outlined at ``threshold`` of the way from the background to the brightest of them.

    Parameters
    ----------
    image : complex array, (rows, cols)
        Centred reconstruction (numpy or cupy).
    threshold : float
        Fraction of the way from the background to the brightest cross-term pixel.
    min_pixels : int
        Smaller regions are ignored (noise).
    smoothing : float
        Gaussian sigma in pixels.

    Returns
    -------
    list of CrossTerm
        Strongest first; twins (point-symmetric about the centre) are both listed. Empty when
        nothing stands out from the centre.
    """
    from scipy import ndimage  # noqa: PLC0415 - only this helper needs it

    m = np.abs(asnumpy(image)).astype(np.float64)
    if m.ndim != 2:
        raise InvalidInputError(f"the image must be 2D, got shape {m.shape}")
    if not 0 < threshold < 1:
        raise InvalidInputError(f"the threshold must be between 0 and 1, got {threshold}")
    m = ndimage.gaussian_filter(m, smoothing) if smoothing > 0 else m
    centre = (m.shape[0] // 2, m.shape[1] // 2)
    background, top = float(np.median(m)), float(m.max())
    noise = 5 * 1.4826 * float(np.median(np.abs(m - background)))
    if not top > background + noise:
        return []

    def regions(level):
        labels, _ = ndimage.label(m > level)
        outside = labels != labels[centre] if labels[centre] else labels > 0
        labels[~outside] = 0
        sizes = np.bincount(labels.ravel())
        keep = np.flatnonzero(sizes >= min_pixels)
        return labels, keep[keep > 0]

    span = top - background - noise
    for fraction in np.geomspace(1e-4, 0.5, 40):
        level = background + noise + fraction * span
        labels, keep = regions(level)
        if keep.size:
            break
    else:
        return []
    peak = float(m[np.isin(labels, keep)].max())
    labels, keep = regions(max(level, background + threshold * (peak - background)))
    terms = []
    for k in keep:
        rr, cc = np.nonzero(labels == k)
        w = m[rr, cc]
        total = float(w.sum())
        terms.append(CrossTerm(row=float((w * rr).sum() / total),
                               col=float((w * cc).sum() / total),
                               box=(int(rr.min()), int(rr.max()) + 1, int(cc.min()),
                                    int(cc.max()) + 1),
                               strength=total))
    return sorted(terms, key=lambda t: -t.strength)
