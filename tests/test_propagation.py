"""Propagation: analytic Gaussian beam, round trip, identity, sign and constant phase."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging.propagation import propagate, wavelength_from_energy

ENERGY = 780.0  # eV, soft X-rays
LAM = wavelength_from_energy(ENERGY)
N, DX = 1024, 0.1e-6


def grid():
    x = (np.arange(N) - N // 2) * DX
    return np.meshgrid(x, x, indexing="ij")


def gaussian(w0, x0=0.0, tilt=0.0):
    y, x = grid()
    return np.exp(-((x - x0) ** 2 + y**2) / w0**2) * np.exp(1j * 2 * np.pi / LAM * tilt * x)


def width(field):
    """1/e² intensity radius along x from the second moment: w = 2 sqrt(<x²>)."""
    y, x = grid()
    inten = np.abs(field) ** 2
    xc = (inten * x).sum() / inten.sum()
    return 2 * np.sqrt((inten * (x - xc) ** 2).sum() / inten.sum())


def centroid(field):
    y, x = grid()
    inten = np.abs(field) ** 2
    return (inten * x).sum() / inten.sum()


@pytest.mark.parametrize("method", ["angular", "fresnel"])
def test_gaussian_beam_width_matches_the_analytic_value(method):
    w0 = 4e-6
    z_r = np.pi * w0**2 / LAM
    for z in (0.5 * z_r, z_r, -z_r):
        out = propagate(gaussian(w0), z, DX, energy=ENERGY, method=method)
        expected = w0 * np.sqrt(1 + (z / z_r) ** 2)
        assert width(out) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("method", ["angular", "fresnel"])
def test_forward_then_back_is_the_identity(method):
    rng = np.random.default_rng(0)
    field = gaussian(6e-6) * np.exp(1j * rng.uniform(0, 0.3, (N, N)))
    field = propagate(field, 0, DX, energy=ENERGY)  # a copy
    band_limited = propagate(propagate(field, 3e-5, DX, energy=ENERGY, method="angular"),
                             -3e-5, DX, energy=ENERGY, method="angular")
    there = propagate(band_limited, 2e-4, DX, energy=ENERGY, method=method)
    back = propagate(there, -2e-4, DX, energy=ENERGY, method=method)
    assert np.linalg.norm(back - band_limited) / np.linalg.norm(band_limited) < 1e-10


def test_zero_distance_is_the_identity():
    field = gaussian(3e-6, x0=1e-6)
    out = propagate(field, 0.0, DX, energy=ENERGY)
    np.testing.assert_array_equal(out, field)
    assert out is not field


def test_constant_phase_and_sign_of_a_plane_wave():
    plane = np.ones((64, 64), complex)
    z = 1.234e-7
    out = propagate(plane, z, DX, energy=ENERGY)
    np.testing.assert_allclose(out, np.exp(1j * 2 * np.pi / LAM * z) * plane, rtol=1e-12)
    no_const = propagate(plane, z, DX, energy=ENERGY, constant_phase=False)
    np.testing.assert_allclose(no_const, plane, rtol=1e-12)


def test_a_tilted_beam_moves_downstream_along_its_tilt():
    tilt = 0.005  # rad towards +x (sampled well below the grid's Nyquist frequency)
    z = 5e-4
    out = propagate(gaussian(4e-6, tilt=tilt), z, DX, energy=ENERGY)
    assert centroid(out) == pytest.approx(z * np.tan(np.arcsin(tilt)), rel=1e-3)
    back = propagate(gaussian(4e-6, tilt=tilt), -z, DX, energy=ENERGY)
    assert centroid(back) == pytest.approx(-z * np.tan(np.arcsin(tilt)), rel=1e-3)


def test_refusals():
    with pytest.raises(InvalidInputError, match="energy or the wavelength"):
        propagate(np.ones((4, 4)), 1e-6, DX)
    with pytest.raises(InvalidInputError, match="method"):
        propagate(np.ones((4, 4)), 1e-6, DX, energy=ENERGY, method="magic")
    with pytest.raises(InvalidInputError, match="positive"):
        wavelength_from_energy(-5)
