"""The FTH and propagation dashboards as a person uses them: a real browser, hub, spawner, Voila.

Headless Debian Chromium (Playwright's Python API) logs in through the form, opens each
dashboard, chooses a demo hologram, sees its reconstruction, refocuses a region (no empty plot
before), sees the sharpness curve, moves the focus marker (slider, keyboard and mouse on the plot) and watches the
displayed frame change, and downloads the sharpness table (CSV) and the result (HDF5).

The hub is the session's (``speckle_hub``); one user, whose server is started once through the
API. Screenshots go to ``tests/artifacts/``. Nothing here skips: a missing proxy or browser fails.
"""

from __future__ import annotations

import csv
import io
import time

import h5py
import pytest

from browser_helpers import (HDF5, download, focus_distance, frame_digest, move_slider,
                             page_of,  # noqa: F401 - a fixture
                             plot_digest, refocus, screenshot, wait_changed, wait_drawn,
                             wait_new_frame)

TIMEOUT_MS = 120_000
@pytest.fixture(scope="module")
def imager(speckle_hub):
    """The user of this module, their server started through the API."""
    user = speckle_hub.new_user("img")
    user.start("quick")
    return user


def _open(page, user, notebook: str, root: str) -> float:
    """Open a dashboard and wait until its kernel answers (the demo buttons work)."""
    t0 = time.monotonic()
    page.goto(user.dashboard_url(notebook), timeout=TIMEOUT_MS)
    page.locator(f".{root} button.speckle-refocus-run").wait_for(state="visible",
                                                                  timeout=TIMEOUT_MS)
    page.wait_for_selector("button.speckle-refocus-run:enabled", timeout=TIMEOUT_MS)
    return time.monotonic() - t0


def _choose_demo(page, name: str) -> None:
    page.click(f"button.speckle-demo-{name}")
    page.locator(".speckle-dataset-info").filter(has_text=f"demo-{name}").wait_for(
        state="visible", timeout=60_000)
    info = page.locator(".speckle-dataset-info").inner_text()
    assert "512 × 512 pixels" in info and "frame time" not in info, info  # a single image


def _drag_marker(page, before: str) -> str:
    """Drag on the sharpness plot (from 40 % to 25 % of its width); return the new digest.

    The plot itself changes too (the marker moved on it).
    """
    box = page.locator(".speckle-sharpness-plot canvas").last.bounding_box()
    distance = focus_distance(page)
    plot = plot_digest(page)
    y = box["y"] + 0.5 * box["height"]
    page.mouse.move(box["x"] + 0.40 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.30 * box["width"], y, steps=4)
    page.mouse.move(box["x"] + 0.25 * box["width"], y, steps=4)
    page.mouse.up()
    page.wait_for_function(
        "old => { const e = document.querySelector('.speckle-focus-distance');"
        " return e && !e.innerText.startsWith(old); }", arg=distance, timeout=30_000)
    wait_changed(lambda: plot_digest(page), plot, "the marker on the plot", page)
    return wait_new_frame(page, before)


def _check_downloads(page, tmp_path) -> None:
    table = download(page, "sharpness.csv", tmp_path).decode()
    rows = list(csv.reader(io.StringIO(table)))
    assert rows[0][0] == "distance_um" and "edge_sparsity" in rows[0] and len(rows) > 10
    assert all(len(r) == len(rows[0]) for r in rows)
    result = download(page, "result.h5", tmp_path)
    assert result[:8] == HDF5
    with h5py.File(io.BytesIO(result), "r") as f:
        assert f["speckle"].attrs["kind"] in ("fth", "propagation")
        assert f["speckle/focused"].dtype.kind == "c"
        assert len(f["speckle/distances"]) == len(rows) - 1


# ---------------------------------------------------------------------------------- FTH
def test_fth_demo_reconstruction_refocus_marker_and_download(imager, page_of, artifacts,
                                                             tmp_path):
    t0 = time.monotonic()
    page = page_of(imager)
    open_s = _open(page, imager, "fth_reconstruction.ipynb", "speckle-fth")
    assert page.locator(".speckle-fth").is_visible()

    # the demo hologram, reconstructed on screen, with a region proposed around a cross-term
    _choose_demo(page, "fth")
    page.wait_for_selector(".speckle-fth-status:has-text('Reconstructed')", timeout=60_000)
    wait_drawn(page, ".speckle-reconstruction .speckle-complex-canvas")
    wait_drawn(page, ".speckle-hologram .speckle-complex-canvas")
    assert "rows" in page.locator(".speckle-reconstruction .speckle-region-info").inner_text()
    row = float(page.locator(".speckle-fth-center-row input").input_value())
    assert abs(row - 256) < 1, row
    # a region typed as a user would
    page.fill(".speckle-reconstruction .speckle-region-text input", "320:392,320:392")
    page.press(".speckle-reconstruction .speckle-region-text input", "Enter")
    page.locator(".speckle-reconstruction .speckle-region-info").filter(
        has_text="rows 320:392, cols 320:392").wait_for(timeout=30_000)

    t1 = time.monotonic()
    refocus(page)
    refocus_s = time.monotonic() - t1
    first = frame_digest(page)
    second = move_slider(page, "Home", first)  # the slider: to the first distance
    assert focus_distance(page).startswith("z = -10.000 µm"), focus_distance(page)
    third = _drag_marker(page, second)  # the marker, dragged on the plot
    assert len({first, second, third}) == 3
    screenshot(page, artifacts / "fth-dashboard.png")
    _check_downloads(page, tmp_path)
    assert not page.locator(".speckle-fth .speckle-error:visible").count()
    assert not page.errors, page.errors
    print(f"\nFTH: dashboard live in {open_s:.1f} s, refocus {refocus_s:.1f} s, "
          f"whole test {time.monotonic() - t0:.1f} s")


# ---------------------------------------------------------------------------------- propagation
def test_propagation_demo_refocus_gradient_and_download(imager, page_of, artifacts, tmp_path):
    t0 = time.monotonic()
    page = page_of(imager)
    open_s = _open(page, imager, "propagation.ipynb", "speckle-propagation")

    # the FTH demo hologram is inverted first, and a region around a cross-term is proposed
    _choose_demo(page, "fth")
    wait_drawn(page, ".speckle-field .speckle-complex-canvas")
    page.locator(".speckle-field .speckle-region-info").filter(has_text="rows").wait_for(
        timeout=60_000)
    assert page.locator(".speckle-input-mode button.mod-active").inner_text().startswith("FTH")

    t1 = time.monotonic()
    refocus(page)
    refocus_s = time.monotonic() - t1
    first = frame_digest(page)
    best = float(focus_distance(page).split()[2])
    second = move_slider(page, "ArrowRight", first)  # one step: 20 µm / 40
    assert float(focus_distance(page).split()[2]) == pytest.approx(best + 0.5), \
        focus_distance(page)
    page.click(".speckle-gradient-toggle button:has-text('gradient')")  # the gradient view
    third = wait_new_frame(page, second)
    page.wait_for_selector(".speckle-focus-caption:has-text('∇ field')", timeout=30_000)
    fourth = move_slider(page, "ArrowLeft", third)
    assert len({first, second, third, fourth}) == 4
    screenshot(page, artifacts / "propagation-dashboard.png")
    _check_downloads(page, tmp_path)
    assert not page.errors, page.errors
    print(f"\npropagation: dashboard live in {open_s:.1f} s, refocus {refocus_s:.1f} s, "
          f"whole test {time.monotonic() - t0:.1f} s")
