"""The CDI phasing dashboard, driven headlessly through its own widgets and run path.

As in tests/test_ui_imaging.py: buttons are clicked with ``click()``, background work is
awaited with ``wait()``. Numbers are checked against a known truth: a simulated real object
whose noisy diffraction pattern (with a masked beamstop) the dashboard phases, files read back
and compared with what is shown, masks and windows counted by hand.
"""

import io
import time
import zipfile

import numpy as np
import pytest

from speckle.imaging.align import normalized_error
from speckle.imaging.display import display_window
from speckle.imaging.verdict import prtf_cutoff
from speckle.io.imaging_result import read_imaging_result
from speckle.io.images import read_image, read_image_result
from speckle.ui.imaging import cdi_dashboard
from ui_helpers import HDF5, PNG, drag, visible

N = 64
BEAMSTOP = (31, 34, 31, 34)  # the 3×3 pixels around the zero frequency
SUPPORT = (22, 43, 22, 41)  # a loose box around the object (rows 25-39, columns 25-37)
QUICK = "20*ER + 180*HIO + 20*ER"


def _object():
    """A real, non-negative object: a textured ellipse in a 64 × 64 frame (oversampled ~4×)."""
    yy, xx = np.mgrid[:N, :N]
    inside = ((yy - 32) / 7.0) ** 2 + ((xx - 31) / 6.0) ** 2 <= 1
    return np.where(inside, 1.0 + 0.5 * np.cos(xx / 2.0) * np.sin(yy / 3.0), 0.0)


def _pattern(obj, photons=1e6, seed=0):
    """Centred far-field intensity with Poisson noise (``photons`` at the brightest pixel)."""
    intensity = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(obj)))) ** 2
    rng = np.random.default_rng(seed)
    return rng.poisson(intensity / intensity.max() * photons).astype(float)


def _dashboard(home, pattern=None):
    dash = cdi_dashboard(data_dirs=[], upload_dir=home / "uploads")
    if pattern is not None:
        dash.set_pattern(pattern, label="simulated")
        assert dash.wait(30)
    return dash


def _quick(dash, schedule=QUICK, rounds=1, trials=1):
    dash.schedule.value = schedule
    dash.rounds.value = rounds
    dash.trials.value = trials


# ------------------------------------------------------------------------ helpers
def test_window_and_cutoff_against_hand_counts():
    support = np.zeros((200, 300), bool)
    support[90:110, 140:150] = True  # 20 × 10 pixels
    assert display_window(support, margin=5, min_side=0) == (85, 115, 135, 155)
    assert display_window(support, margin=0, min_side=64) == (68, 132, 113, 177)
    edge = np.zeros((100, 100), bool)
    edge[0:4, 95:100] = True  # near a corner: the window stays inside, 64 pixels each way
    assert display_window(edge, margin=0, min_side=64) == (0, 64, 36, 100)
    assert display_window(np.zeros((30, 40), bool)) == (0, 30, 0, 40)

    q = (np.arange(50) + 0.5) / 50
    assert prtf_cutoff((q, np.exp(-q / 0.5))) == pytest.approx(0.51)  # exp(-1) at q = 0.5
    assert prtf_cutoff((q, np.ones(50))) is None
    values = np.exp(-q / 0.5)
    values[5] = np.nan  # a ring without a measured pixel is not a fall below 1/e
    assert prtf_cutoff((q, values)) == pytest.approx(0.51)


