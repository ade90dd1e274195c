"""The imaging dashboards (FTH, propagation) and their components, driven headlessly.

As in tests/test_ui_dashboard.py: buttons are clicked with ``click()``, background work is
awaited with ``wait()``. Numbers are checked against a known truth: a simulated object put out
of focus by a known distance, the pixel values of simple fields, the files read back.
"""

import csv
import hashlib
import json
import time
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps

from speckle.demo import DEMOS, demo_path
from speckle.imaging.focus import FOCUS_EXTREMUM, METRICS
from speckle.imaging.fth import helicity_difference
from speckle.imaging.workflow import run_refocus
from speckle.imaging.propagation import propagate
from speckle.io.dataset import ArrayDataset, Metadata
from speckle.io.images import read_image, read_image_result, write_image_result
from speckle.io.imaging_result import read_imaging_result
from speckle.ui import xpcs_dashboard
from speckle.ui.common.data_chooser import describe_dataset
from speckle.ui.imaging import (ComplexImageView, RefocusInput, RefocusPanel,
                                fth_dashboard, propagation_dashboard, render_rgb)
from speckle.ui.imaging.render import image_png
from ui_helpers import HDF5, PNG, drag, visible

ROOT = Path(__file__).resolve().parents[1]
ENERGY, PITCH = 780.0, 20e-9  # eV, m: soft X-rays, as at the beamline
UM = 1e-6


