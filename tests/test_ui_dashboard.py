"""The XPCS dashboard driven headlessly, as a user would: choose, draw, Analyze, read, download.

ipywidgets work without a browser: button handlers are called with ``click()``, and the
background threads are awaited with the components' ``wait()``.
"""

import html
import os
import time

import h5py
import numpy as np
import pytest
from ui_helpers import visible

from speckle.demo import DEMO_RINGS
from speckle.errors import InvalidInputError
from speckle.io.dataset import Dataset, Metadata
from speckle.ui import xpcs_dashboard
from speckle.ui.xpcs.results import fit_table_rows


def test_demo_rectangle_analyze_verdict_table_downloads(home):
    dash = xpcs_dashboard()
    assert "speckle-dashboard" in dash._dom_classes
    [demo] = [b for b in dash.chooser.demo_buttons if "speckle-demo-xpcs" in b._dom_classes]
    assert "speckle-demo-choice" in demo._dom_classes
    demo.click()
    assert dash.wait(60)
    assert dash.chooser.state == "ready", dash.chooser.message.text
    assert "100 of 256 × 256" in dash.chooser.info.value
    assert "1.3007 ms" in dash.chooser.info.value
    # the demo's geometry is known: q-rings are offered, a rectangle switches to rectangles
    assert dash.image.mode.value == "q-rings"
    dash.image.add_region(100, 160, 60, 120)
    assert dash.image.mode.value == "rectangles" and dash.image.regions == [(100, 160, 60, 120)]
    dash.image.region_text.value = "20:80,150:220"  # typed, then Enter
    assert dash.image.region_text.value == ""
    assert dash.image.regions == [(100, 160, 60, 120), (20, 80, 150, 220)]

    t0 = time.perf_counter()
    dash.runner.analyze_button.click()
    assert time.perf_counter() - t0 < 0.5, "the click handler must return at once"
    assert dash.runner.state == "running"
    assert dash.runner.wait(120)
    assert dash.runner.state == "done", dash.runner.error
    assert dash.runner.progress.value == 1.0

    results = dash.results
    assert results.level in ("good", "marginal", "bad")
    assert results.level.upper() in results.verdict.value
    assert f"speckle-verdict-{results.level}" in results.verdict._dom_classes
    assert [r["region"] for r in results.rows] == ["ROI 1 [100:160, 60:120]",
                                                   "ROI 2 [20:80, 150:220]"]
    assert results.fit_table.value.count("speckle-fit-row") == 2
    assert "τ (s)" in results.fit_table.value
    assert results.g2_plot.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert results.intensity_plot.value[:4] == b"\x89PNG"
    assert results.twotime_plot.value[:4] == b"\x89PNG"

    files = results.files
    assert files.folder.parent == home / "speckle-results"
    assert files.folder.name.startswith("demo-xpcs-")
    for path in files.files.values():
        assert path.is_file() and path.stat().st_size > 0, path
    assert 1 in files.twotime and files.twotime[1].is_file()
    links = results.downloads.value
    rel = files.folder.relative_to(home).as_posix()
    assert f"href='/user/ana/files/{rel}/result.h5?download=1'" in links
    assert str(files.folder) in links
    assert "speckle-download" in results.downloads._dom_classes

    # the HDF5 file opens in pyXpcsViewer and holds this g2
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from pyxpcsviewer.core import xpcs_file

    xf = xpcs_file.XpcsFile(str(files.files["hdf5"]))
    result = dash.runner.result
    np.testing.assert_array_equal(xf.g2, result.g2.g2)
    np.testing.assert_allclose(xf.t_el, result.tau_seconds)
    with h5py.File(files.files["hdf5"]) as f:
        assert "xpcs/multitau/normalized_g2" in f
    # the full time average replaced the preview
    assert "all frames" in dash.image.caption.value


