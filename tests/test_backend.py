"""The backend: one place imports cupy; numpy on CPU; GPU parity where a GPU is usable."""

import ast
from pathlib import Path

import numpy as np
import pytest

from speckle import backend
from speckle.xpcs.multitau import multitau_g2
from speckle.xpcs.partitions import rectangles
from speckle.xpcs.simulate import ou_speckle
from speckle.xpcs.twotime import twotime_maps

PACKAGE = Path(backend.__file__).resolve().parent


def test_only_the_backend_imports_cupy():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "cupy" for n in names) and path.name != "backend.py":
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_cpu_choice_is_numpy():
    assert backend.get_xp("cpu") is np
    assert backend.array_module(np.zeros(3), None, 1.0) is np
    np.testing.assert_array_equal(backend.asnumpy([1, 2]), [1, 2])


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="auto"):
        backend.get_xp("tpu")


def test_without_gpu_the_description_says_cpu(monkeypatch):
    monkeypatch.setenv("SPECKLE_DISABLE_GPU", "1")
    backend._cupy.cache_clear()
    try:
        assert not backend.gpu_available()
        assert backend.get_xp("auto") is np
        assert backend.device_description().startswith("CPU")
        with pytest.raises(ValueError, match="GPU"):
            backend.get_xp("gpu")
    finally:
        backend._cupy.cache_clear()


gpu = pytest.mark.skipif(not backend.gpu_available(), reason="no usable CUDA device here")


@gpu
@pytest.mark.gpu
def test_gpu_multitau_and_twotime_match_cpu():
    ds = ou_speckle(800, (64, 64), tau_frames=12, beta=0.25, mean_counts=2, seed=1)
    part = rectangles((64, 64), ["0:32,0:64", "32:64,0:64"])
    cpu = multitau_g2(ds, part, device="cpu")
    gpu_res = multitau_g2(ds, part, device="gpu")
    np.testing.assert_allclose(gpu_res.g2, cpu.g2, rtol=1e-5)
    np.testing.assert_allclose(gpu_res.g2_err, cpu.g2_err, rtol=1e-4)
    tc = twotime_maps(ds, part, device="cpu")
    tg = twotime_maps(ds, part, device="gpu")
    for b in tc:
        np.testing.assert_allclose(tg[b], tc[b], rtol=1e-4)
    assert "CPU" not in backend.device_description()


@gpu
@pytest.mark.gpu
def test_gpu_propagation_matches_cpu():
    from speckle.imaging.propagation import propagate

    cp = backend.get_xp("gpu")
    rng = np.random.default_rng(2)
    field = rng.normal(size=(256, 256)) + 1j * rng.normal(size=(256, 256))
    for method in ("angular", "fresnel"):
        cpu = propagate(field, 1e-5, 20e-9, energy=780.0, method=method)
        on_gpu = propagate(cp.asarray(field), 1e-5, 20e-9, energy=780.0, method=method)
        np.testing.assert_allclose(backend.asnumpy(on_gpu), cpu, rtol=1e-9, atol=1e-9)