def test_centring_binning_and_the_mask_of_the_pattern(home):
    pattern = _pattern(_object(), photons=1e4)
    shifted = np.roll(pattern, (3, -5), axis=(0, 1))
    zeros = int((shifted <= 0).sum())
    assert zeros > 0  # Poisson zeros at high q
    dash = _dashboard(home, shifted)
    assert dash.prepared.mask.sum() == 0  # zeros are measurements unless asked
    assert np.unravel_index(np.argmax(dash.prepared.pattern), (N, N)) == (35, 27)
    dash.nonpositive.value = True
    assert dash.wait(30) and dash.prepared.mask.sum() == zeros
    assert f"{zeros} of {N * N}" in dash.mask_info.value
    assert ("photon-counting" in dash.mask_info.value) == (zeros > 0.2 * N * N)
    dash.nonpositive.value = False
    dash.center.value = True
    assert dash.wait(30) and dash.prepared.center == pytest.approx((35, 27), abs=0.5)
    assert np.unravel_index(np.nanargmax(dash.prepared.pattern), (N, N)) == (32, 32)
    came_in = ~np.isfinite(dash.prepared.pattern)  # 3 rows and 5 columns came from outside
    assert came_in.sum() == 3 * N + 5 * N - 15 and dash.prepared.mask[came_in].all()
    assert dash.pattern_view.image.shape == (N, N)
    dash.center.value = False
    dash.binning.value = 2
    assert dash.wait(30) and dash.pattern_view.image.shape == (N // 2, N // 2)
    assert dash.prepared.pattern.sum() == pytest.approx(pattern.sum())
    assert "binned 2×2" in dash.pattern_view.caption.value
    assert dash.shown.auto_support is not None and dash.shown.auto_support[16, 16]


# ------------------------------------------------------------------------ the run path
def test_a_simulated_object_is_recovered_through_the_dashboard(home):
    truth = _object()
    dash = _dashboard(home, _pattern(truth))
    assert "speckle-cdi" in dash._dom_classes and "speckle-dashboard" in dash._dom_classes
    # a beamstop typed on the pattern: masked, tinted, counted
    dash.pattern_view.region_text.value = "31:34,31:34"
    assert dash.wait(30)
    mask = dash.prepared.mask
    r0, r1, c0, c1 = BEAMSTOP
    assert mask[r0:r1, c0:c1].all() and dash.pattern_view.regions == [BEAMSTOP]
    assert dash.pattern_view.tints["mask"][32, 32]  # tinted red
    np.testing.assert_array_equal(dash.pattern_view.tints["mask"], mask)
    # the support: a rectangle typed on the autocorrelation switches to rectangles
    assert dash.support_mode.value == "auto"
    dash.autocorrelation_view.region_text.value = "22:43,22:41"
    assert dash.support_mode.value == "rectangles"
    assert f"{21 * 19} pixels" in dash.support_info.value
    _quick(dash, trials=2)
    dash.constraint.value = "positive"
    dash.seed.value = "1"
    assert "220 iterations per round" in dash.schedule_info.value
    dash.run_button.click()
    assert dash.wait(120)
    assert dash.state == "done", dash.error
    assert dash.stage.value.startswith("done in") and dash.progress.value == 1.0
    result = dash.result
    assert normalized_error(truth, result.reconstruction) < 0.05
    assert result.final_error < 0.05
    assert len(result.errors) == 220 and len(result.trials) == 2

    # on screen: the reconstruction around its support, the two plots, the summary
    assert dash.window == (0, N, 0, N)  # a 64-pixel frame is shown whole
    np.testing.assert_array_equal(dash.reconstruction_view.image, result.reconstruction)
    for plot in (dash.error_plot, dash.prtf_plot):
        assert plot.value[:8] == PNG and len(plot.value) > 5000
    assert f"{result.final_error:.3g}" in dash.summary.value
    assert result.trial_spread < 0.2 and "The trials agree" in dash.summary.value
    assert f"speckle-cdi-verdict-{result.verdict.level}" in dash.summary.value
    assert "speckle-cdi-disagree" not in dash.summary.value
    assert dash.results.layout.display is None

    # the files: HDF5 with what was shown and used, ZIP with real and imaginary parts
    folder = dash.folder
    assert folder.parent == home / "speckle-results" and folder.name.startswith("simulated-cdi")
    assert visible(home / "speckle-results") == [folder]
    saved = read_imaging_result(dash.files["hdf5"])
    assert saved.kind == "cdi" and saved.options == result.options
    assert saved.options.schedule == QUICK and saved.options.trials == 2
    assert saved.options.positivity is True and saved.support_method == "rectangles"
    assert saved.options.support_rects == (SUPPORT,) and saved.options.seed == 1
    np.testing.assert_array_equal(saved.reconstruction, result.reconstruction)
    np.testing.assert_array_equal(saved.mask, mask)
    assert saved.initial_support.sum() == 21 * 19
    assert saved.trials.shape == (2, N, N) and len(saved.errors) == 220
    assert saved.final_error == result.final_error and saved.verdict == result.verdict
    assert saved.trial_spread == pytest.approx(result.trial_spread)
    with zipfile.ZipFile(dash.files["zip"]) as zf:
        assert sorted(zf.namelist()) == ["reconstruction.png", "reconstruction_imag.npy",
                                         "reconstruction_real.npy", "support.npy"]
        real = np.load(io.BytesIO(zf.read("reconstruction_real.npy")))
        imag = np.load(io.BytesIO(zf.read("reconstruction_imag.npy")))
        assert zf.read("reconstruction.png")[:8] == PNG
    np.testing.assert_array_equal(real + 1j * imag, result.reconstruction)
    assert dash.files["hdf5"].read_bytes()[:8] == HDF5
    links = dash.downloads.value
    assert links.count("speckle-download-link") == 5
    assert "/user/ana/files/speckle-results/" in links and "download='result.h5'" in links


def test_one_trial_gives_no_prtf_and_the_background_fields_work(home):
    truth = _object()
    pattern = _pattern(truth)
    dash = _dashboard(home, pattern + 50.0)  # a pedestal of 50 counts
    assert dash.background.value == "auto"  # its 1st percentile is the pedestal
    assert dash.prepared.background == pytest.approx(np.percentile(pattern + 50.0, 1))
    dash.background.value = "none"
    assert dash.wait(30) and dash.prepared.background is None
    dash.background.value = "50"
    assert dash.wait(30)
    assert dash.prepared.background == 50.0
    np.testing.assert_allclose(dash.prepared.pattern, pattern, atol=1e-9)
    dash.mask_below.value = "52"  # as read, before the background
    assert dash.wait(30)
    np.testing.assert_array_equal(dash.prepared.mask, pattern < 2 - 1e-9)
    dash.mask_below.value = "two"
    assert "mask below" in dash.message.text
    dash.mask_below.value = ""
    assert dash.wait(30)
    _quick(dash, "30*HIO + 10*ER", trials=1)
    dash.run()
    assert dash.wait(60) and dash.state == "done", dash.error
    assert dash.result.prtf is None
    assert "PRTF needs ≥ 2 trials" in dash.summary.value and "resolution of" not in \
        dash.summary.value
    assert dash.result.trial_spread is None and "nothing to compare" in dash.summary.value
    assert "speckle-cdi-verdict-marginal" in dash.summary.value
    assert dash.prtf_plot.value[:8] == PNG
    arrays, attrs = read_image_result(dash.files["hdf5"])
    assert "prtf" not in arrays and attrs["prtf_cutoff_q_fraction"] is None
    assert attrs["background"] == 50.0


def test_rectangles_drawn_with_the_mouse_form_the_support(home):
    dash = _dashboard(home, _pattern(_object()))
    view = dash.autocorrelation_view
    view.canvas.draw()
    for x0, y0, x1, y1 in ((20, 22, 40, 42), (30, 10, 34, 14)):  # columns, rows
        drag(view.canvas, view.ax, (x0, y0), (x1, y1))
    assert view.regions == [(22, 43, 20, 41), (10, 15, 30, 35)]
    assert dash.support_mode.value == "rectangles"
    support = dash.initial_support()
    assert support.sum() == 21 * 21 + 5 * 5 and support[22:43, 20:41].all()
    np.testing.assert_array_equal(dash.autocorrelation_view.tints["support"], support)
    view.remove_region(0)
    assert dash.initial_support().sum() == 25 and "25 pixels" in dash.support_info.value
    dash.support_mode.value = "auto"  # back to the automatic one, the rectangles kept
    np.testing.assert_array_equal(dash.autocorrelation_view.tints["support"],
                                  dash.shown.auto_support)


def test_refocusing_a_region_of_the_reconstruction(home):
    dash = _dashboard(home, _pattern(np.pad(_object(), 32)))  # 128 × 128
    _quick(dash, "50*ER")
    dash.run()
    assert dash.wait(60) and dash.state == "done", dash.error
    r0, r1, c0, c1 = dash.window
    assert r0 > 0 and c0 > 0 and r1 - r0 >= 64 and c1 - c0 >= 64  # around the support
    view = dash.reconstruction_view
    assert view.add_region(10, 40, 12, 44)
    given = dash._refocus_input()
    assert given.kind == "cdi" and given.region == (r0 + 10, r0 + 40, c0 + 12, c0 + 44)
    np.testing.assert_array_equal(given.field,
                                  dash.result.reconstruction[r0 + 10:r0 + 40, c0 + 12:c0 + 44])
    dash.refocus.steps.value = 5
    dash.refocus.run()
    assert dash.wait(60) and dash.refocus.state == "done", dash.refocus.error
    arrays, attrs = read_image_result(dash.refocus.files["hdf5"])
    assert attrs["kind"] == "propagation" and attrs["source_kind"] == "cdi"
    assert attrs["region"] == list(given.region)
    np.testing.assert_array_equal(arrays["image"], dash.result.reconstruction)

    # the saved result, chosen again as data: its reconstruction is shown for refocusing, its
    # pattern for phasing again
    reopened = _dashboard(home)
    reopened.chooser.open_path(dash.files["hdf5"])
    assert reopened.wait(60) and reopened.message.text == "", reopened.message.text
    assert reopened.result is None and reopened.saved.kind == "cdi"
    assert reopened.window == dash.window  # around the saved support, as when it was made
    np.testing.assert_array_equal(reopened.reconstruction_view.image, view.image)
    np.testing.assert_array_equal(reopened.prepared.pattern, dash.prepared.pattern)
    assert "Saved CDI result" in reopened.summary.value
    assert reopened.error_plot.value[:8] == PNG and reopened.plots.layout.display is None
    assert reopened.results.layout.display is None
    assert reopened.reconstruction_view.add_region(10, 40, 12, 44)
    again = reopened._refocus_input()
    assert again.region == given.region
    np.testing.assert_array_equal(again.field, given.field)

    dash.whole_frame.value = True  # the whole frame: another shape, the region is dropped
    assert dash.window == (0, 2 * N, 0, 2 * N) and view.region is None
    assert view.image.shape == (2 * N, 2 * N)


def test_bad_input_gives_a_red_message_and_runs_nothing(home):
    results = home / "speckle-results"
    dash = _dashboard(home)
    dash.run_button.click()  # no data yet
    assert dash.state == "failed" and "choose a diffraction pattern first" in \
        dash.run_message.text
    assert "speckle-error" in dash.run_message._dom_classes

    dash.set_pattern(_pattern(_object()), label="simulated")
    assert dash.wait(30)
    dash.schedule.value = "20*ER + 80*HOI"
    assert "unknown algorithm 'HOI'" in dash.schedule_info.value  # said while typing
    assert dash.run() is None
    assert dash.state == "failed" and "speckle-error" in dash.run_message._dom_classes
    assert "'HOI'" in dash.run_message.text and "press Run again" in dash.run_message.text
    assert not dash.run_button.disabled

    dash.schedule.value = "20*ER"
    for field, value, words in ((dash.beta, 1.5, "beta must be in (0, 1]"),
                                (dash.rounds, 0, "rounds must be a whole number"),
                                (dash.seed, "abc", "the seed must be a whole number"),
                                (dash.threshold, 1.0, "shrink-wrap threshold")):
        old = field.value
        field.value = value
        dash.run()
        assert dash.state == "failed" and words in dash.run_message.text, dash.run_message.text
        field.value = old
    dash.support_mode.value = "rectangles"  # chosen, none drawn
    assert "draw at least one rectangle" in dash.support_info.value
    dash.run()
    assert "draw at least one rectangle" in dash.run_message.text
    assert visible(results) == [] and dash.result is None

    dash.support_mode.value = "auto"
    dash.run()  # everything fixed: it runs, and the message goes
    assert dash.wait(60) and dash.state == "done" and dash.run_message.text == ""


def test_a_failure_while_phasing_is_red_and_says_what_to_do(home, monkeypatch):
    from speckle.ui.imaging import cdi_controller

    def broken(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cdi_controller, "run_cdi", broken)
    dash = _dashboard(home, _pattern(_object()))
    dash.run()
    assert dash.wait(30) and dash.state == "failed"
    assert dash.stage.value == "failed" and dash.progress.bar_style == "danger"
    text = dash.run_message.text
    assert "Not enough memory" in text and "bin the pattern" in text
    assert "press Run again" in text
    assert "speckle-error" in dash.run_message._dom_classes
    assert visible(home / "speckle-results") == []


def test_cancel_stops_promptly_and_leaves_no_result_file(home):
    results = home / "speckle-results"
    dash = _dashboard(home, _pattern(np.pad(_object(), 32), photons=1e5))  # 128 × 128
    _quick(dash, "20000*HIO")
    dash.run_button.click()
    deadline = time.monotonic() + 30
    while dash.progress.value == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dash.state == "running" and not dash.cancel_button.disabled
    assert "%" in dash.stage.value
    t0 = time.perf_counter()
    dash.cancel_button.click()
    assert dash.wait(20)
    stopped = time.perf_counter() - t0
    assert stopped < 3, f"cancel took {stopped:.1f} s"
    assert dash.progress.value < 0.5  # it stopped in the middle, not at the end
    assert dash.state == "cancelled" and dash.stage.value == "cancelled"
    assert dash.result is None and dash.run_message.text == ""
    assert not dash.run_button.disabled and dash.cancel_button.disabled
    assert visible(results) == []  # nothing written, not even a hidden partial folder


def test_the_demo_pattern_end_to_end(home, shared_data):
    dash = _dashboard(home)
    dash.chooser.open_demo("cdi")
    assert dash.wait(60)
    demo, _ = read_image(shared_data / "als-demo" / "cdi.fits")
    # the ALS demo file less its pedestal: the default background, auto, finds it
    assert dash.background.value == "auto"
    level = np.percentile(demo, 1)
    assert dash.prepared.background == pytest.approx(level) and 380 < level < 410
    np.testing.assert_allclose(dash.prepared.pattern, demo - level)
    assert dash.label == "demo-cdi" and dash.support_mode.value == "auto"
    # the sample carries reference apertures: the support comes from its cross-terms
    assert dash.shown.auto_method == "fth" and "holographic" in dash.support_info.value
    assert dash.autocorrelation_view.image.shape == (512, 512)
    _quick(dash, "20*HIO + 5*ER", trials=2)
    dash.run()
    assert dash.wait(120) and dash.state == "done", dash.error
    assert dash.result.reconstruction.shape == (512, 512)
    saved = read_imaging_result(dash.files["hdf5"])
    assert saved.source == "demo-cdi" and saved.support_method == "fth"
    np.testing.assert_array_equal(saved.pattern, demo - level)
    # another dataset: the shown reconstruction goes
    dash.set_pattern(_pattern(_object()), label="simulated")
    assert dash.wait(30) and dash.result is None and dash.results.layout.display == "none"