def test_qrings_and_a_second_twotime_bin(home, tmp_path):
    dash = xpcs_dashboard(results_dir=tmp_path / "out", server_root=tmp_path / "lab-root")
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    assert dash.image.mode.value == "q-rings"
    rings = DEMO_RINGS["xpcs"]  # the demo suggests rings over its speckle
    assert (dash.image.q_min.value, dash.image.q_width.value, dash.image.n_rings.value) == \
        (rings["q_min"], rings["q_width"], rings["n_rings"])
    dash.image.n_rings.value = 3
    dash.runner.run()
    assert dash.runner.wait(120) and dash.runner.state == "done", dash.runner.error
    rows = dash.results.rows
    assert [r["q (1/Å)"] for r in rows] == ["0.00750", "0.01050", "0.01350"]
    assert rows == fit_table_rows(dash.runner.result)
    assert dash.results.twotime_bin.options[1] == ("q=0.01050 1/Å", 2)
    dash.results.twotime_bin.value = 2  # the map of another ring, and its PNG to download
    assert (dash.results.files.folder / "twotime_002.png").is_file()
    assert "two-time map of q=0.01050 1/Å" in dash.results.downloads.value
    # results outside the server's root folder are offered inline
    assert "data:application/octet-stream;base64," in dash.results.downloads.value


def test_auto_reanalysis_when_regions_change(home):
    dash = xpcs_dashboard()
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    dash.runner.auto.value = True
    dash.image.add_region(0, 50, 0, 50)  # a change of regions starts an analysis by itself
    assert dash.runner.state == "running"
    dash.image.add_region(60, 120, 60, 120)  # ... and a further change restarts it
    assert dash.runner.wait(120) and dash.runner.state == "done", dash.runner.error
    assert len(dash.results.rows) == 2


class SlowDataset(Dataset):
    """Frames that take a while to read (one frame per chunk), to test cancellation."""

    def __init__(self, n=400, delay=0.01, fail_at=None):
        rng = np.random.default_rng(1)
        self._frames = rng.poisson(2.0, (n, 32, 32)).astype(np.uint16)
        self.shape = self._frames.shape
        self.dtype = self._frames.dtype
        self.metadata = Metadata(frame_time=1e-3)
        self.source = "slow-test-data"
        self.format = "array"
        self.delay = delay
        self.fail_at = fail_at
        self.reads = 0

    def default_chunk_frames(self, chunk_bytes=0):
        return 1

    def _read(self, start, stop):
        self.reads += 1
        if self.fail_at is not None and start >= self.fail_at:
            raise RuntimeError("detector server went away")
        time.sleep(self.delay * (stop - start))
        return self._frames[start:stop]


def test_cancel_stops_the_analysis_and_writes_nothing(home):
    dash = xpcs_dashboard()
    dash.chooser.label = "slow"
    dash.chooser.dataset = SlowDataset()
    dash.image.add_region(0, 16, 0, 16)
    dash.runner.analyze_button.click()
    time.sleep(0.5)
    assert dash.runner.state == "running" and 0 < dash.runner.progress.value < 0.85
    assert not dash.runner.cancel_button.disabled
    t0 = time.perf_counter()
    dash.runner.cancel_button.click()
    assert dash.runner.wait(10)
    assert time.perf_counter() - t0 < 2
    assert dash.runner.state == "cancelled"
    assert "cancelled" in dash.runner.stage.value
    assert dash.runner.result is None and dash.results.level == ""
    assert visible(home / "speckle-results") == []
    assert not dash.runner.analyze_button.disabled and dash.runner.cancel_button.disabled
    assert dash.runner.message.text == ""  # a cancel is no error


@pytest.mark.parametrize("when", ["after the plots", "while writing", "after the files"])
def test_a_late_cancel_leaves_no_finished_looking_result(home, monkeypatch, when):
    """Cancel after the verdict and plots were drawn: they go, with a note; nothing is written.

    Once the files are written the analysis is finished, and a later Cancel changes nothing.
    """
    import speckle.ui.xpcs.dashboard as dashboard_module

    dash = xpcs_dashboard()
    dash.chooser.label = "late"
    dash.chooser.dataset = SlowDataset(n=40, delay=0)
    assert dash.image.wait(30)
    dash.image.add_region(0, 16, 0, 16)
    seen = []  # the verdict on screen when the click landed

    def click_cancel_after(real):
        def wrapped(*args, **kwargs):
            if when == "while writing":
                seen.append(dash.results.level)
                dash.runner.cancel_button.click()
            value = real(*args, **kwargs)
            if when != "while writing":
                seen.append(dash.results.level)
                dash.runner.cancel_button.click()
            return value
        return wrapped

    if when == "after the plots":
        monkeypatch.setattr(dash.results, "show", click_cancel_after(dash.results.show))
    elif when == "while writing":
        monkeypatch.setattr(dashboard_module, "write_result_folder",
                            click_cancel_after(dashboard_module.write_result_folder))
    else:
        monkeypatch.setattr(dash.results, "show_files",
                            click_cancel_after(dash.results.show_files))
    dash.runner.run()
    assert dash.runner.wait(30)
    assert seen and seen[0] in ("good", "marginal", "bad")  # a verdict was on screen
    results = dash.results
    if when == "after the files":
        assert dash.runner.state == "done" and dash.runner.stage.value.startswith("done in")
        assert results.level == seen[0] and results.files.folder.is_dir()
        assert results.downloads.value.count("speckle-download-link") >= 7
        return
    assert dash.runner.state == "cancelled" and dash.runner.stage.value == "cancelled"
    assert dash.runner.message.text == ""  # a cancel is no error
    assert results.level == "" and results.result is None and results.rows == []
    assert "cancelled" in results.verdict.value and "nothing was kept" in results.verdict.value
    for level in ("good", "marginal", "bad"):
        assert f"speckle-verdict-{level}" not in results.verdict._dom_classes
        assert level.upper() not in results.verdict.value
    assert results._body.layout.display == "none"  # plots, table and links are gone
    assert "speckle-download-link" not in results.downloads.value
    assert dash.runner.result is None
    assert visible(home / "speckle-results") == []  # not even a hidden partial folder


