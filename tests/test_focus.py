"""Focus: metric definitions, the fast sweep against plain propagation, and autofocus on simulated
soft X-ray holograms (absorbing and phase objects) with a known defocus."""

import numpy as np
import pytest
from test_fth import LAM, simulate_fth

from speckle.backend import gpu_available
from speckle.errors import Cancelled, InvalidInputError
from speckle.imaging.focus import (FOCUS_EXTREMUM, METRICS, RECOMMENDED_METRIC, autofocus,
                                   focus_sweep, gradient_magnitude, sharpness)
from speckle.imaging.fth import detect_cross_terms, reconstruct
from speckle.imaging.propagation import propagate

UM = 1e-6


def ramp(shape=(40, 60), g=0.05, a0=2.0):
    """Amplitude a0 + g·col with a constant phase: the gradient is g everywhere."""
    cols = np.arange(shape[1])[None, :]
    return (a0 + g * cols + 0 * np.arange(shape[0])[:, None]) * np.exp(0.3j)


def test_metric_definitions_on_a_ramp():
    shape, g, a0 = (40, 60), 0.05, 2.0
    field = ramp(shape, g, a0)
    a = np.abs(field)
    assert sharpness(field, "acutance") == pytest.approx(g / a.mean(), rel=1e-9)
    # Brenner: (a[i+2] - a[i])² = (2g)² along columns, 0 along rows
    assert sharpness(field, "brenner") == pytest.approx((2 * g) ** 2 / a.mean() ** 2, rel=1e-9)
    # a uniform ramp over n columns: variance g² (n² - 1) / 12
    n = shape[1]
    assert sharpness(field, "normalized_variance") == pytest.approx(
        g**2 * (n**2 - 1) / 12 / a.mean() ** 2, rel=1e-9)
    # a constant gradient is not sparse at all: std 0
    assert sharpness(field, "edge_sparsity") == pytest.approx(0, abs=1e-6)
    image = np.arange(64).reshape(8, 8)  # integers are images too
    for metric in METRICS:
        assert sharpness(image, metric) == pytest.approx(sharpness(image.astype(float), metric))
    assert np.allclose(gradient_magnitude(field), g)
    assert gradient_magnitude(field).shape == shape


def test_edge_sparsity_is_the_tamura_coefficient_of_the_complex_gradient():
    field = np.ones((30, 30), complex)
    field[:, 15:] = 1j  # one phase edge: |∇u| = |1j - 1| on the two columns beside it
    g = np.zeros((28, 28))
    g[:, 13:15] = abs(1j - 1)  # interior pixels whose two-pixel difference spans the edge
    assert sharpness(field, "edge_sparsity") == pytest.approx(np.sqrt(g.std() / g.mean()))
    # the magnitude is flat: every amplitude metric is zero
    for metric in ("acutance", "brenner", "normalized_variance"):
        assert sharpness(field, metric) == pytest.approx(0, abs=1e-12)


def test_metrics_are_scale_invariant():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(32, 32)) + 1j * rng.normal(size=(32, 32))
    for metric in METRICS:
        assert sharpness(7.5 * np.exp(1.1j) * field, metric) == pytest.approx(
            sharpness(field, metric), rel=1e-6)


def test_sweep_equals_propagation_then_metric():
    rng = np.random.default_rng(1)
    field = np.exp(1j * rng.uniform(0, 1, (64, 48))) * (1 + 0.5 * rng.uniform(size=(64, 48)))
    zs = np.linspace(-4 * UM, 4 * UM, 9)
    for method in ("angular", "fresnel"):
        sweep = focus_sweep(field, zs, pixel_size=(25e-9, 30e-9), wavelength=LAM, method=method)
        exact = focus_sweep(field, zs, pixel_size=(25e-9, 30e-9), wavelength=LAM,
                            method=method, precision="double")
        for i, z in enumerate(zs):
            there = propagate(field, z, (25e-9, 30e-9), wavelength=LAM, method=method)
            for metric in METRICS:
                want = sharpness(there, metric)
                assert exact.sharpness[metric][i] == pytest.approx(want, rel=1e-9)
                assert sweep.sharpness[metric][i] == pytest.approx(want, rel=2e-4)
        assert np.allclose(sweep.field_at(zs[2]),
                           propagate(field, zs[2], (25e-9, 30e-9), wavelength=LAM,
                                     method=method))


def test_best_uses_the_metric_extremum():
    zs = np.array([-1.0, 0.0, 1.0, 2.0]) * UM
    field = np.ones((8, 8), complex)
    sweep = focus_sweep(field, zs, pixel_size=20e-9, wavelength=LAM)
    sweep.sharpness["brenner"] = np.array([1.0, 3.0, 0.5, 2.0])
    assert FOCUS_EXTREMUM["brenner"] == "max"
    assert sweep.best("brenner") == 0.0
    assert sweep.best("brenner", "min") == 1 * UM
    with pytest.raises(InvalidInputError):
        sweep.best("brenner", "middle")
    assert set(sweep.sharpness) == set(METRICS)


