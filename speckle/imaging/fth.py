"""Fourier transform holography: centring, inversion, helicity difference, phase rotation.

Conventions (locked by tests/test_fth.py):

- A hologram is the far-field intensity ``|FFT(exit wave)|²`` recorded with the zero frequency
  at the hologram's centre (found by :func:`speckle.imaging.center.find_center`, ideally
  ``(rows // 2, cols // 2)``).
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
from .center import find_center  # the one centre finder; also imported from here

#: How :func:`~speckle.imaging.center.find_center` weighs a hologram: its weak fringes lead.
HOLOGRAM_WEIGHT = "log"

__all__ = [
    "CrossTerm",
    "FthReconstruction",
    "HOLOGRAM_WEIGHT",
    "apodization_window",
    "detect_cross_terms",
    "find_center",
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
        :func:`~speckle.imaging.center.find_center` with :data:`HOLOGRAM_WEIGHT`.
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
        center = find_center(h, weight=HOLOGRAM_WEIGHT)
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
    """A cross-term of a holographic reconstruction (an object-reference term).

    Attributes
    ----------
    row, col : float
        Centre of the region, pixels of the reconstruction: the centroid of its pixels above
        half its peak (for an object and a pinhole reference, the object's position relative to
        the reference, plus the frame's centre).
    box : (int, int, int, int)
        (row0, row1, col0, col1), half-open, enclosing the region.
    strength : float
        Sum of the (smoothed) magnitude over the region, above the background.
    twin : int or None
        Index, in the same list, of its twin (the point-inverted term), None if not found.
    """

    row: float
    col: float
    box: tuple[int, int, int, int]
    strength: float
    twin: int | None = None

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return {"row": float(self.row), "col": float(self.col), "box": list(self.box),
                "strength": float(self.strength), "twin": self.twin}

    @classmethod
    def from_dict(cls, d: dict) -> "CrossTerm":
        """The inverse of :meth:`to_dict`."""
        twin = d.get("twin")
        return cls(row=float(d["row"]), col=float(d["col"]),
                   box=tuple(int(v) for v in d["box"]), strength=float(d["strength"]),
                   twin=None if twin is None else int(twin))


def _ring_statistics(m, centre):
    """Median and robust spread of ``m`` over rings of 1 pixel about ``centre``, per pixel.

    Returns ``(median_profile, median_map, spread_map, radius_map)``: the profile indexed by
    the ring (the radius rounded down), and the ring's median and spread at every pixel.
    """
    rows, cols = m.shape
    radius = np.hypot(np.arange(rows)[:, None] - centre[0], np.arange(cols)[None, :] - centre[1])
    ring = radius.astype(np.int64).ravel()
    order = np.argsort(ring, kind="stable")
    values = m.ravel()[order]
    bounds = np.searchsorted(ring[order], np.arange(ring.max() + 2))
    median = np.full(bounds.size - 1, np.nan)
    spread = np.full(bounds.size - 1, np.nan)
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if b > a:
            median[k] = np.median(values[a:b])
            spread[k] = 1.4826 * np.median(np.abs(values[a:b] - median[k]))
    # neighbouring rings share their spread: a ring of a few pixels has no spread of its own
    spread = np.convolve(np.nan_to_num(spread), np.ones(5) / 5, mode="same")
    return median, median[ring].reshape(m.shape), spread[ring].reshape(m.shape), radius


def _central_radius(m, centre, edge) -> float:
    """Radius of the central term: its connected region above Otsu's level of ``log(m)``.

    In logarithm the terms and the empty field between them form two classes
    (:func:`speckle.imaging.support.autocorrelation_level`); at the level between them the
    central term is the region around the centre (cross-terms lie apart from it).
    """
    from scipy import ndimage  # noqa: PLC0415

    from .support import autocorrelation_level  # noqa: PLC0415 - support imports conditioning

    top = float(m[centre])
    if not top > 0:
        return float(edge)
    labels, _ = ndimage.label(m >= autocorrelation_level(m / top) * top)
    rr, cc = np.nonzero(labels == labels[centre])
    return float(min(np.hypot(rr - centre[0], cc - centre[1]).max(), edge))


#: A cross-term lies apart from the central term: on the way from the centre to its peak the
#: magnitude (smoothed over the noise only; the wider blur that gathers a term would close the
#: gap) falls below this fraction of the peak. A faint tip of the central term does not: it
#: falls all the way to its end.
GAP = 0.5


def _apart(m, centre, peak) -> bool:
    """Whether the map dips below :data:`GAP` of its value at ``peak`` on the straight way
    from the centre to it."""
    steps = int(math.ceil(math.hypot(peak[0] - centre[0], peak[1] - centre[1])))
    if steps < 2:
        return False
    t = np.linspace(0.0, 1.0, steps + 1)
    rows = np.rint(centre[0] + t * (peak[0] - centre[0])).astype(np.int64)
    cols = np.rint(centre[1] + t * (peak[1] - centre[1])).astype(np.int64)
    return float(m[rows, cols].min()) < GAP * float(m[peak])


def _outline_centre(excess, peak, region, blur):
    """The middle of a cross-term's outline, or ``peak`` when it has none.

    ``excess`` is the lightly smoothed magnitude over its ring's median. Around the blurred
    peak, the term is its pixels above a quarter of the local maximum, holes filled (an
    object's outline, whatever its texture); its centroid is taken when it lies near the peak
    (missing low frequencies leave only broken edges, whose centroid is not to be trusted).
    """
    from scipy import ndimage  # noqa: PLC0415

    pad = int(math.ceil(2 * blur))
    rows, cols = excess.shape
    r0, r1 = max(region[0].start - pad, 0), min(region[0].stop + pad, rows)
    c0, c1 = max(region[1].start - pad, 0), min(region[1].stop + pad, cols)
    patch = excess[r0:r1, c0:c1]
    top = float(patch.max())
    if not top > 0:
        return float(peak[0]), float(peak[1])
    labels, _ = ndimage.label(patch > 0.25 * top)
    label = labels[min(peak[0] - r0, r1 - r0 - 1), min(peak[1] - c0, c1 - c0 - 1)]
    if label == 0:
        label = labels.flat[int(np.argmax(patch))]
    rr, cc = np.nonzero(ndimage.binary_fill_holes(labels == label))
    row, col = float(rr.mean() + r0), float(cc.mean() + c0)
    if math.hypot(row - peak[0], col - peak[1]) > 2 * blur:
        return float(peak[0]), float(peak[1])
    return row, col


def detect_cross_terms(reconstruction, *, min_pixels: int = 16, smoothing: float = 3.0,
                       relative: float = 0.15, snr: float = 6.0) -> list[CrossTerm]:
    """Locate the cross-terms of a centred holographic reconstruction.

    The magnitude is smoothed over ``smoothing`` pixels. The central autocorrelation (the
    object's and the references' own terms) is bright about the centre; its extent is that of
    its connected region above the level that splits the logarithm of the magnitude into terms
    and empty field (Otsu's), plus a margin of 2 smoothing widths. Outside it, every pixel is compared with its own ring: its
    excess over the ring's median, in units of the ring's robust spread, picks out what is not
    round about the centre (the halo of the central term is). A cross-term is a connected region
    of at least ``snr`` spreads and ``relative`` of the largest excess outside the centre. Its
    position is the centroid of the region (holes filled), which for an object with a pinhole
    reference is the middle of the object's outline, whatever its texture (within 2 pixels on simulated holograms with 1-3 pixel
    pinholes, absorbing and phase objects). A real hologram's reconstruction is
    point-symmetric in magnitude, so every term has a twin; twins are matched by position
    (within 3 pixels).

    Detector data with a beamstop ring all over a plain reconstruction: give
    :func:`speckle.imaging.support.autocorrelation_map` of the pattern instead (what
    :func:`speckle.imaging.workflow.find_cross_terms` does).

    Parameters
    ----------
    reconstruction : complex array, (rows, cols)
        Centred reconstruction (numpy or cupy), e.g. :attr:`FthReconstruction.image`.
    min_pixels : int
        Smaller regions are ignored (noise).
    smoothing : float
        Gaussian sigma in pixels (0: none).
    relative : float
        Fraction of the largest excess outside the centre a region must exceed (weaker
        reference-reference terms fall below it when the object-reference terms are bright).
    snr : float
        Ring spreads above the ring's median a region must exceed.

    Returns
    -------
    list of CrossTerm
        Strongest first; empty when nothing stands out outside the central autocorrelation.
    """
    from scipy import ndimage  # noqa: PLC0415 - only this function needs it

    m = np.abs(np.asarray(asnumpy(reconstruction))).astype(np.float64)
    if m.ndim != 2:
        raise InvalidInputError(f"the reconstruction must be 2D, got shape {m.shape}")
    if not 0 < relative < 1:
        raise InvalidInputError(f"relative must be between 0 and 1, got {relative}")
    raw = m
    m = ndimage.gaussian_filter(raw, smoothing, mode="wrap") if smoothing > 0 else raw
    sharp = m  # smoothed over the noise only: the gap between terms shows
    rows, cols = m.shape
    centre = (rows // 2, cols // 2)
    edge = min(rows, cols) // 2
    r_central = _central_radius(m, centre, edge) + 2 * max(smoothing, 1.0)
    # the central term spans twice the object: blur over about half the object's radius, so
    # that a cross-term (the object's image, edges only when low frequencies are missing)
    # becomes one blob whose peak lies at its middle
    blur = max(smoothing, r_central / 8)
    fine = m - _ring_statistics(m, centre)[1]
    if blur > smoothing:
        m = ndimage.gaussian_filter(raw, blur, mode="wrap")
    _, ring_median, ring_spread, radius = _ring_statistics(m, centre)
    # the corners hold too few of a ring's pixels; terms at the frame's edge would alias
    outside = (radius > r_central) & (radius < 0.9 * edge)
    if outside.sum() < 16:
        return []
    excess = m - ring_median
    tiny = 1e-12 * float(m.max())
    score = excess / np.maximum(ring_spread, tiny)
    largest = float(excess[outside].max())
    if not largest > 0:
        return []
    candidates = outside & (score > snr) & (excess > relative * largest)
    # the central term spans O − O, twice the object O; a cross-term with a small reference is
    # a copy of O. Correlating the excess with (O − O) / 2 (the central region at half size)
    # gathers all of a term, edges and texture alike, into one peak at its middle
    central = radius <= r_central - 2 * max(smoothing, 1.0)
    rr, cc = np.nonzero(central)
    half = np.zeros_like(m)
    half[(rr - centre[0]) // 2, (cc - centre[1]) // 2] = 1.0  # about index 0: FFT order
    weight_all = np.where(outside, np.maximum(excess, 0.0), 0.0)
    matched = np.fft.irfft2(np.fft.rfft2(weight_all) * np.conj(np.fft.rfft2(half)), s=m.shape)
    labels, _ = ndimage.label(candidates)
    found = []
    for k, region in enumerate(ndimage.find_objects(labels), start=1):
        inside = labels[region] == k
        if inside.sum() < min_pixels:
            continue
        weight = np.where(inside, excess[region], 0.0)
        local = np.where(inside, matched[region], -np.inf)
        pr, pc = np.unravel_index(int(np.argmax(local)), local.shape)
        peak = (pr + region[0].start, pc + region[1].start)
        row, col = _outline_centre(fine, peak, region, blur)
        if math.hypot(row - centre[0], col - centre[1]) <= r_central:
            continue  # a ring of the central term, not a term of its own
        if not _apart(sharp, centre, peak):
            continue  # a faint tip of the central term, joined to it
        found.append(dict(row=row, col=col,
                          box=(region[0].start, region[0].stop, region[1].start,
                               region[1].stop),
                          strength=float(weight.sum())))
    found.sort(key=lambda t: -t["strength"])
    terms = []
    for i, t in enumerate(found):
        mirror = (2 * centre[0] - t["row"], 2 * centre[1] - t["col"])
        twins = [j for j, u in enumerate(found) if j != i and
                 math.hypot(u["row"] - mirror[0], u["col"] - mirror[1]) <= 3.0]
        terms.append(CrossTerm(**t, twin=twins[0] if twins else None))
    return terms