def test_unexpected_failure_is_a_readable_message(home):
    dash = xpcs_dashboard()
    dash.chooser.dataset = SlowDataset(n=4, delay=0, fail_at=0)  # not even one frame reads
    assert "Cannot read the first frame:" in dash.image.message.value
    assert "RuntimeError: detector server went away" in dash.image.message.text
    dash.chooser.label = "flaky"
    dash.chooser.dataset = SlowDataset(n=40, delay=0, fail_at=20)
    dash.image.wait(30)
    dash.image.add_region(0, 16, 0, 16)
    dash.runner.run()
    assert dash.runner.wait(30)
    assert dash.runner.state == "failed"
    text = dash.runner.message.text
    assert "RuntimeError: detector server went away" in text and "report it" in text
    assert "Traceback" not in text
    assert "speckle-error" in dash.runner.message._dom_classes
    assert dash.runner.progress.bar_style == "danger"
    assert visible(home / "speckle-results") == []


def test_analyze_without_data_or_regions_says_what_to_do(home):
    dash = xpcs_dashboard()
    dash.runner.analyze_button.click()
    assert dash.runner.state == "failed"
    assert "choose a dataset first" in dash.runner.message.text
    dash.chooser.label = "slow"
    dash.chooser.dataset = SlowDataset(n=8, delay=0)
    dash.image.wait(30)
    assert dash.image.mode.value == "rectangles"  # no geometry in this file
    dash.runner.analyze_button.click()
    assert "draw at least one region" in dash.runner.message.text
    dash.image.mode.value = "q-rings"
    assert "enter the photon energy (eV), distance (m), pixel size (µm)" in \
        dash.image.message.text
    with pytest.raises(InvalidInputError):
        dash.image.partition()


def test_corrupt_file_from_the_beamline_folder_shows_a_readable_error(home, tmp_path):
    beamline = tmp_path / "beamline"
    (beamline / "2026-05-01").mkdir(parents=True)
    broken = beamline / "2026-05-01" / "scan_0042.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00\x17garbage" * 100)  # a truncated HDF5
    np.save(beamline / "2026-05-01" / "good.npy", np.ones((4, 8, 8), np.uint16))
    (beamline / "notes.txt").write_text("not data")
    dash = xpcs_dashboard(data_dirs=[beamline])
    chooser = dash.chooser
    assert [v for _, v in chooser.listing.options] == ["2026-05-01"]  # text files are hidden
    chooser.listing.value = "2026-05-01"  # a folder opens on selection
    values = [v for _, v in chooser.listing.options]
    assert values[0] == ".." and set(values[1:]) == {"2026-05-01/scan_0042.h5",
                                                      "2026-05-01/good.npy"}
    chooser.listing.value = "2026-05-01/scan_0042.h5"
    assert not chooser.open_button.disabled
    chooser.open_button.click()
    assert chooser.wait(30)
    assert chooser.state == "failed" and chooser.dataset is None
    text = chooser.message.text
    assert "scan_0042.h5" in text and "Traceback" not in text
    assert "Cannot open scan_0042.h5:" in chooser.message.value
    assert "speckle-error" in chooser.message._dom_classes
    # a good file afterwards clears the message and opens
    chooser.listing.value = "2026-05-01/good.npy"
    chooser.open_button.click()
    assert chooser.wait(30) and chooser.state == "ready"
    assert chooser.message.text == "" and chooser.dataset.shape == (4, 8, 8)


