"""The CDI phasing dashboard as a person uses it: a real browser, hub, spawner and Voila.

Headless Debian Chromium (Playwright's Python API) logs in through the form, opens the CDI
dashboard, chooses the demo pattern, sees the pattern and its autocorrelation drawn, types a
support rectangle on the autocorrelation, shortens the run through the fields (1 round, 1 trial,
a short schedule), presses Run, sees the reconstruction, the error and PRTF plots, downloads
the HDF5 result and the ZIP of real and imaginary parts, which are checked byte for byte against
the server's files, then refocuses the reconstruction and moves the focus marker.

The hub is the session's (``speckle_hub``); one user, whose server is started once through the
API. Screenshots go to ``tests/artifacts/``. Nothing here skips: a missing proxy or browser fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from urllib.parse import unquote

import h5py
import numpy as np
import pytest

from browser_helpers import (HDF5, download, frame_digest, move_slider,
                             page_of,  # noqa: F401 - a fixture
                             refocus, screenshot, wait_drawn)

TIMEOUT_MS = 120_000
SUPPORT = "196:316,196:316"  # around the centre of the demo's autocorrelation
PLOT_LOADED = """selector => { const e = document.querySelector(selector);
    return e && e.complete && e.naturalWidth > 200 && e.offsetParent !== null; }"""


@pytest.fixture(scope="module")
def phaser(speckle_hub):
    """The user of this module, their server started through the API."""
    user = speckle_hub.new_user("cdi")
    user.start("quick")
    return user


def _set(page, selector: str, value: str) -> None:
    page.fill(f"{selector} input", value)
    page.press(f"{selector} input", "Tab")


def test_cdi_demo_to_reconstruction_plots_and_downloads(phaser, page_of, artifacts, tmp_path):
    t0 = time.monotonic()
    page = page_of(phaser)
    page.goto(phaser.dashboard_url("cdi_phasing.ipynb"), timeout=TIMEOUT_MS)
    page.locator(".speckle-cdi button.speckle-cdi-run").wait_for(state="visible",
                                                                 timeout=TIMEOUT_MS)
    page.wait_for_selector("button.speckle-cdi-run:enabled", timeout=TIMEOUT_MS)
    open_s = time.monotonic() - t0

    # the demo pattern: drawn in log scale, its autocorrelation beside, an automatic support
    page.click("button.speckle-demo-cdi")
    info = page.locator(".speckle-dataset-info").filter(has_text="demo-cdi")
    info.wait_for(state="visible", timeout=60_000)
    assert "512 × 512 pixels" in info.inner_text() and "frame time" not in info.inner_text()
    wait_drawn(page, ".speckle-cdi-pattern .speckle-complex-canvas")
    wait_drawn(page, ".speckle-autocorrelation .speckle-complex-canvas")
    page.locator(".speckle-support-info").filter(has_text="automatic").wait_for(timeout=30_000)
    assert "Unmeasured pixels" in page.locator(".speckle-cdi-mask-info").inner_text()

    # a support rectangle typed on the autocorrelation: the support follows it
    page.fill(".speckle-autocorrelation .speckle-region-text input", SUPPORT)
    page.press(".speckle-autocorrelation .speckle-region-text input", "Enter")
    page.locator(".speckle-support-info").filter(has_text="14400 pixels").wait_for(
        timeout=30_000)
    active = page.locator(".speckle-support-mode button.mod-active").inner_text()
    assert active.strip() == "rectangles", active

    # a quick run, set through the fields; the kernel's answer shows it arrived
    _set(page, ".speckle-cdi-schedule", "20*HIO + 5*ER")
    _set(page, ".speckle-cdi-rounds", "1")
    _set(page, ".speckle-cdi-trials", "1")
    page.locator(".speckle-cdi-schedule-info").filter(has_text="25 in all").wait_for(
        timeout=30_000)

    t1 = time.monotonic()
    page.click("button.speckle-cdi-run")
    page.wait_for_selector(".speckle-cdi-stage:has-text('done in')", timeout=TIMEOUT_MS)
    run_s = time.monotonic() - t1
    wait_drawn(page, ".speckle-cdi-reconstruction .speckle-complex-canvas")
    for plot in ("img.speckle-cdi-error-plot", "img.speckle-prtf-plot"):
        page.wait_for_function(PLOT_LOADED, arg=plot, timeout=30_000)
    summary = page.locator(".speckle-cdi-summary").inner_text()
    assert "Final Fourier error" in summary and "25 iterations" in summary, summary
    assert page.locator(".speckle-cdi-progress .progress-bar").evaluate(
        "e => e.style.width") == "100%"
    page.wait_for_selector("a.speckle-download-link[download='reconstruction.zip']",
                           timeout=30_000)
    screenshot(page, artifacts / "cdi-dashboard.png")

    # the downloads, through the browser, identical to the server's files
    result = download(page, "result.h5", tmp_path)
    assert result[:8] == HDF5
    with h5py.File(io.BytesIO(result), "r") as f:
        assert f["speckle"].attrs["kind"] == "cdi"
        assert json.loads(f["speckle"].attrs["options"])["schedule"] == "20*HIO + 5*ER"
        assert json.loads(f["speckle"].attrs["verdict"])["level"] in ("good", "marginal", "bad")
        obj = f["speckle/reconstruction"][()]
        assert obj.dtype.kind == "c" and obj.shape == (512, 512)
        assert f["speckle/initial_support"][()].sum() == 120 * 120
        assert len(f["speckle/errors"]) == 25
    archive = download(page, "reconstruction.zip", tmp_path)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert {"reconstruction_real.npy", "reconstruction_imag.npy",
                "reconstruction.png"} <= set(zf.namelist())
        real = np.load(io.BytesIO(zf.read("reconstruction_real.npy")))
        imag = np.load(io.BytesIO(zf.read("reconstruction_imag.npy")))
        assert zf.read("reconstruction.png")[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(real + 1j * imag, obj)
    href = page.locator("a.speckle-download-link[download='reconstruction.zip']").get_attribute(
        "href")
    rel = unquote(href.split("/files/", 1)[1].split("?")[0])
    assert hashlib.sha256(archive).hexdigest() == hashlib.sha256(
        (phaser.home / rel).read_bytes()).hexdigest()

    # the reconstruction refocused: the sharpness curve, and the marker moves the frame
    refocus(page)
    first = frame_digest(page)
    assert move_slider(page, "ArrowRight", first) != first

    assert not page.locator(".speckle-cdi .speckle-error:visible").count()
    assert not page.errors, page.errors
    print(f"\nCDI: dashboard live in {open_s:.1f} s, run {run_s:.1f} s, "
          f"whole test {time.monotonic() - t0:.1f} s")
