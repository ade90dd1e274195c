"""Detector-data conditioning before FTH or CDI: dark, hot pixels, dust, exposures, centre, binning.

Every function takes numpy or cupy arrays and returns arrays of the same module (see
:func:`speckle.backend.array_module`); images come out as float64. Masks are boolean arrays
with True marking a bad (unmeasured, unusable) pixel; non-finite pixels (NaN, ±inf) count as bad
too.

A typical chain::

    long, short = subtract_dark(long_raw, dark_long), subtract_dark(short_raw, dark_short)
    merged, missing = merge_exposures([long, short], [10.0, 0.1], saturation=60000 - 500)
    merged, hot = remove_hot_pixels(merged, mask=missing)
    merged = remove_dust(merged, dust_mask)
    pattern, centre = center_pattern(merged, mask=missing)
    pattern = bin_image(pattern, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..backend import array_module
from ..errors import InvalidInputError
from .center import find_center

__all__ = [
    "bin_image",
    "center_pattern",
    "merge_exposures",
    "remove_dust",
    "remove_hot_pixels",
    "shift_image",
    "background_level",
    "subtract_background",
    "subtract_dark",
]

_LOW_FRACTION = 0.8  # robust scale: mean of the lowest 80 % of absolute residuals...
_LOW_MEAN_TO_SIGMA = 1.0 / 0.5586  # ...is 0.5586 σ for normal residuals
_VAR_WITHIN_3_SIGMA = 0.9733  # variance of a normal distribution truncated at ±3σ, in σ²
_WINDOW_BLOCK = 1 << 22  # elements per block when stacking sliding windows (bounds memory)


# -- checks ----------------------------------------------------------------------------------

def _image(image, name: str = "image", *, stack: bool = False):
    """``image`` as a float64 array of its own module, checked to be a 2D (or 3D) real array."""
    xp = array_module(image)
    a = xp.asarray(image)
    if a.dtype.kind == "c":
        raise InvalidInputError(f"the {name} must be real detector counts, got complex values")
    if a.dtype.kind not in "biuf":
        raise InvalidInputError(f"the {name} must hold numbers, got data of type {a.dtype}")
    ndims = (2, 3) if stack else (2,)
    if a.ndim not in ndims or 0 in a.shape:
        what = "a 2D image or a stack of them" if stack else "a 2D image"
        raise InvalidInputError(f"the {name} must be {what}, got an array of shape {a.shape}")
    return xp, a.astype(np.float64)


def _mask(mask, shape, xp, name: str = "mask"):
    """A boolean mask of ``shape`` (all False when None)."""
    if mask is None:
        return xp.zeros(shape, dtype=bool)
    m = xp.asarray(mask)
    if m.shape != tuple(shape):
        raise InvalidInputError(f"the {name} has shape {m.shape} but the image has shape "
                                f"{tuple(shape)}; give a mask of the image's shape")
    if m.dtype.kind != "b":
        if m.dtype.kind not in "iuf":
            raise InvalidInputError(f"the {name} must be boolean (True = bad pixel), got "
                                    f"{m.dtype}")
        m = m != 0
    return m


def _positive(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return v


def _floats(values, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be numbers, got {values!r}") from None


def _odd_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3 \
            or size % 2 == 0:
        raise InvalidInputError(f"the window size must be an odd whole number ≥ 3, got {size!r}")
    return int(size)


# -- window helpers (pure array code, so that cupy runs them too) ----------------------------

def _window_stat(a, size: int, stat: str = "median", *, exclude_center: bool = False):
    """A statistic of the finite values in each ``size`` × ``size`` window (NaN where none).

    ``stat`` is ``"median"`` or ``"low_mean"``: the mean of the lowest 80 % of the values (a
    smooth, outlier-proof scale estimate for absolute residuals, unlike a median of integer
    counts, which is quantised). Pixels outside the image count as missing, so edge pixels use
    the part of the window inside. Sorting puts NaN last (numpy and cupy alike), so the ``n``
    finite values of a window come first. ``exclude_center`` leaves each window's own pixel out.
    """
    xp = array_module(a)
    h = size // 2
    offsets = [(dy, dx) for dy in range(size) for dx in range(size)
               if not (exclude_center and dy == h and dx == h)]
    rows, cols = a.shape
    padded = xp.pad(xp.where(xp.isfinite(a), a, xp.nan), h, mode="constant",
                    constant_values=np.nan)
    out = xp.empty((rows, cols), dtype=np.float64)
    block = max(1, _WINDOW_BLOCK // (cols * len(offsets)))
    for r0 in range(0, rows, block):
        r1 = min(rows, r0 + block)
        windows = xp.stack([padded[r0 + dy:r1 + dy, dx:dx + cols] for dy, dx in offsets],
                           axis=-1)
        n = xp.isfinite(windows).sum(axis=-1)
        windows = xp.sort(windows, axis=-1)
        if stat == "median":
            lo = xp.maximum((n - 1) // 2, 0)[..., None]
            value = 0.5 * (xp.take_along_axis(windows, lo, axis=-1)[..., 0]
                           + xp.take_along_axis(windows, (n // 2)[..., None], axis=-1)[..., 0])
        else:
            k = xp.maximum(xp.ceil(_LOW_FRACTION * n).astype(np.int64), 1)
            cums = xp.cumsum(xp.where(xp.isfinite(windows), windows, 0.0), axis=-1)
            value = xp.take_along_axis(cums, (k - 1)[..., None], axis=-1)[..., 0] / k
        out[r0:r1] = xp.where(n > 0, value, xp.nan)
    return out


def _low_mean_sigma(abs_values) -> float:
    """σ of normal residuals from the mean of the lowest 80 % of their absolute values."""
    xp = array_module(abs_values)
    v = xp.sort(abs_values[xp.isfinite(abs_values)])
    if v.size == 0:
        return float("nan")
    k = max(1, int(np.ceil(_LOW_FRACTION * v.size)))
    return _LOW_MEAN_TO_SIGMA * float(v[:k].mean())


def _dilate(mask, radius: int):
    """Grow a boolean mask by ``radius`` pixels (square neighbourhood)."""
    if radius <= 0:
        return mask
    xp = array_module(mask)
    rows, cols = mask.shape
    padded = xp.pad(mask, radius, mode="constant", constant_values=False)
    out = xp.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + rows, dx:dx + cols]
    return out


def _padded_shape(shape, sigma: float) -> tuple[int, int]:
    """FFT grid for a Gaussian convolution: zero padding of 5σ keeps opposite edges apart."""
    pad = int(min(np.ceil(5 * sigma), max(shape)))
    return (shape[0] + pad, shape[1] + pad)


def _convolve(xp, a, kernel_ft, shape):
    """``a`` convolved (zero padded onto ``shape``) with a kernel given by its rfft2."""
    rows, cols = a.shape
    return xp.fft.irfft2(xp.fft.rfft2(a, s=shape) * kernel_ft, s=shape)[:rows, :cols]


def _gaussian_blur(a, sigma: float):
    """Convolve with a normalised Gaussian of ``sigma`` pixels; outside the image counts as 0."""
    xp = array_module(a)
    shape = _padded_shape(a.shape, sigma)
    fy = xp.fft.fftfreq(shape[0])[:, None]
    fx = xp.fft.rfftfreq(shape[1])[None, :]
    return _convolve(xp, a, xp.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2)), shape)


def _local_linear_fit(values, weight, sigma: float):
    """Value at each pixel of the weighted least-squares plane through its neighbours.

    Gaussian weights of width ``sigma`` times ``weight`` (0 at bad pixels) — normalised
    convolution of order 1 (Knutsson & Westin 1993). Returns ``(fit, support, well_posed)``:
    ``support`` is
    the Gaussian weight of the good neighbours (1 for a complete neighbourhood), ``well_posed``
    is False where the good neighbours do not pin down a plane (they lie on a line, or far off
    on one side): there ``fit`` is the weighted mean (order 0).
    """
    xp = array_module(values)
    shape = _padded_shape(values.shape, sigma)
    ey = (xp.fft.fftfreq(shape[0]) * shape[0])[:, None]  # signed offsets, FFT order
    ex = (xp.fft.fftfreq(shape[1]) * shape[1])[None, :]
    g = xp.exp(-(ey**2 + ex**2) / (2 * sigma**2))
    g /= g.sum()
    # convolution with k(e) sums over neighbours q of p with e = p - q, so the kernels of the
    # moments of (q - p) carry a minus sign on odd powers
    kernels = {"0": g, "y": -ey * g, "x": -ex * g, "yy": ey**2 * g, "xx": ex**2 * g,
               "xy": ey * ex * g}
    kft = {k: xp.fft.rfft2(v) for k, v in kernels.items()}
    S = {k: _convolve(xp, weight, v, shape) for k, v in kft.items()}
    wf = weight * values
    F0, Fy, Fx = (_convolve(xp, wf, kft[k], shape) for k in ("0", "y", "x"))
    c_yy_xx = S["yy"] * S["xx"] - S["xy"] ** 2
    c_y_xx = S["y"] * S["xx"] - S["xy"] * S["x"]
    c_y_xy = S["y"] * S["xy"] - S["yy"] * S["x"]
    det = S["0"] * c_yy_xx - S["y"] * c_y_xx + S["x"] * c_y_xy
    num = F0 * c_yy_xx - S["y"] * (Fy * S["xx"] - S["xy"] * Fx) + S["x"] * (Fy * S["xy"]
                                                                          - S["yy"] * Fx)
    with np.errstate(invalid="ignore", divide="ignore"):
        # det / (S0·Syy·Sxx) is 1 for a full neighbourhood, ~0.36 for a half plane, 0 on a line
        well_posed = det > 0.05 * S["0"] * S["yy"] * S["xx"]
        fit = xp.where(well_posed, num / xp.where(well_posed, det, 1.0),
                       F0 / xp.where(S["0"] > 0, S["0"], 1.0))
    return fit, S["0"], well_posed


# -- dark --------------------------------------------------------------------------------------

def subtract_dark(image, dark, scale: float = 1.0, *, clip: bool = False):
    """Subtract a dark (background) frame: ``image - scale × dark``.

    Parameters
    ----------
    image : array, (rows, cols) or (frames, rows, cols)
    dark : array, (rows, cols)
        The dark frame (e.g. the mean of frames taken with the shutter closed).
    scale : float
        Factor applied to the dark, e.g. the ratio of exposure times when the dark was taken
        with another exposure; ≥ 0.
    clip : bool
        Set negative results to 0 (noise in dark regions otherwise goes below zero).

    Returns
    -------
    array
        float64, same shape and module as ``image``.

    Raises
    ------
    InvalidInputError
        When the shapes differ or ``scale`` is negative or not finite.
    """
    xp, a = _image(image, stack=True)
    _, d = _image(dark, "dark")
    if d.shape != a.shape[-2:]:
        raise InvalidInputError(f"the dark has shape {d.shape} but the image frames have shape "
                                f"{a.shape[-2:]}; give a dark taken with the same detector "
                                "region")
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise InvalidInputError(f"the dark scale must be a number, got {scale!r}") from None
    if not np.isfinite(s) or s < 0:
        raise InvalidInputError(f"the dark scale must be a finite number ≥ 0, got {scale!r}")
    out = a - s * xp.asarray(d)
    if clip:
        out = xp.maximum(out, 0.0)  # NaN stays NaN
    return out


# -- hot pixels ----------------------------------------------------------------------------

def background_level(image, spec, *, mask=None) -> float:
    """A constant background (pedestal) for an image: a number, or ``"pN"`` its N-th percentile.

    Parameters
    ----------
    image : array, (rows, cols)
    spec : float or str
        A number (counts), or text: a number, or ``p`` and a percentile in [0, 100] (``"p1"``:
        the value that 1 % of the measured, finite pixels lie below).
    mask : bool array, optional
        True where a pixel is not measured (left out of the percentile).

    Returns
    -------
    float

    Raises
    ------
    InvalidInputError
        For text that is neither, or no finite measured pixel to take a percentile of.
    """
    text = str(spec).strip().lower()
    hint = "give a number of counts (e.g. 390) or a percentile like p1"
    if text.startswith("p"):
        try:
            percent = float(text[1:])
        except ValueError:
            raise InvalidInputError(f"cannot read the background {spec!r}: {hint}") from None
        if not 0 <= percent <= 100:
            raise InvalidInputError(f"the background percentile {spec!r} must be between p0 "
                                    "and p100")
        xp, a = _image(image)
        valid = xp.isfinite(a)
        if mask is not None:
            valid &= ~_mask(mask, a.shape, xp)
        if not bool(valid.any()):
            raise InvalidInputError("the image has no finite measured pixel to take the "
                                    "background percentile of")
        return float(xp.percentile(a[valid], percent))
    try:
        level = float(text)
    except ValueError:
        raise InvalidInputError(f"cannot read the background {spec!r}: {hint}") from None
    if not np.isfinite(level):
        raise InvalidInputError(f"the background must be a finite number, got {spec!r}")
    return level


def subtract_background(image, spec, *, mask=None):
    """Subtract a constant background (:func:`background_level`) with :func:`subtract_dark`.

    Returns
    -------
    image : array
        float64, ``image - level`` (negative values are kept: the caller decides).
    level : float
    """
    level = background_level(image, spec, mask=mask)
    xp, a = _image(image)
    return subtract_dark(a, xp.full(a.shape[-2:], level)), level


def remove_hot_pixels(image, threshold: float = 5.0, size: int = 3, *, mask=None,
                      contrast: float = 2.0, cold: bool = False,
                      noise_floor: float | None = None):
    """Find isolated outliers (hot pixels, zingers) and replace them by their local median.

    Each pixel is compared with the median ``m`` of its neighbours in a ``size`` × ``size``
    window (itself left out). It is an outlier when both

    - its residual ``r = image − m`` exceeds ``threshold`` × the local noise ``σ``, and
    - ``|r|`` exceeds ``contrast`` × the local "fine structure" ``|M − median(M)|`` of the
      median-filtered image ``M`` over a ``(2·size + 1)``-wide window: a real feature of the
      pattern (a speckle, a fringe) is a few pixels wide and survives the median filter, a hot
      pixel does not (the test of L.A.Cosmic, van Dokkum 2001).

    ``σ`` is the RMS of the residuals around the pixel (Gaussian weights of width ``size``
    pixels), leaving out residuals above 3 × a first, outlier-proof estimate (the mean of the
    lowest 80 % of ``|r|`` in the ``(2·size + 1)``-wide window); it is never less than that
    estimate over the whole image, or ``noise_floor`` when given.

    Parameters
    ----------
    image : array, (rows, cols)
    threshold : float
        In units of the local noise σ; > 0.
    size : int
        Odd window width ≥ 3 (3 finds single pixels and pairs; 5 finds clusters of up to ~12).
    mask : bool array, optional
        Known bad pixels (True): left out of every statistic and left unchanged.
    contrast : float
        ≥ 0; 0 switches the fine-structure test off (then sharp, barely sampled peaks of a
        high-count pattern are flagged too).
    cold : bool
        Also flag pixels far *below* their neighbours (dead pixels).
    noise_floor : float, optional
        Smallest σ in image units. Set it for sparse photon-counting data, where most
        residuals are exactly 0 (e.g. ``noise_floor=1`` for counts in photons).

    Returns
    -------
    image : array
        float64 copy with the outliers replaced by the median of their non-outlier neighbours.
    mask : bool array
        True at the outliers found (the given ``mask`` not included).

    Raises
    ------
    InvalidInputError
        For a non-2D image, a mask of another shape, or a bad threshold/size/contrast/floor.
    """
    xp, a = _image(image)
    threshold = _positive(threshold, "the hot-pixel threshold")
    size = _odd_size(size)
    contrast = 0.0 if not contrast else _positive(contrast, "the hot-pixel contrast")
    bad = _mask(mask, a.shape, xp) | ~xp.isfinite(a)
    data = xp.where(bad, xp.nan, a)
    residual = data - _window_stat(data, size, exclude_center=True)
    abs_r = xp.abs(residual)
    if noise_floor is not None:
        floor = _positive(noise_floor, "the noise floor")
    else:
        floor = _low_mean_sigma(abs_r)
        if not np.isfinite(floor):
            raise InvalidInputError("the image has no usable pixel; check the mask")
        if floor == 0:  # most residuals exactly 0 (flat or sparse data): use them all
            floor = np.sqrt(np.pi / 2) * float(abs_r[xp.isfinite(abs_r)].mean())
        floor = max(floor, np.finfo(np.float64).tiny)
    wide = 2 * size + 1
    first = xp.maximum(_LOW_MEAN_TO_SIGMA * _window_stat(abs_r, wide, "low_mean"), floor)
    keep = (abs_r <= 3 * first).astype(np.float64)  # False for NaN too
    r2 = xp.where(keep > 0, residual, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        var = _gaussian_blur(r2, size) / _gaussian_blur(keep, size) / _VAR_WITHIN_3_SIGMA
    sigma = xp.maximum(xp.sqrt(xp.where(var > 0, var, 0.0)), floor)  # NaN > 0 is False
    score = residual / sigma
    found = xp.isfinite(score) & ((xp.abs(score) if cold else score) > threshold)
    if contrast:
        smooth = _window_stat(data, size)
        fine = xp.abs(smooth - _window_stat(smooth, wide))
        found &= abs_r > contrast * fine
    replacement = _window_stat(xp.where(found, xp.nan, data), size, exclude_center=True)
    out = xp.where(found & xp.isfinite(replacement), replacement, a)
    return out, found


# -- dust ----------------------------------------------------------------------------------

def remove_dust(image, mask, *, sigma: float = 2.0, max_sigma: float | None = None):
    """Fill masked spots (dust, defects, gaps) by local interpolation from their surroundings.

    Each masked pixel gets the value at its position of the plane fitted by weighted least
    squares to the good pixels around it, with Gaussian weights of width ``sigma``
    (normalised convolution of order 1), so smooth gradients continue across the spot;
    it falls back to the Gaussian-weighted mean where the good pixels do not determine a plane.
    Pixels deep inside spots wider than a few σ have too few good neighbours, or all on one
    side: for them σ doubles until the plane is determined (or ``max_sigma`` is reached, where
    the weighted mean is taken). Large spots are thus bridged smoothly, not reconstructed.

    Parameters
    ----------
    image : array, (rows, cols)
    mask : bool array, (rows, cols)
        True at the pixels to fill. Non-finite pixels are filled too.
    sigma : float
        Starting Gaussian width in pixels (> 0): about the distance over which values are
        interpolated.
    max_sigma : float, optional
        Largest width tried; default the image's larger side.

    Returns
    -------
    array
        float64 copy; good pixels unchanged, masked pixels interpolated (a plane is
        reproduced exactly).

    Raises
    ------
    InvalidInputError
        For shapes that differ, a bad ``sigma``, no good pixel at all, or masked pixels that no
        good pixel reaches within ``max_sigma``.
    """
    xp, a = _image(image)
    bad = _mask(mask, a.shape, xp) | ~xp.isfinite(a)
    sigma = _positive(sigma, "the dust-filling sigma")
    max_sigma = float(max(a.shape)) if max_sigma is None else _positive(max_sigma, "max_sigma")
    if bool(bad.all()):
        raise InvalidInputError("every pixel is masked; there is nothing to interpolate from")
    weight = (~bad).astype(np.float64)
    values = xp.where(bad, 0.0, a)
    out = a.copy()
    todo = bad
    s = sigma
    while True:
        fit, support, well_posed = _local_linear_fit(values, weight, s)
        # a masked pixel is filled once its good neighbours carry at least 1 % of the weight
        # of a complete neighbourhood (below that the fit is mostly round-off) and determine a
        # plane; the weighted mean is the last resort, at the largest width
        ok = todo & (support > 1e-2) & (well_posed | (s >= max_sigma))
        out = xp.where(ok, fit, out)
        todo = todo & ~ok
        if not bool(todo.any()):
            return out
        if s >= max_sigma:
            raise InvalidInputError(
                f"{int(todo.sum())} masked pixel(s) are farther than ~{max_sigma:g} pixels "
                "from any good pixel; shrink the mask or raise max_sigma")
        s = min(2 * s, max_sigma)


# -- merging exposures ---------------------------------------------------------------------

def merge_exposures(images, exposure_times, saturation, *, mask=None, grow: int = 0,
                    reference: float | None = None):
    """Merge exposures of different lengths into one high-dynamic-range pattern.

    Each exposure is scaled to the ``reference`` exposure time; each pixel takes its value from
    the longest exposure in which it is valid (finite, below saturation, not masked), i.e. the
    one with the best counting statistics. Typical use: a long exposure with the beamstop in
    (saturated around it) and short ones that measure the bright centre.

    Parameters
    ----------
    images : sequence of arrays (rows, cols), or array (n, rows, cols)
        Detector counts, dark already subtracted.
    exposure_times : sequence of float
        One per image, > 0 (any unit; only ratios matter).
    saturation : float or sequence of float
        Counts at or above which a pixel is saturated (one value, or one per image). With dark
        subtraction done, lower it by the dark level.
    mask : bool array, optional
        Bad pixels: (rows, cols) for all images, or (n, rows, cols) per image (e.g. a beamstop
        that moves between exposures).
    grow : int
        Also reject this many pixels around each saturated pixel (CCD blooming); ≥ 0.
    reference : float, optional
        Exposure time the result is expressed in; default the longest.

    Returns
    -------
    merged : array, (rows, cols)
        float64 counts per ``reference`` exposure; NaN where no exposure is valid.
    mask : bool array
        True where no exposure is valid.

    Raises
    ------
    InvalidInputError
        For mismatched shapes or counts, non-positive times, or a bad saturation.
    """
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        if len(images) == 0:
            raise InvalidInputError("give at least one exposure to merge")
        xp = array_module(*images)
        try:
            stack = xp.stack([xp.asarray(im) for im in images])
        except ValueError:
            shapes = [tuple(xp.asarray(im).shape) for im in images]
            raise InvalidInputError(f"the exposures must all have the same shape, got "
                                    f"{shapes}") from None
    else:
        stack = images
    xp, stack = _image(stack, "exposures", stack=True)
    if stack.ndim == 2:
        stack = stack[None]
    n = stack.shape[0]
    times = _floats(exposure_times, "exposure times")
    if times.size != n:
        raise InvalidInputError(f"{n} exposure(s) but {times.size} exposure time(s); give one "
                                "time per image")
    if not np.all(np.isfinite(times)) or np.any(times <= 0):
        raise InvalidInputError(f"exposure times must be positive, got {times.tolist()}")
    sat = _floats(saturation, "saturation")
    if sat.size not in (1, n) or not np.all(np.isfinite(sat)):
        raise InvalidInputError(f"saturation must be one finite level or one per exposure "
                                f"({n}), got {np.asarray(saturation).tolist()}")
    sat = np.broadcast_to(sat, (n,))
    if isinstance(grow, bool) or not isinstance(grow, (int, np.integer)) or grow < 0:
        raise InvalidInputError(f"grow must be a whole number ≥ 0, got {grow!r}")
    ref = times.max() if reference is None else _positive(reference, "the reference exposure")
    if mask is not None and xp.asarray(mask).ndim == 2:
        given = xp.broadcast_to(_mask(mask, stack.shape[1:], xp), stack.shape)
    else:
        given = _mask(mask, stack.shape, xp)

    merged = xp.full(stack.shape[1:], xp.nan)
    missing = xp.ones(stack.shape[1:], dtype=bool)
    for i in np.argsort(-times, kind="stable"):  # longest first
        frame = stack[i]
        saturated = _dilate(frame >= sat[i], int(grow))
        valid = missing & xp.isfinite(frame) & ~saturated & ~given[i]
        merged = xp.where(valid, frame * (ref / times[i]), merged)
        missing = missing & ~valid
    return merged, missing


# -- centring ------------------------------------------------------------------------------

#: The old name of :func:`speckle.imaging.center.find_center` (one centre finder for every
#: imaging path); kept so that existing code runs.
find_symmetry_center = find_center


def shift_image(image, shift, *, subpixel: bool = False, fill=0.0):
    """Translate an image by ``shift`` = (rows, cols) pixels, filling what moves in.

    Parameters
    ----------
    image : array, (rows, cols)
        Real or boolean (a mask is shifted with an integer shift and ``fill=True``).
    shift : (float, float)
        Positive moves the content down/right.
    subpixel : bool
        False: shift by the nearest whole number of pixels (exact, values are moved, not
        interpolated). True: Fourier shift (band-limited interpolation; rings near sharp
        edges and hot pixels, so condition the image first). Pixels that come in from outside the
        image get ``fill`` in both cases (nothing wraps around).
    fill : scalar
        Value of the pixels that come in from outside (NaN marks them as unmeasured).

    Returns
    -------
    array
        Same shape and module as ``image`` (float64, or bool for a boolean image shifted by
        whole pixels).
    """
    xp = array_module(image)
    a = xp.asarray(image)
    if a.ndim != 2 or 0 in a.shape:
        raise InvalidInputError(f"expected a 2D image, got an array of shape {a.shape}")
    sy, sx = (float(v) for v in np.broadcast_to(np.asarray(shift, float), (2,)))
    if not (np.isfinite(sy) and np.isfinite(sx)):
        raise InvalidInputError(f"the shift must be finite, got {shift!r}")
    rows, cols = a.shape
    if subpixel:
        _, data = _image(a)
        ky = xp.fft.fftfreq(rows)[:, None]
        kx = xp.fft.fftfreq(cols)[None, :]
        ramp = xp.exp(-2j * np.pi * (ky * sy + kx * sx))
        moved = xp.fft.ifft2(xp.fft.fft2(xp.where(xp.isfinite(data), data, 0.0)) * ramp).real
    else:
        sy, sx = round(sy), round(sx)
        data = a if a.dtype.kind == "b" else a.astype(np.float64)
        moved = xp.roll(data, (int(sy), int(sx)), axis=(0, 1))
    out = moved.copy()
    iy, ix = int(np.ceil(abs(sy))), int(np.ceil(abs(sx)))  # rows/cols that came from outside
    if iy:
        rows_in = slice(0, min(iy, rows)) if sy > 0 else slice(max(rows - iy, 0), rows)
        out[rows_in] = fill
    if ix:
        cols_in = slice(0, min(ix, cols)) if sx > 0 else slice(max(cols - ix, 0), cols)
        out[:, cols_in] = fill
    return out


def center_pattern(image, center=None, *, mask=None, subpixel: bool = False, fill=0.0):
    """Move a diffraction pattern's centre to the middle pixel ``(rows // 2, cols // 2)``.

    Parameters
    ----------
    image : array, (rows, cols)
    center : (float, float), optional
        The pattern's centre (row, col) in pixels; found by
        :func:`speckle.imaging.center.find_center` when None.
    mask : bool array, optional
        Pixels left out when finding the centre. Shift it the same way with
        ``shift_image(mask, (rows // 2 - row, cols // 2 - col), fill=True)``.
    subpixel : bool
        False (default): shift by whole pixels (exact values; the centre then lies within half a
        pixel of the middle). True: Fourier shift, so that the centre lands on the middle pixel
        exactly (see :func:`shift_image`).
    fill : scalar
        Value of the pixels that come in from outside the image.

    Returns
    -------
    image : array
        float64, same shape and module.
    center : (float, float)
        The centre (row, col) of the *input* pattern.

    Raises
    ------
    InvalidInputError
        For a non-2D image, a centre outside the image, or a bad mask.
    """
    xp, a = _image(image)
    if center is None:
        center = find_center(a, mask=mask)
    else:
        try:
            center = tuple(float(v) for v in np.broadcast_to(np.asarray(center, float), (2,)))
        except (TypeError, ValueError):
            raise InvalidInputError(f"the centre must be (row, col), got {center!r}") from None
        if not all(np.isfinite(center)) or not (0 <= center[0] <= a.shape[0] - 1
                                                and 0 <= center[1] <= a.shape[1] - 1):
            raise InvalidInputError(f"the centre {center} lies outside the {a.shape} image; "
                                    "give (row, col) in pixels")
    shift = (a.shape[0] // 2 - center[0], a.shape[1] // 2 - center[1])
    return shift_image(a, shift, subpixel=subpixel, fill=fill), center


# -- binning -------------------------------------------------------------------------------

def bin_image(image, factor):
    """Sum ``factor`` × ``factor`` blocks of pixels, trimming rows/columns that do not fill one.

    Parameters
    ----------
    image : array, (rows, cols) or (frames, rows, cols)
    factor : int or (int, int)
        Block size (rows, cols), ≥ 1.

    Returns
    -------
    array
        float64, (rows // fr, cols // fc) (per frame). Counts are conserved within the kept
        region; a NaN in a block makes that bin NaN.

    Raises
    ------
    InvalidInputError
        For a factor below 1, not whole, or larger than the image.
    """
    xp, a = _image(image, stack=True)
    try:
        pair = np.broadcast_to(np.asarray(factor, dtype=object), (2,))
    except ValueError:
        pair = None
    if pair is None or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool)
                                 for f in pair):
        raise InvalidInputError(f"the binning factor must be a whole number ≥ 1 (or a pair), "
                                f"got {factor!r}")
    fr, fc = int(pair[0]), int(pair[1])
    rows, cols = a.shape[-2:]
    if fr < 1 or fc < 1:
        raise InvalidInputError(f"the binning factor must be ≥ 1, got {factor!r}")
    if fr > rows or fc > cols:
        raise InvalidInputError(f"the binning factor {factor!r} is larger than the "
                                f"{rows}×{cols} image")
    nr, nc = rows // fr, cols // fc
    trimmed = a[..., :nr * fr, :nc * fc]
    return trimmed.reshape(*a.shape[:-2], nr, fr, nc, fc).sum(axis=(-3, -1))
