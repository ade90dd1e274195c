"""Free-space propagation of a sampled complex field (numpy or cupy).

Conventions, locked by tests:

- Time dependence ``exp(-i ω t)``: a wave travelling towards +z is ``exp(+i k z)``; propagating
  by a positive distance moves the field downstream, a negative one back upstream.
- FFTs are unshifted (numpy's order); the field's sample (0, 0) is a corner, as for any array.
- Both methods include the constant phase ``exp(i k z)`` unless ``constant_phase=False``.
- ``"angular"``: the exact angular spectrum, ``H = exp(i z sqrt(k² - kx² - ky²))``; evanescent
  components (``kx² + ky² > k²``) are dropped, so that +z then -z is the identity for fields
  sampled within the propagating band.
- ``"fresnel"``: the paraxial transfer function ``H = exp(i k z) exp(-i z (kx² + ky²) / 2k)``.

Units: metres and eV inside (µm / nm only at the user interface).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from ..errors import InvalidInputError

__all__ = ["METHODS", "propagate", "transfer_function", "wavelength_from_energy"]

HC_EV_M = 1.239841984e-6  # Planck constant × speed of light, eV·m
METHODS = ("angular", "fresnel")


def wavelength_from_energy(energy_ev: float) -> float:
    """Photon wavelength in metres for an energy in eV."""
    if not energy_ev or energy_ev <= 0:
        raise InvalidInputError(f"the photon energy must be positive, got {energy_ev} eV")
    return HC_EV_M / float(energy_ev)


def transfer_function(shape, pixel_size, wavelength: float, distance: float,
                      method: str = "angular", constant_phase: bool = True, xp=np):
    """Free-space transfer function on the unshifted FFT grid of a sampled field.

    Parameters
    ----------
    shape : (rows, cols)
    pixel_size : float or (float, float)
        Sample pitch (row, col), m.
    wavelength : float
        m.
    distance : float
        Propagation distance, m (negative: upstream).
    method : {"angular", "fresnel"}
    constant_phase : bool
        Include ``exp(i k z)``.
    xp : module
        numpy or cupy.

    Returns
    -------
    complex array, ``shape``
    """
    if method not in METHODS:
        raise InvalidInputError(f"unknown propagation method {method!r}; choose one of {METHODS}")
    dy, dx = np.broadcast_to(np.asarray(pixel_size, float), (2,))
    if dy <= 0 or dx <= 0 or wavelength <= 0:
        raise InvalidInputError("the pixel size and the wavelength must be positive")
    k = 2 * np.pi / wavelength
    ky = 2 * np.pi * xp.fft.fftfreq(shape[0], d=dy)[:, None]
    kx = 2 * np.pi * xp.fft.fftfreq(shape[1], d=dx)[None, :]
    k_perp2 = kx**2 + ky**2
    if method == "angular":
        kz2 = k**2 - k_perp2
        propagating = kz2 > 0
        kz = xp.sqrt(xp.where(propagating, kz2, 0.0))
        phase = kz * distance if constant_phase else (kz - k) * distance
        return xp.where(propagating, xp.exp(1j * phase), 0)
    phase = -k_perp2 * distance / (2 * k) + (k * distance if constant_phase else 0.0)
    return xp.exp(1j * phase)


def propagate(field, distance: float, pixel_size, *, energy: float | None = None,
              wavelength: float | None = None, method: str = "angular",
              constant_phase: bool = True):
    """Propagate a complex field by ``distance`` (m) in free space.

    Parameters
    ----------
    field : complex array, (..., rows, cols)
        numpy or cupy; the last two axes are propagated.
    distance : float
        m; positive downstream.
    pixel_size : float or (float, float)
        m.
    energy, wavelength : float
        Photon energy (eV) or wavelength (m): give one.
    method : {"angular", "fresnel"}
    constant_phase : bool

    Returns
    -------
    complex array
        Same shape and array module as ``field``.
    """
    if (energy is None) == (wavelength is None):
        raise InvalidInputError("give either the photon energy or the wavelength")
    lam = wavelength if wavelength is not None else wavelength_from_energy(energy)
    xp = array_module(field)
    field = xp.asarray(field)
    if field.ndim < 2:
        raise InvalidInputError(f"a field has at least 2 dimensions, got shape {field.shape}")
    if distance == 0:
        return field.astype(np.result_type(field.dtype, np.complex64), copy=True)
    H = transfer_function(field.shape[-2:], pixel_size, lam, distance, method, constant_phase,
                          xp=xp)
    return xp.fft.ifft2(xp.fft.fft2(field) * H)
