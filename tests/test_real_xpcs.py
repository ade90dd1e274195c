"""The real XPCS stack in ../shared/data, analysed with q-rings from its published geometry
and on its own speckle rings."""

import json
import subprocess
import sys

import numpy as np
import pytest

from speckle.demo import demo_metadata, demo_path
from speckle.io.open import open_dataset
from speckle.xpcs.analysis import XpcsOptions, analyze
from speckle.xpcs.geometry import Geometry
from speckle.xpcs.partitions import q_rings

# published with the dataset (../shared/data/README.md)
PIXEL, DISTANCE, WAVELENGTH, CENTER, FRAME_TIME = 108e-6, 2.230, 1.546e-10, (143, 123), 1.30068e-3
HC = 1.239841984e-6  # eV m


def real_stack(shared_data):
    return open_dataset(shared_data / "xpcs" / "img_stack5301_5401.npy.zip",
                        metadata={"frame_time": FRAME_TIME})


def geometry(center):
    return Geometry(energy=HC / WAVELENGTH, distance=DISTANCE, pixel_size=(PIXEL, PIXEL),
                    beam_center=center)


def test_real_stack_with_published_q_rings(shared_data):
    """The published rings (8-16 pixels from the published centre) lie mostly on the beamstop:
    its pixels are masked, and the few pixels left at its edge give no usable decay."""
    ds = real_stack(shared_data)
    assert ds.shape == (100, 256, 256)
    part = q_rings(ds.frame_shape, geometry(CENTER), q_min=0.0016e10, q_width=2e-4 * 1e10,
                   q_step=2e-4 * 1e10, n_rings=8)
    assert part.n_dynamic == 8
    result = analyze(ds, part, XpcsOptions(device="cpu"))
    assert result.parameters["masked_pixels"]["dead"] > 100  # the beamstop
    assert result.verdict.level == "bad"
    assert all(b.level == "bad" for b in result.verdict.bins)
    json.dumps(result.verdict.to_dict())


def test_real_stack_on_its_speckle_rings(shared_data):
    """Rings around the centre of the data's own speckle rings show real, slow dynamics."""
    ds = real_stack(shared_data)
    part = q_rings(ds.frame_shape, geometry((133, 143)), q_min=0.006e10, q_width=0.003e10,
                   n_rings=8, static_per_dynamic=6)
    result = analyze(ds, part, XpcsOptions(device="cpu"))
    g2 = result.g2.g2
    assert np.isfinite(g2).all()
    # a speckle contrast of 0.1-0.3 at the first lag in every ring, decaying with the lag
    assert ((g2[0] > 1.08) & (g2[0] < 1.4)).all()
    assert (g2[0] > g2[-1]).all()
    assert result.verdict.level != "bad"
    # 100 frames (0.13 s) are short for these dynamics: the verdict asks for a longer run
    assert any("longer" in r for r in result.verdict.reasons())
    assert np.mean(result.intensity_vs_time) == pytest.approx(
        ds.read_frames()[:, part.mask].mean(), rel=1e-12)


def test_bundled_demo_is_the_shared_stack(shared_data):
    assert demo_path("xpcs").read_bytes() == (
        shared_data / "xpcs" / "img_stack5301_5401.npy.zip").read_bytes()
    md = demo_metadata("xpcs")
    assert np.isclose(HC / md["energy"], WAVELENGTH)


def test_demo_command_prints_a_verdict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "speckle", "demo", "--json", "--out",
                           str(tmp_path / "demo.h5")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert len(summary["bins"]) == 8
    assert summary["verdict"] in ("good", "marginal", "bad")
    assert (tmp_path / "demo.h5").is_file()
