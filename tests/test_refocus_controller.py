"""The refocus panel's controller on its own: plain Python, no widgets.

A field defocused by a known distance is swept; the controller's best distance, marker index,
frames and result folder are checked against that truth and against the library's own
workflow and propagation.
"""

import csv
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from speckle.errors import InvalidInputError
from speckle.imaging.focus import FOCUS_EXTREMUM, METRICS
from speckle.imaging.options import RefocusOptions
from speckle.imaging.propagation import propagate
from speckle.io.imaging_result import read_imaging_result
from speckle.ui.imaging.refocus_controller import RefocusController, RefocusInput

ENERGY, PITCH = 780.0, 20e-9  # eV, m
UM = 1e-6
TRUTH = -2e-6  # the field below is in focus 2 µm back


def _field(n=96, seed=3):
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random((n, n)), 2.5) > 0.52
    yy, xx = np.mgrid[:n, :n] - n / 2
    obj = ndimage.gaussian_filter((blobs & (np.hypot(yy, xx) < n * 0.32)).astype(float), 0.7)
    return propagate(obj.astype(complex), -TRUTH, PITCH, energy=ENERGY)


def _controller(steps=41):
    c = RefocusController()
    c.set_parameters(energy=ENERGY, pitch=PITCH, z_range=(-5e-6, 5e-6))
    c.fields.steps, c.fields.apodization = steps, 0.0
    return c


@pytest.fixture(scope="module")
def swept():
    c = _controller()
    given = RefocusInput(field=_field(), label="sim")
    options = c.check(given)
    c.accept(c.refocus(given, options), given)
    return c


def test_the_fields_become_the_options_in_si_units():
    c = _controller(steps=21)
    c.fields.metric, c.fields.extremum, c.fields.method = "brenner", "min", "fresnel"
    o = c.options((1, 9, 2, 8))
    assert o.distances == pytest.approx((-5e-6, 5e-6, 21), rel=1e-12)  # typed in µm
    assert replace(o, distances=(-5e-6, 5e-6, 21)) == RefocusOptions(
        energy=ENERGY, pixel_size=PITCH, distances=(-5e-6, 5e-6, 21), region=(1, 9, 2, 8),
        apodization=0.0, metric="brenner", extremum="min", method="fresnel")
    for name, value, words in (("energy", 0.0, "photon energy must be positive"),
                               ("pitch", -1.0, "pixel pitch must be positive"),
                               ("z_to", -5.0, "is empty")):
        old = getattr(c.fields, name)
        setattr(c.fields, name, value)
        with pytest.raises(InvalidInputError, match=words):
            c.options()
        setattr(c.fields, name, old)
    with pytest.raises(InvalidInputError, match="at least"):
        c.check(RefocusInput(field=np.ones((2, 40), complex)))
    assert all(c.default_extremum(m) == FOCUS_EXTREMUM[m] for m in METRICS)


def test_the_sweep_finds_the_known_defocus_and_the_marker_follows(swept):
    c = swept
    step = 10e-6 / 40
    assert abs(c.best_distance() - TRUTH) <= step + 1e-12
    assert c.distance == pytest.approx(np.asarray(c.sweep.distances)[c.index])
    assert c.index == c.best_index() and abs(c.distance - TRUTH) <= step + 1e-12
    assert set(c.best_distances()) == set(c.sweep.sharpness)
    assert c.best_distances()[c.fields.metric] == c.best_distance()
    assert c.index_at(-5.0) == 0 and c.index_at(99.0) == len(c.sweep.distances) - 1
    c.index = 0
    assert c.distance == pytest.approx(-5e-6)
    np.testing.assert_allclose(c.frame_at(-5e-6), propagate(_field(), -5e-6, PITCH,
                                                            energy=ENERGY), atol=1e-9)
    assert c.frame_rgb(-5e-6, "gradient", "linear").shape == (96, 96, 3)
    c.index = c.best_index()


def test_the_result_folder_and_a_saved_frame(swept, tmp_path):
    c = swept
    with pytest.raises(InvalidInputError, match="refocus first"):
        RefocusController().save_frame("field", "linear")
    stages = []
    c.write(lambda f, s: stages.append(f), tmp_path)
    assert stages == sorted(stages) and c.folder.parent == tmp_path
    assert c.folder.name.startswith("sim-refocus")
    with open(c.files["csv"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["distance_um", *c.sweep.sharpness]
    assert [float(r[0]) for r in rows[1:]] == pytest.approx(
        np.asarray(c.sweep.distances) / UM)
    saved = read_imaging_result(c.files["hdf5"])
    assert saved.focus_distance == pytest.approx(c.best_distance())
    path = c.save_frame("gradient", "log")
    assert path.parent == c.folder and path.name.startswith("gradient_z")
    assert c.files["frame_png"] == path and path.read_bytes()[:4] == b"\x89PNG"
    c.clear()
    assert c.sweep is None and c.folder is None and c.files == {} and c.distance is None