def test_a_typed_frame_time_is_for_that_run_only(home):
    dash = xpcs_dashboard()
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    ds = dash.chooser.dataset
    in_file = ds.metadata.frame_time
    assert in_file == pytest.approx(1.30068e-3)
    dash.image.n_rings.value = 2
    dash.runner.twotime.value = False
    dash.runner.frame_time_ms.value = 2.0
    dash.runner.run()
    assert dash.runner.wait(120) and dash.runner.state == "done", dash.runner.error
    assert dash.runner.result.metadata.frame_time == pytest.approx(2e-3)
    assert dash.runner.result.tau_seconds[0] == pytest.approx(2e-3)
    # the chosen dataset keeps the file's value ...
    assert ds.metadata.frame_time == in_file
    # ... so that 0 ("as in the file") gives it back
    dash.runner.frame_time_ms.value = 0
    dash.runner.run()
    assert dash.runner.wait(120) and dash.runner.state == "done", dash.runner.error
    assert dash.runner.result.metadata.frame_time == in_file
    # the page says what 0 means and what the file's frame time is
    assert "0 = as in the file: 1.3007 ms" in dash.runner.frame_time_note.value


def test_verdict_leads_with_what_to_do_and_excludes_the_spikes_on_request(home):
    dash = xpcs_dashboard()
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    dash.runner.twotime.value = False
    button = dash.results.exclude_button
    assert button.layout.display == "none"  # nothing to exclude before a verdict
    dash.runner.run()
    assert dash.runner.wait(120) and dash.runner.state == "done", dash.runner.error
    v = dash.runner.result.verdict
    page = dash.results.verdict.value
    # one line that concludes, one action, then the problems folded, each with its details
    assert "speckle-verdict-conclusion" in page and html.escape(v.conclusion) in page
    assert f"<b>Do first:</b> {html.escape(v.action)}" in page
    assert page.count("<details class='speckle-problem'") == len(v.problems()) >= 2
    assert page.index(html.escape(v.conclusion)) < page.index("speckle-problem")
    for f in v.problems()[0].findings:
        assert html.escape(f.message) in page
    # how much longer to count, per ring
    assert "How much longer to count" in page
    assert page.count("speckle-forecast-row") == len(v.bins) == 8
    needed = max(b.forecast.frames_needed or 0 for b in v.bins)
    assert f"{needed:,} (" in page
    # the three spikes of the demo, and the button that leaves them out
    assert v.exclude_frames == [3, 10, 32]
    assert button.layout.display is None
    assert button.description == "Exclude frames 3,10,32 and analyse again"
    button.click()
    assert dash.runner.exclude.value == "3,10,32"
    assert dash.runner.wait(120) and dash.runner.state == "done", dash.runner.error
    again = dash.runner.result
    assert again.parameters["exclude_frames"] == [3, 10, 32]
    assert again.verdict.exclude_frames == []
    assert "intensity spike" not in dash.results.verdict.value
    assert button.layout.display == "none"
    # another dataset starts again from no excluded frames
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    assert dash.runner.exclude.value == ""


def test_typed_excluded_frames_are_checked(home):
    dash = xpcs_dashboard()
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    dash.runner.exclude.value = "3, 7-x"
    dash.runner.run()
    assert dash.runner.wait(60)
    assert dash.runner.state == "failed"
    assert "3,10-20" in dash.runner.error  # how to write it
    dash.runner.exclude.value = "150"
    dash.runner.run()
    assert dash.runner.wait(60) and dash.runner.state == "failed"
    assert "between 0 and 99" in dash.runner.error  # the run has 100 frames


def test_before_any_data_a_hint_instead_of_empty_axes(home):
    dash = xpcs_dashboard()
    image = dash.image
    assert image.empty_hint.layout.display is None
    assert "Choose a dataset above" in image.empty_hint.value
    assert all(box.layout.display == "none" for box in image._with_data)
    assert image.canvas in image._with_data[1].children[0].children
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    assert image.empty_hint.layout.display == "none"
    assert all(box.layout.display is None for box in image._with_data)
