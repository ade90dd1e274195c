"""Simulated imaging data with a known answer: objects, diffraction patterns, detector defects.

Tests, benchmarks and the example notebooks use these to check phase retrieval and holography
against the truth:

- :func:`simulated_object`: a fixed object (three discs and a bar) with a known support.
- :func:`random_object`: a different complex object per seed, with a non-centrosymmetric
  support (discs, ellipses and bars in an irregular cluster).
- :func:`simulated_pattern`: the centred far-field intensity, optionally with Poisson noise.
- :func:`unmeasured_pixels`: what a real detector does not measure: a central beamstop,
  scattered dead pixels, short dead lines.
- :func:`fth_sample`: an object beside pinhole references (Fourier transform holography).

Every function returns numpy arrays; images are centred (zero frequency of a pattern at
``(rows // 2, cols // 2)``).
"""

from __future__ import annotations

import numpy as np

from ..backend import asnumpy
from ..errors import InvalidInputError

__all__ = ["fth_sample", "random_object", "simulated_object", "simulated_pattern",
           "unmeasured_pixels"]


def _taper(distance, width: float = 1.5):
    """1 inside (distance < -width), 0 beyond +width, a cos² ramp between: compact support."""
    t = np.clip((distance + width) / (2 * width), 0.0, 1.0)
    return np.where(t < 1, np.cos(np.pi / 2 * t) ** 2, 0.0)


def _grid(rows: int, cols: int):
    y, x = np.mgrid[:rows, :cols].astype(float)
    return y - rows // 2, x - cols // 2


def simulated_object(shape=(128, 128), *, complex_valued: bool = True) -> np.ndarray:
    """A test object with a known, compact support: three discs and a bar.

    It spans about a third of the smaller side (oversampling above 2 along both axes), with
    amplitudes 0.5-1, edges tapered over 3 pixels and, when ``complex_valued``, a smooth phase
    of up to about ±1.3 rad. Exactly zero outside its support.

    Returns
    -------
    numpy.ndarray
        complex128 (or float64), centred near ``(rows // 2, cols // 2)``.
    """
    rows, cols = (int(n) for n in shape)
    if min(rows, cols) < 32:
        raise InvalidInputError("the simulated object needs a frame of at least 32×32 pixels")
    y, x = _grid(rows, cols)
    s = min(rows, cols) / 128
    amp = np.zeros((rows, cols))
    for cy, cx, r, v in ((-8, -6, 9, 1.0), (8, 9, 6, 0.7), (5, -12, 4, 0.5)):
        amp = np.maximum(amp, v * _taper(np.hypot(y - cy * s, x - cx * s) - r * s))
    bar = _taper(np.abs(x - 3 * s) - 4 * s) * _taper(np.abs(y + 14 * s) - 8 * s)
    amp = np.maximum(amp, 0.6 * bar)
    if not complex_valued:
        return amp
    phase = 0.8 * np.sin(2 * np.pi * x / (37 * s)) + 0.5 * np.cos(2 * np.pi * y / (29 * s))
    return amp * np.exp(1j * phase)


def random_object(shape=(256, 256), *, extent=(0.35, 0.25), seed=None,
                  complex_valued: bool = True) -> np.ndarray:
    """A random compact object with a non-centrosymmetric support, different for every seed.

    Four to six pieces (discs, ellipses, bars at random angles) with amplitudes 0.4-1 are
    placed in a box of ``extent`` times the frame (rows, cols), each touching the cluster so
    far (one connected object); edges are tapered over 3 pixels. The phase is a smooth random
    field of up to about ±1.5 rad.

    Parameters
    ----------
    shape : (rows, cols)
        At least 32 × 32.
    extent : (float, float)
        Size of the box the object fits in, as fractions of the frame (≤ 0.5 keeps the pattern
        oversampled at least twice along each axis).
    seed : int, optional
    complex_valued : bool

    Returns
    -------
    numpy.ndarray
        complex128 (or float64), exactly zero outside the support, centred near
        ``(rows // 2, cols // 2)``.
    """
    rows, cols = (int(n) for n in shape)
    if min(rows, cols) < 32:
        raise InvalidInputError("the simulated object needs a frame of at least 32×32 pixels")
    ey, ex = (float(e) for e in extent)
    if not (0 < ey <= 0.5 and 0 < ex <= 0.5):
        raise InvalidInputError(f"extent is a fraction of the frame in (0, 0.5], got {extent}")
    rng = np.random.default_rng(seed)
    y, x = _grid(rows, cols)
    half_y, half_x = ey * rows / 2, ex * cols / 2
    size = (half_y + half_x) / 2
    amp = np.zeros((rows, cols))
    centres = [(0.0, 0.0)]
    for k in range(int(rng.integers(4, 7))):
        if k:  # next to a piece already placed, so the object stays in one piece
            cy, cx = centres[int(rng.integers(len(centres)))]
            angle = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(0.4, 0.8) * size
            cy = float(np.clip(cy + step * np.sin(angle), -0.65 * half_y, 0.65 * half_y))
            cx = float(np.clip(cx + step * np.cos(angle), -0.65 * half_x, 0.65 * half_x))
            centres.append((cy, cx))
        else:
            cy, cx = centres[0]
        value = rng.uniform(0.4, 1.0)
        theta = rng.uniform(0, np.pi)
        u = (y - cy) * np.cos(theta) + (x - cx) * np.sin(theta)
        v = -(y - cy) * np.sin(theta) + (x - cx) * np.cos(theta)
        kind = rng.integers(3)
        if kind == 0:  # disc
            r = rng.uniform(0.25, 0.45) * size
            piece = _taper(np.hypot(u, v) - r)
        elif kind == 1:  # ellipse
            a, b = rng.uniform(0.35, 0.6) * size, rng.uniform(0.15, 0.3) * size
            piece = _taper((np.hypot(u / a, v / b) - 1) * min(a, b))
        else:  # bar
            a, b = rng.uniform(0.4, 0.7) * size, rng.uniform(0.08, 0.15) * size
            piece = _taper(np.abs(u) - a) * _taper(np.abs(v) - b)
        amp = np.maximum(amp, value * piece)
    # confine it to the box (pieces that reach out are cut, with a tapered edge)
    amp *= _taper(np.abs(y) - half_y) * _taper(np.abs(x) - half_x)
    if not complex_valued:
        return amp
    phase = np.zeros_like(amp)
    for _ in range(3):
        ky, kx = rng.uniform(-1, 1, 2) * 2 * np.pi / (1.5 * size)
        phase += rng.uniform(0.2, 0.6) * np.sin(ky * y + kx * x + rng.uniform(0, 2 * np.pi))
    return amp * np.exp(1j * phase)


