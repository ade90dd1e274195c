"""Helpers of the dashboard browser tests: a logged-in page, screenshots, canvases, downloads.

Import the fixture into a test module to use it (``from browser_helpers import page_of``); it
needs the ``browser``, ``speckle_hub`` and ``browser_login`` fixtures of ``conftest.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

HDF5 = b"\x89HDF\r\n\x1a\n"
#: JavaScript: does a canvas inside ``selector`` hold anything but one flat colour?
CANVAS_DRAWN = """selector => {
    for (const c of document.querySelectorAll(selector + ' canvas')) {
        if (!c.width || !c.height) continue;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 4; i < d.length; i += 4)
            if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
    }
    return false;
}"""
#: JavaScript: does a canvas inside ``arg.selector`` show the colour ``arg.rgb`` (± 6)?
CANVAS_HAS_COLOUR = """arg => {
    const [r, g, b] = arg.rgb;
    for (const c of document.querySelectorAll(arg.selector + ' canvas')) {
        if (!c.width || !c.height) continue;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - r) <= 6 && Math.abs(d[i + 1] - g) <= 6
                && Math.abs(d[i + 2] - b) <= 6) return true;
    }
    return false;
}"""


@pytest.fixture
def page_of(browser, speckle_hub, browser_login):
    """``page_of(user)``: a fresh browser context, logged in through the form; closed afterwards."""
    contexts = []

    def make(user):
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        browser_login(page, speckle_hub, user)
        return page

    yield make
    for context in contexts:
        context.close()


def screenshot(page, path: Path) -> None:
    """The whole dashboard: Voila scrolls inside its own container, so grow the viewport first."""
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight,"
        " ...[...document.querySelectorAll('*')].filter(e => e.scrollHeight > e.clientHeight + 5"
        "    && getComputedStyle(e).overflowY !== 'visible').map(e => e.scrollHeight))")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 6000)})
    try:
        page.wait_for_timeout(300)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


def wait_drawn(page, selector: str, timeout_ms: int = 60_000) -> None:
    """Wait until a canvas inside ``selector`` shows more than one flat colour."""
    page.wait_for_function(CANVAS_DRAWN, arg=selector, timeout=timeout_ms)


def wait_colour(page, selector: str, rgb: tuple[int, int, int], timeout_ms: int = 60_000) -> None:
    """Wait until a canvas inside ``selector`` shows the colour ``rgb`` (a plotted curve)."""
    page.wait_for_function(CANVAS_HAS_COLOUR, arg={"selector": selector, "rgb": list(rgb)},
                           timeout=timeout_ms)


def download(page, name: str, tmp_path: Path) -> bytes:
    """Click the download link of the file ``name``; return the bytes the browser saved."""
    link = page.locator(f"a.speckle-download-link[download='{name}']")
    with page.expect_download(timeout=60_000) as info:
        link.click()
    result = info.value
    assert result.failure() is None and result.suggested_filename == name
    path = tmp_path / name
    result.save_as(path)
    return path.read_bytes()


# -- the refocus panel (FTH, propagation and CDI dashboards) ------------------------------

CURVE_RGB = (0x1F, 0x77, 0xB4)  # the sharpness curve's colour
#: JavaScript: a digest of what the canvases inside ``selector`` show.
CANVAS_DIGEST = """async selector => {
    const urls = [...document.querySelectorAll(selector + ' canvas')].map(c => c.toDataURL());
    const hash = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(urls.join('|')));
    return Array.from(new Uint8Array(hash)).map(b => b.toString(16).padStart(2, '0')).join('');
}"""
#: JavaScript: the bytes behind an <img> (a blob: URL for ipywidgets' Image), as a hex digest.
IMAGE_DIGEST = """async selector => {
    const img = document.querySelector(selector);
    if (!img || !img.src) return '';
    const buf = await (await fetch(img.src)).arrayBuffer();
    const hash = await crypto.subtle.digest('SHA-256', buf);
    return Array.from(new Uint8Array(hash)).map(b => b.toString(16).padStart(2, '0')).join('');
}"""


def frame_digest(page) -> str:
    return page.evaluate(IMAGE_DIGEST, "img.speckle-focus-frame")


def plot_digest(page) -> str:
    return page.evaluate(CANVAS_DIGEST, ".speckle-sharpness-plot")


def wait_changed(digest, old: str, what: str, page, timeout_ms: int = 30_000) -> str:
    """Wait until ``digest()`` differs from ``old``; return the new value."""
    end = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < end:
        value = digest()
        if value and value != old:
            return value
        page.wait_for_timeout(100)
    raise AssertionError(f"{what} did not change")


def wait_new_frame(page, old: str) -> str:
    """Wait until the displayed frame's bytes differ from ``old``; return the new digest."""
    return wait_changed(lambda: frame_digest(page), old, "the displayed frame", page)


def refocus(page) -> None:
    """Press Refocus; wait for done, the sharpness curve drawn and a frame shown.

    Before the first sweep the panel shows a hint, not an empty plot.
    """
    assert page.locator(".speckle-refocus-hint").is_visible()
    assert not page.locator(".speckle-sharpness-plot").is_visible()
    page.click("button.speckle-refocus-run")
    page.wait_for_selector(".speckle-refocus-stage:has-text('done in')", timeout=60_000)
    page.locator(".speckle-sharpness-plot").wait_for(state="visible", timeout=30_000)
    wait_colour(page, ".speckle-sharpness-plot", CURVE_RGB, timeout_ms=30_000)
    assert not page.locator(".speckle-refocus-hint").is_visible()
    page.wait_for_function(
        "() => { const e = document.querySelector('img.speckle-focus-frame');"
        " return e && e.complete && e.naturalWidth > 0 && e.offsetParent !== null; }",
        timeout=30_000)
    page.wait_for_selector("a.speckle-download-link[download='sharpness.csv']", timeout=30_000)


def focus_distance(page) -> str:
    """The focus marker's distance as shown, e.g. "z = -7.500 µm"."""
    return page.locator(".speckle-focus-distance").inner_text().split("(")[0].strip()


def move_slider(page, key: str, before: str) -> str:
    """Press ``key`` on the focus slider's handle; return the frame digest that follows.

    The marker on the sharpness plot moves with it.
    """
    handle = page.locator(".speckle-focus-slider .noUi-handle")
    distance = focus_distance(page)
    plot = plot_digest(page)
    handle.focus()
    page.keyboard.press(key)
    page.wait_for_function(
        "old => { const e = document.querySelector('.speckle-focus-distance');"
        " return e && !e.innerText.startsWith(old); }", arg=distance, timeout=30_000)
    wait_changed(lambda: plot_digest(page), plot, "the marker on the plot", page)
    return wait_new_frame(page, before)
