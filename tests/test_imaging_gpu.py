"""GPU parity of the imaging code that the other GPU tests do not reach: FTH, support, alignment,
resolution. Each function gets the same data as numpy and as cupy arrays and must give the same
answer within float tolerance. Skipped where cupy sees no CUDA device (run on the lent GPU
machine: see benchmarks/README.md)."""

import numpy as np
import pytest

from speckle.backend import asnumpy, gpu_available
from speckle.imaging.align import apply_alignment, find_alignment, normalized_error
from speckle.imaging.fth import find_center, helicity_difference, reconstruct
from speckle.imaging.simulate import simulated_object, simulated_pattern
from speckle.imaging.resolution import frc, prtf
from speckle.imaging.support import autocorrelation, shrink_wrap, support_from_autocorrelation

pytestmark = pytest.mark.skipif(not gpu_available(), reason="no usable CUDA device here")


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


@pytest.fixture(scope="module")
def hologram():
    """An FTH-like pattern: an object and a point reference, off-centre zero frequency."""
    obj = np.zeros((128, 128), complex)
    obj[40:70, 30:60] = simulated_object((64, 64))[17:47, 17:47]
    obj[90, 100] = 5.0  # the reference
    pattern = simulated_pattern(obj)
    return np.roll(pattern, (2, -3), axis=(0, 1))


def test_fth_centre_and_reconstruction(cp, hologram):
    assert np.allclose(find_center(cp.asarray(hologram)), find_center(hologram), atol=1e-6)
    cpu = reconstruct(hologram, apodization=0.2)
    gpu = reconstruct(cp.asarray(hologram), apodization=0.2)
    assert np.allclose(gpu.center, cpu.center, atol=1e-6)
    scale = np.abs(cpu.image).max()
    assert np.abs(asnumpy(gpu.image) - cpu.image).max() < 1e-5 * scale


def test_helicity_difference(cp, hologram):
    neg = hologram * 0.9 + 1.0
    cpu = helicity_difference(hologram, neg)
    gpu = helicity_difference(cp.asarray(hologram), cp.asarray(neg))
    np.testing.assert_allclose(asnumpy(gpu), cpu, rtol=1e-6, atol=1e-6 * np.abs(cpu).max())


def test_support_tools(cp):
    intensity = simulated_pattern(simulated_object((96, 96)), photons=1e8, seed=3)
    mask = np.zeros(intensity.shape, bool)
    mask[46:51, 46:51] = True
    ac_cpu, ac_gpu = autocorrelation(intensity, mask=mask), autocorrelation(
        cp.asarray(intensity), mask=cp.asarray(mask))
    np.testing.assert_allclose(asnumpy(ac_gpu), ac_cpu, rtol=1e-6, atol=1e-9 * ac_cpu.max())
    s_cpu = support_from_autocorrelation(intensity, 0.04, mask=mask)
    s_gpu = asnumpy(support_from_autocorrelation(cp.asarray(intensity), 0.04, mask=cp.asarray(mask)))
    assert (s_gpu != s_cpu).sum() <= 0.001 * s_cpu.size  # pixels at the threshold may flip
    obj = simulated_object((96, 96))
    w_cpu, w_gpu = shrink_wrap(obj, 1.0, 0.1), asnumpy(shrink_wrap(cp.asarray(obj), 1.0, 0.1))
    assert (w_gpu != w_cpu).sum() <= 0.001 * w_cpu.size


def test_alignment(cp):
    ref = simulated_object((96, 96))
    moved = np.roll(np.conj(ref[::-1, ::-1]), (3, -5), axis=(0, 1)) * np.exp(0.7j)  # twin, shift, phase
    a_cpu = find_alignment(ref, moved)
    a_gpu = find_alignment(cp.asarray(ref), cp.asarray(moved))
    assert a_gpu.twin == a_cpu.twin
    assert np.allclose(a_gpu.shift, a_cpu.shift, atol=0.05)
    assert abs(np.angle(np.exp(1j * (a_gpu.phase - a_cpu.phase)))) < 1e-3
    np.testing.assert_allclose(asnumpy(apply_alignment(cp.asarray(moved), a_cpu)),
                               apply_alignment(moved, a_cpu), atol=1e-6)
    assert normalized_error(cp.asarray(ref), cp.asarray(moved)) == pytest.approx(
        normalized_error(ref, moved), abs=1e-6)


def test_prtf_and_frc(cp):
    obj = simulated_object((96, 96))
    intensity = simulated_pattern(obj, photons=1e8, seed=4)
    noisy = obj + 0.05 * np.random.default_rng(5).standard_normal(obj.shape)
    q_cpu, p_cpu = prtf(intensity, [obj, noisy])
    q_gpu, p_gpu = prtf(cp.asarray(intensity), [cp.asarray(obj), cp.asarray(noisy)])
    np.testing.assert_allclose(asnumpy(q_gpu), q_cpu)
    np.testing.assert_allclose(asnumpy(p_gpu), p_cpu, rtol=1e-5, atol=1e-7)
    f_cpu = frc(obj, noisy)[1]
    f_gpu = asnumpy(frc(cp.asarray(obj), cp.asarray(noisy))[1])
    np.testing.assert_allclose(f_gpu, f_cpu, rtol=1e-5, atol=1e-7)