def simulated_pattern(obj, photons: float | None = None, *, seed=None) -> np.ndarray:
    """Centred far-field intensity ``|fftshift(fft2(obj))|²`` of an object.

    Parameters
    ----------
    obj : array, (rows, cols)
    photons : float, optional
        Scale to this total and draw Poisson counts (seeded by ``seed``); None: exact.

    Returns
    -------
    numpy.ndarray
        float64, zero frequency at ``(rows // 2, cols // 2)``.
    """
    intensity = np.abs(np.fft.fftshift(np.fft.fft2(np.asarray(asnumpy(obj))))) ** 2
    if photons is None:
        return intensity
    intensity *= float(photons) / intensity.sum()
    return np.random.default_rng(seed).poisson(intensity).astype(float)


def unmeasured_pixels(shape, *, beamstop: float = 4.0, fraction: float = 0.02, lines: int = 2,
                      seed=None) -> np.ndarray:
    """A detector's unmeasured pixels: a central beamstop, dead pixels, dead line segments.

    Parameters
    ----------
    shape : (rows, cols)
    beamstop : float
        Radius in pixels of the disc about ``(rows // 2, cols // 2)`` (0: none).
    fraction : float
        Share of the frame, besides the beamstop, that is not measured: scattered single
        pixels and small clusters, and ``lines`` dead line segments.
    lines : int
        Dead line segments (one pixel wide, a fifth of the frame long).
    seed : int, optional

    Returns
    -------
    numpy.ndarray
        bool, True where a pixel is not measured.
    """
    rows, cols = (int(n) for n in shape)
    if not 0 <= fraction < 0.5:
        raise InvalidInputError(f"the unmeasured fraction must be in [0, 0.5), got {fraction}")
    rng = np.random.default_rng(seed)
    y, x = _grid(rows, cols)
    mask = np.hypot(y, x) <= beamstop if beamstop > 0 else np.zeros((rows, cols), bool)
    for _ in range(int(lines)):
        length = max(2, min(rows, cols) // 5)
        if rng.random() < 0.5:
            r, c = int(rng.integers(rows)), int(rng.integers(cols - length))
            mask[r, c:c + length] = True
        else:
            r, c = int(rng.integers(rows - length)), int(rng.integers(cols))
            mask[r:r + length, c] = True
    target = int(round(fraction * rows * cols)) + int(mask.sum())
    while mask.sum() < target:  # single pixels and 2×2 clusters
        r, c = int(rng.integers(rows - 1)), int(rng.integers(cols - 1))
        side = 2 if rng.random() < 0.2 else 1
        mask[r:r + side, c:c + side] = True
    return mask


def fth_sample(shape=(512, 512), *, reference_offsets=((0, 150),), reference_radius: float = 2.0,
               object_radius: float = 30.0, phase_object: bool = False,
               seed=None) -> np.ndarray:
    """An FTH exit wave: a textured object in a round aperture and pinhole references.

    Parameters
    ----------
    shape : (rows, cols)
    reference_offsets : sequence of (row, col)
        Position of each reference relative to the object's centre, pixels.
    reference_radius : float
        Radius of the (hard-edged) reference pinholes, pixels.
    object_radius : float
        Radius of the object's aperture, pixels.
    phase_object : bool
        The object changes the phase (up to ±1 rad) instead of the amplitude.
    seed : int, optional
        Texture of the object.

    Returns
    -------
    numpy.ndarray
        complex128 exit wave; the object is centred near ``(rows // 2, cols // 2)`` shifted
        away from the references so that the whole sample fits the frame.
    """
    rows, cols = (int(n) for n in shape)
    offsets = np.asarray(reference_offsets, float).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    y, x = _grid(rows, cols)
    centre = -offsets.mean(axis=0) / 2 if len(offsets) else np.zeros(2)
    cy, cx = centre
    aperture = _taper(np.hypot(y - cy, x - cx) - object_radius, 0.75)
    texture = np.zeros((rows, cols))
    for _ in range(12):
        py, px = rng.uniform(-object_radius, object_radius, 2)
        r = rng.uniform(0.15, 0.35) * object_radius
        texture = np.maximum(texture, _taper(np.hypot(y - cy - py, x - cx - px) - r, 1.0))
    if phase_object:
        wave = aperture * np.exp(1j * (texture - 0.5))
    else:
        wave = aperture * (1 - 0.7 * texture).astype(complex)
    for oy, ox in offsets:
        wave += (np.hypot(y - cy - oy, x - cx - ox) <= reference_radius)
    return wave