def test_progress_and_cancel():
    field = np.ones((32, 32), complex)
    seen = []
    focus_sweep(field, np.linspace(0, 1e-6, 30), pixel_size=20e-9, wavelength=LAM,
                progress=lambda f, s: seen.append(f))
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        focus_sweep(field, np.linspace(0, 1e-6, 30), pixel_size=20e-9, wavelength=LAM,
                    cancel=lambda: True)


def test_bad_input_is_refused():
    field = np.ones((16, 16), complex)
    kw = {"pixel_size": 20e-9, "wavelength": LAM}
    with pytest.raises(InvalidInputError):
        focus_sweep(field, [0.0], metrics=["sharpest"], **kw)
    with pytest.raises(InvalidInputError):
        focus_sweep(np.full((16, 16), np.nan), [0.0], **kw)
    with pytest.raises(InvalidInputError):
        focus_sweep(np.ones(16), [0.0], **kw)
    with pytest.raises(InvalidInputError):
        focus_sweep(field, [], **kw)
    with pytest.raises(InvalidInputError):
        focus_sweep(field, [0.0], pixel_size=-1.0, wavelength=LAM)
    with pytest.raises(InvalidInputError):
        autofocus(field, (1e-6, 1e-6), **kw)


# -- autofocus on simulated soft X-ray holograms (778 eV) ------------------------------------

def defocused_cross_term(kind, defocus, pixel, seed=1):
    """The upright cross-term region of a simulated hologram whose object is ``defocus`` away
    from the reference plane: refocusing it takes a propagation by ``-defocus``."""
    hologram, _ = simulate_fth(kind, pixel=pixel, defocus=defocus, ref_radius=1.0,
                               photons=1e8, seed=seed)
    image = reconstruct(hologram).image
    term = next(t for t in detect_cross_terms(image) if t.col < 128)  # object left of reference
    r0, r1, c0, c1 = term.box
    return image[r0:r1, c0:c1]


@pytest.mark.parametrize("kind,defocus,pixel", [
    ("absorbing", 3 * UM, 30e-9),
    ("absorbing", -2 * UM, 20e-9),
    ("phase", 3 * UM, 30e-9),
    ("phase", -4 * UM, 40e-9),
])
def test_autofocus_recovers_a_known_defocus(kind, defocus, pixel):
    region = defocused_cross_term(kind, defocus, pixel)
    z_range = (-8 * UM, 8 * UM)
    for metric in (RECOMMENDED_METRIC, "brenner"):
        z = autofocus(region, z_range, pixel_size=pixel, wavelength=LAM, metric=metric)
        assert abs(z - (-defocus)) < 0.5 * UM, (metric, z)


def test_pure_phase_object_amplitude_metrics_are_minimal_at_focus():
    """Inside a phase object (no amplitude edge) the in-focus magnitude is flat: amplitude
    metrics have their minimum there, the edge sparsity of the complex field its maximum."""
    from test_fth import blobs

    pixel, defocus = 30e-9, 2.5 * UM
    field = np.exp(0.8j * blobs((64, 64), 60, seed=4, n=128))
    blurred = propagate(field, defocus, pixel, wavelength=LAM)
    kw = {"pixel_size": pixel, "wavelength": LAM}
    for metric in ("brenner", "normalized_variance"):
        z = autofocus(blurred, (-6 * UM, 6 * UM), metric=metric, extremum="min", **kw)
        assert abs(z + defocus) < 0.5 * UM, metric
        assert abs(autofocus(blurred, (-6 * UM, 6 * UM), metric=metric, **kw) + defocus) \
            > 1 * UM  # the maximum is elsewhere: the documented trap
    z = autofocus(blurred, (-6 * UM, 6 * UM), metric="edge_sparsity", **kw)
    assert abs(z + defocus) < 0.5 * UM


@pytest.mark.skipif(not gpu_available(), reason="no GPU")
def test_gpu_sweep_matches_cpu():  # pragma: no cover - needs a GPU
    import cupy

    rng = np.random.default_rng(2)
    field = np.exp(1j * rng.uniform(0, 1, (128, 128))) * rng.uniform(0.5, 1, (128, 128))
    zs = np.linspace(-3 * UM, 3 * UM, 7)
    cpu = focus_sweep(field, zs, pixel_size=20e-9, wavelength=LAM)
    gpu = focus_sweep(cupy.asarray(field), zs, pixel_size=20e-9, wavelength=LAM)
    for metric in METRICS:
        assert np.allclose(gpu.sharpness[metric], cpu.sharpness[metric], rtol=1e-4)
