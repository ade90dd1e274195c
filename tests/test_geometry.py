"""Scattering geometry: q and φ of pixels against textbook formulas computed here."""

import math

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.io.dataset import Metadata
from speckle.xpcs.geometry import Geometry
from speckle.xpcs.partitions import q_rings

HC = 1.239841984e-6  # eV·m (CODATA h·c), written out independently of the library
PER_A = 1e10  # 1/Å in 1/m


def _energy_for_wavelength(lam_m):
    return HC / lam_m


def test_q_at_known_pixel_exact_and_small_angle():
    lam = 1.0e-10  # 1 Å
    L = 2.0
    ps = 75e-6
    g = Geometry(energy=_energy_for_wavelength(lam), distance=L, pixel_size=ps,
                 beam_center=(10.0, 20.0))
    q = g.q_map((64, 96))
    # pixel 30 rows down and 40 columns right of the beam: 50 pixels away (3-4-5 triangle)
    r = 50 * ps
    # exact, written differently from the library: cos(2θ) = L / sqrt(L² + r²)
    two_theta = math.acos(L / math.sqrt(L * L + r * r))
    q_exact = 4 * math.pi / lam * math.sin(two_theta / 2)
    assert q[40, 60] == pytest.approx(q_exact, rel=1e-12)
    # small angle: q ≈ 4π/λ · r/(2L), off by (3/8)(r/L)² relatively
    q_small = 4 * math.pi / lam * r / (2 * L)
    assert q[40, 60] == pytest.approx(q_small, rel=1e-5)
    assert abs(q[40, 60] / q_small - 1) < 0.5 * (r / L) ** 2
    # the direct beam has q = 0; q grows with the distance from it
    assert q[10, 20] == 0.0
    assert q[10, 21] < q[10, 22] < q[10, 30]


def test_q_exact_at_wide_angle_differs_from_small_angle():
    lam = 1.0e-10
    g = Geometry(_energy_for_wavelength(lam), 0.05, 1e-3, (0, 0))
    q = g.q_map((1, 60))
    r = 50e-3  # 45° scattering angle
    q_exact = 4 * math.pi / lam * math.sin(math.radians(45) / 2)
    assert q[0, 50] == pytest.approx(q_exact, rel=1e-12)
    assert q[0, 50] < 4 * math.pi / lam * r / (2 * 0.05) * 0.95


def test_non_square_pixels_use_physical_offsets():
    g = Geometry(8000.0, 1.0, (100e-6, 50e-6), (0, 0))
    q = g.q_map((10, 10))
    # 1 row (100 µm) equals 2 columns (2 × 50 µm)
    assert q[1, 0] == pytest.approx(q[0, 2], rel=1e-14)
    assert g.phi_map((10, 10))[1, 2] == pytest.approx(-45.0)


def test_wavelength_from_energy():
    g = Geometry(12398.41984, 1.0, 1e-4, (0, 0))
    assert g.wavelength == pytest.approx(1e-10, rel=1e-9)


def test_phi_convention():
    """0° along +column, counter-clockwise with rows pointing down (90° towards row 0)."""
    g = Geometry(8000.0, 1.0, 1e-4, (5, 5))
    phi = g.phi_map((11, 11))
    assert phi[5, 9] == pytest.approx(0.0)  # right
    assert phi[1, 5] == pytest.approx(90.0)  # up on screen = towards row 0
    assert abs(phi[5, 1]) == pytest.approx(180.0)  # left
    assert phi[9, 5] == pytest.approx(-90.0)  # down on screen
    assert phi[1, 9] == pytest.approx(45.0)
    assert phi.min() > -180.0 - 1e-12 and phi.max() <= 180.0


def test_from_metadata_and_overrides():
    md = Metadata(energy=8000.0, distance=2.0, pixel_size=(75e-6, 75e-6), beam_center=(10, 12))
    g = Geometry.from_metadata(md)
    assert g == Geometry(8000.0, 2.0, (75e-6, 75e-6), (10.0, 12.0))
    g2 = Geometry.from_metadata(md, distance=5.0, pixel_size=55e-6, beam_center=None)
    assert g2.distance == 5.0 and g2.pixel_size == (55e-6, 55e-6) and g2.beam_center == (10, 12)


@pytest.mark.parametrize("field,option", [("energy", "--energy"), ("distance", "--distance"),
                                          ("pixel_size", "--pixel-size"),
                                          ("beam_center", "--beam-center")])
def test_from_metadata_names_missing_field_and_option(field, option):
    full = dict(energy=8000.0, distance=2.0, pixel_size=(75e-6, 75e-6), beam_center=(10, 12))
    full[field] = None
    with pytest.raises(InvalidInputError, match=option) as info:
        Geometry.from_metadata(Metadata(**full))
    assert "\n" not in str(info.value)
    # the option supplies it
    value = {"energy": 8000.0, "distance": 2.0, "pixel_size": 75e-6,
             "beam_center": (1, 2)}[field]
    assert Geometry.from_metadata(Metadata(**full), **{field: value})


def test_from_metadata_lists_every_missing_field():
    with pytest.raises(InvalidInputError) as info:
        Geometry.from_metadata(Metadata())
    msg = str(info.value)
    for option in ("--energy", "--distance", "--pixel-size", "--beam-center"):
        assert option in msg


@pytest.mark.parametrize("kwargs", [
    dict(energy=-1.0), dict(energy=float("nan")), dict(distance=0.0), dict(pixel_size=0.0),
    dict(pixel_size=(1e-4, -1e-4)), dict(beam_center=(float("inf"), 0)),
    dict(beam_center=(1, 2, 3)),
])
def test_refuses_unphysical_values(kwargs):
    base = dict(energy=8000.0, distance=2.0, pixel_size=75e-6, beam_center=(0, 0))
    base.update(kwargs)
    with pytest.raises(InvalidInputError):
        Geometry(**base)


def test_refuses_unknown_override():
    with pytest.raises(InvalidInputError, match="unknown"):
        Geometry.from_metadata(Metadata(), wavelength=1e-10)


def test_published_xpcs_demo_geometry_rings_all_hold_pixels():
    """The scikit-beam demo: 0.108 mm pixels, 2230 mm, 1.546 Å, beam centre (143, 123).

    (The centre of the scattering rings in the shared frames measures near row 132, column 143.5;
    this test checks the published parameters as given.)
    """
    g = Geometry(_energy_for_wavelength(1.546e-10), 2.230, 0.108e-3, (143, 123))
    shape = (256, 256)
    q = g.q_map(shape)
    # the pixel 10 columns right of the beam centre, from the small-angle formula
    q10 = 4 * math.pi / 1.546e-10 * (10 * 0.108e-3) / (2 * 2.230)
    assert q[143, 133] == pytest.approx(q10, rel=1e-6)
    p = q_rings(shape, g, q_min=0.0016 * PER_A, q_width=2e-4 * PER_A, q_step=2e-4 * PER_A,
                n_rings=8)
    counts = np.bincount(p.dynamic_map.ravel(), minlength=9)[1:]
    assert counts.shape == (8,) and (counts > 0).all()
    assert p.labels[0] == "q=0.00170 1/Å"
    np.testing.assert_allclose(p.dynamic_q / PER_A, 0.0017 + 2e-4 * np.arange(8), rtol=1e-12)