def _blob_object(n=96, seed=3):
    """An absorbing object on a dark background: smoothed random blobs (amplitude 0..1)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random((n, n)), 2.5) > 0.52
    yy, xx = np.mgrid[:n, :n] - n / 2
    inside = np.hypot(yy, xx) < n * 0.32
    return ndimage.gaussian_filter((blobs & inside).astype(float), 0.7).astype(complex)


def _defocused(z=2e-6):
    return propagate(_blob_object(), z, PITCH, energy=ENERGY)


# ------------------------------------------------------------------------ pictures
def test_render_rgb_colours_by_view():
    z = np.array([[1.0, 1j], [-0.5, np.nan]], dtype=complex)
    rgb = render_rgb(z, "complex", "linear")
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])  # phase 0, full magnitude: red
    np.testing.assert_allclose(rgb[1, 1], [0, 0, 0])  # NaN: black
    grey = render_rgb(z, "magnitude", "linear")
    np.testing.assert_allclose(grey[1, 0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(render_rgb(z, "magnitude", "sqrt")[1, 0], [0.5**0.5] * 3)
    np.testing.assert_allclose(render_rgb(z, "magnitude", "log")[1, 0],
                               [1 + np.log10(0.5) / 3] * 3)
    real = render_rgb(z, "real", "linear")
    assert real[0, 0, 0] > real[0, 0, 2]  # +1: the red end of RdBu_r
    assert real[1, 0, 2] > real[1, 0, 0]  # -0.5: the blue end
    np.testing.assert_allclose(real[0, 1], colormaps["RdBu_r"](0.5)[:3])  # Re(i) = 0: middle
    np.testing.assert_allclose(real[1, 1], [0, 0, 0])
    phase = render_rgb(z, "phase")
    assert not np.allclose(phase[0, 0], phase[0, 1])
    png = image_png(rgb)
    assert png[:8] == PNG
    import matplotlib.image

    assert matplotlib.image.imread(__import__("io").BytesIO(png)).shape[:2] == (2, 2)


# ------------------------------------------------------------------------ the complex view
def test_complex_view_regions_typed_drawn_and_cropped():
    view = ComplexImageView()
    field = np.arange(60 * 80, dtype=float).reshape(60, 80) * np.exp(1j)
    view.set_image(field, "test")
    assert view.shape == (60, 80) and "speckle-complex-image" in view._dom_classes
    assert view.rgb().shape == (60, 80, 3)
    assert view.png()[:8] == PNG
    assert "none (the whole image)" in view.region_info.value
    np.testing.assert_array_equal(view.crop(), field)

    version = view.regions_version
    view.region_text.value = "10:20,30:50"  # typed, then Enter
    assert view.region == (10, 20, 30, 50) and view.region_text.value == ""
    assert view.regions_version == version + 1
    np.testing.assert_array_equal(view.crop(), field[10:20, 30:50])
    assert "rows 10:20, cols 30:50 (10×20 px)" in view.region_info.value

    view.region_text.value = "nonsense"
    assert "ROW0:ROW1,COL0:COL1" in view.message.text
    assert "speckle-error" in view.message._dom_classes
    view.region_text.value = "0:10,0:200"
    assert "outside" in view.message.text and view.region == (10, 20, 30, 50)

    canvas = view.canvas
    canvas.draw()
    drag(canvas, view.ax, (5, 8), (40, 30), via=(20, 20))
    assert view.regions == [(8, 31, 5, 41)]  # one region: the drawn one replaced the typed
    assert view.message.text == ""

    view.set_image(field[:50])  # another shape: the regions no longer apply
    assert view.regions == []


def test_complex_view_with_several_regions_and_none():
    view = ComplexImageView(max_regions=None)
    view.set_image(np.ones((32, 32)))
    view.add_region(0, 4, 0, 4)
    view.add_region(10, 20, 10, 20)
    assert view.regions == [(0, 4, 0, 4), (10, 20, 10, 20)]
    assert view.region_list.options == ("1: rows 0:4, cols 0:4 (4×4 px)",
                                        "2: rows 10:20, cols 10:20 (10×10 px)")
    view.region_list.index = 0
    view.delete_button.click()
    assert view.regions == [(10, 20, 10, 20)]
    view.clear_button.click()
    assert view.regions == []

    plain = ComplexImageView(max_regions=0)
    plain.set_image(np.ones((8, 8)))
    assert plain.add_region(0, 2, 0, 2) is False and plain.regions == []
    assert plain.side.layout.display == "none"


def test_complex_view_log_decades_and_tints():
    image = np.array([[1.0, 1e-4], [1e-2, 0.0]])
    view = ComplexImageView(view="magnitude", scale="log", views=("magnitude",))
    view.set_image(image)
    # 3 decades by default: 1e-2 of the maximum at a third of the brightness, 1e-4 black
    np.testing.assert_allclose(view.rgb()[1, 0], [1 / 3] * 3)
    np.testing.assert_allclose(view.rgb()[0, 1], [0, 0, 0])
    view.decades = 6  # redrawn: 1e-4 at a third, 1e-2 at two thirds
    np.testing.assert_allclose(view.rgb()[0, 1], [1 / 3] * 3)
    np.testing.assert_allclose(view.rgb()[1, 0], [2 / 3] * 3)
    np.testing.assert_allclose(view.rgb()[1, 1], [0, 0, 0])
    np.testing.assert_array_equal(view.rgb(), render_rgb(image, "magnitude", "log", decades=6))
    assert ComplexImageView(decades=5).decades == 5

    corner = np.array([[True, False], [False, False]])
    view.set_tint(corner, (0.0, 1.0, 0.0, 0.5), name="support")
    np.testing.assert_array_equal(view.tints["support"], corner)
    layer = view._tint_artists["support"]
    assert layer.get_visible() and layer.get_zorder() > view._shown.get_zorder()
    np.testing.assert_allclose(layer.get_array()[0, 0], [0, 1, 0, 0.5])
    assert layer.get_array()[1, 1, 3] == 0  # untinted pixels are transparent
    view.set_tint(None, name="support")
    assert "support" not in view.tints and not layer.get_visible()
    view.set_tint(corner, name="mask")
    view.set_image(np.ones((4, 4)))  # another image: a tint of the old one's pixels goes
    assert view.tints == {} and not view._tint_artists["mask"].get_visible()


# ------------------------------------------------------------------------ the refocus panel
def _panel(home, field, **kw):
    panel = RefocusPanel(lambda: RefocusInput(field=field, label="sim", **kw),
                         results_dir=home / "speckle-results")
    panel.set_parameters(energy=ENERGY, pitch=PITCH, z_range=(-5e-6, 5e-6))
    panel.steps.value = 41
    panel.apodization.value = 0.0
    return panel


def test_refocus_finds_a_known_defocus_and_writes_its_files(home):
    field = _defocused(2e-6)  # truth: back by -2 µm
    panel = _panel(home, field)
    assert "speckle-run-panel" in panel.run_panel._dom_classes
    assert {"speckle-refocus-run", "speckle-run-button"} <= set(panel.run_button._dom_classes)
    # before a sweep: a hint, no empty plot
    assert panel._body.layout.display == "none" and panel.hint.layout.display is None
    t0 = time.perf_counter()
    panel.run_button.click()
    assert time.perf_counter() - t0 < 0.5, "the click handler must return at once"
    assert panel.wait(60)
    assert panel.state == "done", panel.error
    assert panel.progress.value == 1.0 and panel.stage.value.startswith("done in")
    assert panel._body.layout.display is None and panel.hint.layout.display == "none"
    step = 10e-6 / 40
    assert panel.metric.value == "edge_sparsity"
    assert abs(panel.best_distance() + 2e-6) <= step + 1e-12
    assert abs(panel.distance + 2e-6) <= step + 1e-12  # the marker starts at the best
    assert f"{panel.distance / UM:+.3f} µm" in panel.distance_text.value
    first = panel.frame.value
    assert first[:8] == PNG

    # the marker, moved by the slider, shows the field at another distance
    panel.slider.value = 0
    assert panel.wait(30) and panel.index == 0
    assert panel.distance == pytest.approx(-5e-6)
    assert panel.frame.value[:8] == PNG and panel.frame.value != first
    assert "-5.000 µm" in panel.frame_caption.value
    np.testing.assert_allclose(panel.frame_at(-5e-6), propagate(field, -5e-6, PITCH,
                                                                energy=ENERGY), atol=1e-9)
    # ... and dragged on the plot
    panel.plot.draw()
    y = np.mean(panel.ax.get_ylim())
    drag(panel.plot, panel.ax, (1.0, y), (2.6, y))
    assert panel.wait(30)
    assert panel.distance == pytest.approx(2.5e-6) and panel.slider.value == panel.index
    np.testing.assert_allclose(panel._marker.get_xdata(), [2.5, 2.5])
    # the gradient view
    shown = panel.frame.value
    panel.frame_view.value = "gradient"
    assert panel.wait(30) and panel.frame.value != shown and "∇" in panel.frame_caption.value
    panel.go_to_best()
    assert panel.wait(30) and abs(panel.distance + 2e-6) <= step + 1e-12

    # the files: table, HDF5, pictures, in a complete folder
    files = panel.files
    assert files["csv"].parent == panel.folder and panel.folder.parent == home / "speckle-results"
    with open(files["csv"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["distance_um", *METRICS]
    assert len(rows) == 42
    z_um = np.array([float(r[0]) for r in rows[1:]])
    np.testing.assert_allclose(z_um, np.linspace(-5, 5, 41))
    tamura = np.array([float(r[1 + METRICS.index("edge_sparsity")]) for r in rows[1:]])
    assert z_um[np.argmax(tamura)] == pytest.approx(panel.best_distance() / UM)
    assert files["hdf5"].read_bytes()[:8] == HDF5
    arrays, attrs = read_image_result(files["hdf5"])
    assert attrs["kind"] == "propagation" and attrs["metric"] == "edge_sparsity"
    assert attrs["layout_version"] == 1 and attrs["source"] == "sim"
    assert attrs["energy_ev"] == ENERGY and attrs["pixel_size_m"] == pytest.approx(PITCH)
    assert attrs["best_distance_m"] == pytest.approx(panel.best_distance())
    # the focus refined between the sampled distances, as the command line does
    assert abs(attrs["focus_distance_m"] + 2e-6) < 0.1e-6
    np.testing.assert_allclose(arrays["field"], field)
    np.testing.assert_allclose(arrays["focused"], propagate(field, attrs["focus_distance_m"],
                                                            PITCH, energy=ENERGY), atol=1e-6)
    # one way: the panel's file is what run_refocus gives with the panel's options
    saved_result = read_imaging_result(files["hdf5"])
    direct = run_refocus(field, panel.options(), source="sim")
    assert saved_result.options == direct.options == panel.result.options
    assert saved_result.focus_distance == direct.focus_distance
    for name in ("distances", "field", "focused"):
        np.testing.assert_array_equal(getattr(saved_result, name), getattr(direct, name))
    assert saved_result.verdict == direct.verdict and saved_result.verdict.level == "good"
    # refocused, the object is back: much closer to the truth than the defocused field
    truth = _blob_object()
    assert np.abs(np.abs(arrays["focused"]) - np.abs(truth)).max() < \
        0.5 * np.abs(np.abs(field) - np.abs(truth)).max()
    for key in ("sharpness_png", "input_png", "best_png"):
        assert files[key].read_bytes()[:8] == PNG
    links = panel.downloads.value
    assert links.count("speckle-download-link") == 5 and "sharpness.csv" in links
    rel = panel.folder.relative_to(home).as_posix()
    assert f"href='/user/ana/files/{rel}/result.h5?download=1'" in links

    saved = panel.save_frame()
    assert saved.is_file() and saved.read_bytes()[:8] == PNG and saved.name.startswith("gradient")
    assert panel.downloads.value.count("speckle-download-link") == 6
    panel.clear()  # new data: the plots go until the next sweep
    assert panel._body.layout.display == "none" and panel.hint.layout.display is None


def test_refocus_metric_and_extremum_choice(home):
    panel = _panel(home, _defocused(-1e-6))
    panel.steps.value = 21
    panel.run()
    assert panel.wait(60) and panel.state == "done", panel.error
    for metric in METRICS:
        panel.metric.value = metric
        assert panel.extremum.value == FOCUS_EXTREMUM[metric]
        values = panel.sweep.sharpness[metric]
        np.testing.assert_allclose(panel._curve.get_ydata(), values)
        pick = np.argmax if panel.extremum.value == "max" else np.argmin
        assert panel.best_distance() == panel.sweep.distances[pick(values)]
    panel.extremum.value = "min"
    values = panel.sweep.sharpness[panel.metric.value]
    assert panel.best_distance() == panel.sweep.distances[np.argmin(values)]
    np.testing.assert_allclose(panel._best_line.get_xdata(), [panel.best_distance() / UM] * 2)


def test_refocus_errors_and_cancel_write_nothing(home):
    results = home / "speckle-results"
    panel = _panel(home, _defocused())
    panel.energy.value = 0
    panel.run_button.click()
    assert panel.state == "failed" and "photon energy must be positive" in panel.message.text
    assert "speckle-error" in panel.message._dom_classes
    panel.energy.value = ENERGY
    panel.z_to.value = panel.z_from.value
    panel.run()
    assert "distance range" in panel.message.text
    small = _panel(home, np.ones((4, 30), complex))
    small.run()
    assert small.state == "failed" and "at least 8 × 8" in small.message.text
    nan = _panel(home, np.full((16, 16), np.nan, complex))
    nan.run()
    assert nan.wait(30) and nan.state == "failed" and "NaN" in nan.message.text
    assert visible(results) == []
    blocked = home / "not-a-folder"
    blocked.write_text("a file where the results folder should be")
    unwritable = RefocusPanel(lambda: RefocusInput(field=_defocused()), results_dir=blocked)
    unwritable.run()
    assert unwritable.wait(30) and unwritable.state == "failed"
    assert "The file system refused" in unwritable.message.text
    assert "No result files were written" in unwritable.downloads.value

    big = _panel(home, np.ones((384, 384), complex))
    big.steps.value = 2001
    big.run_button.click()
    time.sleep(0.3)
    assert big.state == "running" and not big.cancel_button.disabled
    t0 = time.perf_counter()
    big.cancel_button.click()
    assert big.wait(20) and time.perf_counter() - t0 < 5
    assert big.state == "cancelled" and big.stage.value == "cancelled"
    assert big.message.text == "" and big.sweep is None
    assert not big.run_button.disabled and big.cancel_button.disabled
    assert visible(results) == []  # nothing written, not even a hidden partial folder


# ------------------------------------------------------------------------ the FTH dashboard
def test_fth_demo_to_reconstruction_region_refocus_and_downloads(home):
    dash = fth_dashboard()
    assert {"speckle-fth", "speckle-dashboard"} <= set(dash._dom_classes)
    assert [b for b in dash.chooser.demo_buttons if "speckle-demo-fth" in b._dom_classes]
    [demo] = [b for b in dash.chooser.demo_buttons if "speckle-demo-fth" in b._dom_classes]
    demo.click()
    assert dash.wait(60) and dash.chooser.state == "ready", dash.message.text
    hologram, _ = read_image(demo_path("fth"))
    np.testing.assert_array_equal(dash.hologram, hologram)
    # the log view shows the decades the hologram spans (beyond 3), up to the cap of 8
    positive = hologram[np.isfinite(hologram) & (hologram > 0)]
    span = np.log10(positive.max() / positive.min())
    assert span > 6
    assert dash.hologram_view.decades == min(8.0, np.ceil(2 * span) / 2)
    # the demo file gives no energy or pixel size: the defaults are marked as such
    refocus = dash.refocus
    assert refocus.assumed == {"energy", "pitch"}
    for w in (refocus.energy, refocus.pitch):
        assert "speckle-refocus-assumed" in w._dom_classes
    assert "not from the file — check" in refocus.assumed_note.value
    refocus.energy.value = 706.0  # the user types it: no longer marked
    assert "speckle-refocus-assumed" not in refocus.energy._dom_classes
    assert "speckle-refocus-assumed" in refocus.pitch._dom_classes
    assert "energy" not in refocus.assumed_note.value and "pitch" in refocus.assumed_note.value
    refocus.pitch.value = 20.0  # the same value as the default: not an edit
    assert "speckle-refocus-assumed" in refocus.pitch._dom_classes
    refocus.pitch.value = 21.0
    assert refocus.assumed == set() and refocus.assumed_note.value == ""
    info = dash.chooser.info.value  # a single image: no frame time
    assert "512 × 512 pixels" in info and "frame time" not in info
    # the demo hologram is centred on its middle pixel (its reconstruction's disc is at 256)
    assert abs(dash.center_row.value - 256) < 0.5 and abs(dash.center_col.value - 256) < 0.5
    rec = dash.result.reconstruction
    assert rec.shape == (512, 512) and np.iscomplexobj(rec)
    assert dash.result.verdict.level == "good" and "speckle-fth-verdict-good" in \
        dash.status.value
    # the reconstruction is the inverse FFT of the hologram: Parseval
    assert np.sum(np.abs(rec) ** 2) == pytest.approx(np.sum(hologram**2) / hologram.size,
                                                     rel=1e-9)
    # the suggested region holds one of the two cross-terms (at (156,156) and (356,356))
    r0, r1, c0, c1 = dash.reconstruction_view.region
    centre = ((r0 + r1) / 2, (c0 + c1) / 2)
    assert min(np.hypot(centre[0] - p, centre[1] - p) for p in (156, 356)) < 6
    assert (r1 - r0) < 100 and (c1 - c0) < 100

    # a typed region, then refocus it
    dash.reconstruction_view.region_text.value = "320:392,320:392"
    dash.refocus.steps.value = 21
    dash.refocus.run_button.click()
    assert dash.wait(60) and dash.refocus.state == "done", dash.refocus.error
    arrays, attrs = read_image_result(dash.refocus.files["hdf5"])
    assert attrs["kind"] == "propagation" and attrs["source_kind"] == "fth"
    assert attrs["region"] == [320, 392, 320, 392]
    assert attrs["options"]["apodization"] == dash.refocus.apodization.value > 0
    np.testing.assert_array_equal(arrays["image"], rec)  # the whole reconstruction, kept
    window = arrays["field"] / rec[320:392, 320:392]  # the apodization window
    assert np.allclose(window.imag, 0) and window.real.max() <= 1 + 1e-12
    assert window.real[36, 36] == pytest.approx(1.0) and window.real[0, 0] < 0.05
    assert dash.refocus.folder.name.startswith("demo-fth-refocus-")

    # the reconstruction itself, saved and offered
    dash.save_button.click()
    folder = dash.files["hdf5"].parent
    saved = read_imaging_result(dash.files["hdf5"])
    np.testing.assert_array_equal(saved.reconstruction, rec)
    assert saved.region == (320, 392, 320, 392) and saved.verdict == dash.result.verdict
    assert dash.files["png"].read_bytes()[:8] == PNG
    assert dash.downloads.value.count("speckle-download-link") == 3
    assert folder.name.startswith("demo-fth-fth-")

    # a new centre and apodization, typed: reconstructed with them
    dash.center_row.value, dash.center_col.value = 255.5, 256.0
    dash.apodization.value = 0.2
    dash.reconstruct_button.click()
    assert dash.wait(30)
    assert dash.result.center == (255.5, 256.0)
    assert dash.result.options.apodization == pytest.approx(0.2)
    dash.center_row.value = 900
    dash.reconstruct_button.click()
    assert dash.wait(30) and "outside" in dash.message.text
    assert "speckle-error" in dash.message._dom_classes


def test_fth_helicity_difference_and_phase_rotation(home):
    dash = fth_dashboard()
    dash.chooser.open_demo("fth")
    assert dash.wait(60)
    dash.plus_button.click()
    assert dash.difference.disabled
    dash.chooser.open_demo("cdi")
    assert dash.wait(60)
    dash.minus_button.click()
    assert not dash.difference.disabled
    dash.difference.value = True
    assert dash.wait(30), dash.message.text
    plus, _ = read_image(demo_path("fth"))
    minus, _ = read_image(demo_path("cdi"))
    np.testing.assert_allclose(dash.hologram, helicity_difference(plus, minus))
    assert dash.hologram.sum() == pytest.approx(0, abs=1e-6 * plus.sum())  # charge cancels

    # Find centre in difference mode centres the sum of the helicities (as the CLI does), not
    # the weak, antisymmetric difference; the two differ by half a pixel here
    from speckle.imaging.fth import find_center, rotate_phase_to_real
    on_sum = find_center(plus + minus, weight="log")
    on_difference = find_center(dash.hologram, weight="log")
    assert abs(on_sum[1] - on_difference[1]) > 0.2
    dash.find_button.click()
    assert dash.wait(30), dash.message.text
    assert dash.result.center == pytest.approx(on_sum, abs=1e-9)

    # Rotate phase to real without a region: the strongest cross-term's box (as the CLI), not
    # the whole frame (whose phase is dominated by the central autocorrelation)
    view = dash.reconstruction_view
    view.clear_regions()
    image = view.image.copy()
    box = dash.result.cross_terms[0].box
    phi_box = rotate_phase_to_real(image, box)[1]
    assert abs(np.angle(np.exp(1j * (phi_box - rotate_phase_to_real(image)[1])))) > 0.1
    dash.rotate_button.click()
    np.testing.assert_allclose(view.image, image * np.exp(-1j * phi_box), rtol=1e-9)
    dash.reconstruct_button.click()
    assert dash.wait(30)

    view = dash.reconstruction_view
    view.add_region(60, 160, 200, 310)
    before = view.crop().copy()
    # the difference comes rotated already (by the strongest cross-term's phase, as the CLI)
    assert dash.phase == dash.result.phase_rotation
    taken = dash.phase
    dash.rotate_button.click()
    after = view.crop()
    assert view.view.value == "real"
    # the same magnitudes, one global phase off, more of the contrast in the real part
    np.testing.assert_allclose(np.abs(after), np.abs(before), rtol=1e-12)
    np.testing.assert_allclose(after, before * np.exp(-1j * (dash.phase - taken)), rtol=1e-9)
    assert np.sum(after.real**2) >= np.sum(before.real**2)
    assert np.sum(after.real**2) >= np.sum(after.imag**2)


# ------------------------------------------------------------------------ the propagation dashboard
def test_propagation_field_from_code_and_demo_modes(home):
    dash = propagation_dashboard()
    assert {"speckle-propagation", "speckle-dashboard"} <= set(dash._dom_classes)
    dash.set_field(_defocused(3e-6), "simulated", energy=ENERGY, pixel_size=PITCH)
    assert dash.refocus.energy.value == ENERGY and dash.refocus.pitch.value == pytest.approx(20)
    assert dash.refocus.assumed == set()  # both given: nothing marked "not from the file"
    dash.refocus.z_from.value, dash.refocus.z_to.value, dash.refocus.steps.value = -6, 6, 49
    dash.refocus.run()
    assert dash.wait(60) and dash.refocus.state == "done", dash.refocus.error
    assert abs(dash.refocus.best_distance() + 3e-6) <= 0.25e-6 + 1e-12

    # the demo: a hologram, inverted; the other modes take the image as it is. Only the FTH
    # demo is offered: the CDI demo is a diffraction pattern, not a hologram
    offered = {c for b in dash.chooser.demo_buttons for c in b._dom_classes}
    assert "speckle-demo-fth" in offered and "speckle-demo-cdi" not in offered
    dash.chooser.open_demo("fth")
    assert dash.wait(60), dash.message.text
    assert dash.mode.value == "hologram" and dash.refocus.sweep is None
    image, _ = read_image(demo_path("fth"))
    assert np.iscomplexobj(dash.field) and dash.field_view.region is not None
    dash.mode.value = "amplitude"
    assert dash.wait(30)
    np.testing.assert_array_equal(dash.field, image)
    assert dash.field_view.region is None
    dash.mode.value = "intensity"
    assert dash.wait(30)
    np.testing.assert_allclose(dash.field.real, np.sqrt(np.maximum(image, 0)))
    dash.field_view.add_region(100, 200, 100, 200)
    given = dash._refocus_input()
    assert given.field.shape == (100, 100) and given.region == (100, 200, 100, 200)
    np.testing.assert_array_equal(given.image, dash.field)  # the amplitude of the intensity


def test_unreadable_data_is_a_message_in_the_page(home, tmp_path):
    bad = tmp_path / "beam" / "empty.npy"
    bad.parent.mkdir()
    np.save(bad, np.full((2, 16, 16), np.nan))
    for dash in (fth_dashboard(data_dirs=[bad.parent]), propagation_dashboard()):
        dash.chooser.open_path(bad)
        assert dash.wait(30)
        assert "no finite value" in dash.message.text
        assert "speckle-error" in dash.message._dom_classes
        assert dash.refocus.sweep is None
    dash.refocus.run()
    assert "choose data first" in dash.refocus.message.text


def test_the_dataset_description_shows_the_rows_that_fit():
    md = Metadata(frame_time=2e-3, energy=780.0)
    stack = describe_dataset(ArrayDataset(np.ones((5, 8, 6)), md), "stack")
    assert "5 of 8 × 6 pixels" in stack and "frame time" in stack and "2 ms" in stack
    single = describe_dataset(ArrayDataset(np.ones((8, 6)), md), "one image")
    assert "frame time" not in single and "frames" not in single
    assert "8 × 6 pixels" in single and "0.78 keV" in single


# ------------------------------------------------------------------------ saved results as data
def test_a_saved_fth_result_opens_again_as_a_field_and_as_a_hologram(home):
    fth = fth_dashboard()
    fth.chooser.open_demo("fth")
    assert fth.wait(60)
    fth.reconstruction_view.region_text.value = "320:392,320:392"
    fth.save_button.click()
    saved, rec = fth.files["hdf5"], fth.reconstruction_view.image
    folder = saved.parent.name

    # chosen in the beamline list like any data: the complex reconstruction is the field
    dash = propagation_dashboard(data_dirs=[home / "speckle-results"])
    chooser = dash.chooser
    chooser.listing.value = folder  # a folder opens on selection
    chooser.listing.value = f"{folder}/result.h5"
    chooser.open_button.click()
    assert dash.wait(60) and chooser.state == "ready", chooser.message.text
    assert dash.message.text == ""
    assert np.iscomplexobj(dash.field)
    np.testing.assert_array_equal(dash.field, rec)
    assert dash.field_view.region == (320, 392, 320, 392)  # the region it was saved with
    assert dash.mode.disabled  # no image to make a field of
    assert "saved result" in chooser.info.value and "FTH, showing reconstruction" in \
        chooser.info.value and "frame time" not in chooser.info.value
    given = dash._refocus_input()
    np.testing.assert_array_equal(given.field, rec[320:392, 320:392])
    assert given.region == (320, 392, 320, 392) and given.kind == "propagation"

    # the FTH dashboard reconstructs its hologram again
    again = fth_dashboard()
    again.chooser.open_path(saved)
    assert again.wait(60) and again.message.text == "", again.message.text
    np.testing.assert_array_equal(again.hologram, fth.hologram)
    np.testing.assert_allclose(again.result.reconstruction, fth.result.reconstruction)

    # the XPCS dashboard says where it opens instead
    xpcs = xpcs_dashboard()
    xpcs.chooser.open_path(saved)
    assert xpcs.wait(30) and xpcs.chooser.state == "failed" and xpcs.chooser.dataset is None
    assert "saved FTH result" in xpcs.chooser.message.text
    assert "propagation or CDI dashboard" in xpcs.chooser.message.text


def test_a_saved_defocused_field_is_refocused_with_its_own_energy_and_pitch(home):
    path = home / "sim" / "result.h5"
    path.parent.mkdir()
    field = _defocused(2e-6)  # truth: back by -2 µm
    write_image_result(path, {"image": field, "focused": field[:16, :16]},
                       {"kind": "propagation", "energy_ev": ENERGY, "pixel_size_m": PITCH})
    dash = propagation_dashboard()
    dash.refocus.energy.value, dash.refocus.pitch.value = 500.0, 5.0  # wrong: the file says
    dash.chooser.open_path(path)
    assert dash.wait(30) and dash.message.text == "", dash.message.text
    np.testing.assert_array_equal(dash.field, field)  # "image" (the whole field) is preferred
    assert dash.field_view.region is None
    assert dash.refocus.energy.value == ENERGY and dash.refocus.pitch.value == pytest.approx(20)
    dash.refocus.set_parameters(z_range=(-5e-6, 5e-6))
    dash.refocus.steps.value, dash.refocus.apodization.value = 41, 0.0
    dash.refocus.run()
    assert dash.wait(60) and dash.refocus.state == "done", dash.refocus.error
    assert abs(dash.refocus.best_distance() + 2e-6) <= 0.25e-6 + 1e-12

    # a result with no image at all is refused in words
    empty = home / "sim" / "empty.h5"
    write_image_result(empty, {"distances": np.arange(5.0)}, {"kind": "propagation"})
    dash.chooser.open_path(empty)
    assert dash.wait(30) and dash.chooser.state == "failed"
    assert "holds no 2D image" in dash.chooser.message.text


# ------------------------------------------------------------------------ demo data shipped
def test_imaging_demos_are_shipped_with_their_provenance(shared_data):
    provenance = (ROOT / "speckle" / "demo" / "PROVENANCE.md").read_text()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["speckle.demo"]
    for name in ("fth", "cdi"):
        path = demo_path(name)
        assert path.read_bytes() == (shared_data / "als-demo" / f"{name}.fits").read_bytes()
        assert hashlib.sha256(path.read_bytes()).hexdigest() in provenance
        assert any(fnmatch(path.name, pattern) for pattern in package_data)
    for name, (filename, _) in DEMOS.items():
        assert any(fnmatch(filename, pattern) for pattern in package_data), filename
    # the XPCS dashboard keeps offering its own demo only
    xpcs = xpcs_dashboard()
    assert [b.description for b in xpcs.chooser.demo_buttons] == [
        "XPCS demo: 100 real frames, 256×256 (scikit-beam examples)"]


def test_dashboard_notebooks_are_two_lines():
    for name, call in (("fth_reconstruction", "fth_dashboard"),
                       ("propagation", "propagation_dashboard"), ("cdi_phasing", "cdi_dashboard")):
        nb = json.loads((ROOT / "notebooks" / "dashboards" / f"{name}.ipynb").read_text())
        code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        assert code == [f"from speckle.ui.imaging import {call}", f"{call}()"]
