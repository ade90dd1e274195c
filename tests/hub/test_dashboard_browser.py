"""The XPCS quick check as a person uses it: a real browser, the real hub, proxy, spawner and Voila.

Headless Debian Chromium (Playwright's Python API) logs in through the form, opens the dashboard
from the landing page, analyses the demo data and downloads the result; uploads a 210 MB stack
through the dashboard's own uploader and analyses it; sees a refused upload's reason; a second
user sees none of the first user's data; cancel and a damaged file show in the page.

One hub for the whole session (``speckle_hub``); Alice's server is spawned once (from the landing
page's tile) and reused, Bob's once. Screenshots go to ``tests/artifacts/`` (the README uses
``xpcs-dashboard.png``). Nothing here skips: a missing proxy, browser or dataset fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote

import h5py
import numpy as np
import pytest

from browser_helpers import HDF5, download, page_of, screenshot  # noqa: F401 - a fixture
from hubtools import (
    VERDICT_SELECTOR, RssPeak, add_rectangle, choose_beamline_file, open_dashboard,
    start_make_speckle_npy, wait_analysis_done, wait_dashboard_ready, wait_dataset_open,
)

BIG_FRAMES, BIG_SHAPE = 1600, (256, 256)  # 209.7 MB of uint16
BIG_NAME = "bigscan_1600.npy"
CPU_TEXT = "CPU: this server has no GPU"
TIMEOUT_MS = 120_000


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def big_npy_job(tmp_path_factory):
    """Start writing the 210 MB speckle stack at once: it is ready by the time the upload needs it."""
    path = tmp_path_factory.mktemp("dash-data") / BIG_NAME
    proc = start_make_speckle_npy(path, BIG_FRAMES, BIG_SHAPE)
    yield path, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    path.unlink(missing_ok=True)  # 210 MB: do not leave it in pytest's kept temporary folders


@pytest.fixture(scope="module")
def big_npy(big_npy_job) -> Path:
    path, proc = big_npy_job
    assert proc.wait(180) == 0, "generating the speckle stack failed"
    assert path.stat().st_size == 128 + BIG_FRAMES * BIG_SHAPE[0] * BIG_SHAPE[1] * 2
    return path


@pytest.fixture(scope="module")
def alice(speckle_hub, big_npy_job):
    """The first user (her server is spawned by the first test, from the landing page)."""
    return speckle_hub.new_user("alice")


@pytest.fixture(scope="module")
def bob(speckle_hub):
    """The second user, his server started through the API (spawning is not what he tests)."""
    user = speckle_hub.new_user("bob")
    user.start("quick")
    return user


def _uploads(user) -> Path:
    return user.home / "speckle-uploads"


def _visible_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def _partials(folder: Path) -> list[str]:
    partial = folder / ".partial"
    return sorted(p.name for p in partial.iterdir()) if partial.is_dir() else []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_results(page) -> dict:
    """What every analysis must show: the level and a one-line conclusion, what to do first and
    the problems (folded) unless good, the g2 image, the fit rows."""
    verdict = page.locator(".speckle-verdict")
    classes = verdict.get_attribute("class")
    level = re.search(r"speckle-verdict-(good|marginal|bad)", classes).group(1)
    text = verdict.inner_text().strip()
    assert text.startswith(level.upper()), text[:200]
    conclusion = verdict.locator(".speckle-verdict-conclusion").inner_text().strip()
    assert len(conclusion) > 10, f"the verdict has no conclusion: {text[:200]!r}"
    problems = verdict.locator("details.speckle-problem > summary").all_inner_texts()
    if level != "good":
        assert problems, f"a {level} verdict must give its reasons: {text[:300]!r}"
        assert all(len(p.strip()) > 10 for p in problems)
        assert verdict.locator(".speckle-verdict-action").inner_text().startswith("Do first:")
    g2 = page.locator("img.speckle-g2-plot")
    assert g2.is_visible()
    width, height = g2.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    assert width > 200 and height > 150, (width, height)
    rows = page.locator(".speckle-fit-table tr.speckle-fit-row")
    return {"level": level, "conclusion": conclusion, "problems": problems,
            "rows": rows.all_inner_texts(), "text": text}


def _final_stage(page, seconds: float = 90) -> tuple[str, list]:
    """Follow the analysis stage text until it is final; return it and what was shown."""
    stage = page.locator(".speckle-stage")
    shown, t0 = [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        text = stage.inner_text().strip()
        if not shown or shown[-1][1] != text:
            shown.append((round(time.monotonic() - t0, 1), text))
        if text in ("cancelled", "failed") or text.startswith("done"):
            return text, shown
        page.wait_for_timeout(100)
    return text, shown


def _device_text(page) -> str:
    badge = page.locator(".speckle-device")
    page.wait_for_function(
        "() => { const e = document.querySelector('.speckle-device');"
        " return e && !e.innerText.includes('checking'); }", timeout=30_000)
    return badge.inner_text().strip()


# ---------------------------------------------------------------------------------- 1. the demo
def test_login_landing_demo_analysis_and_download(speckle_hub, alice, page_of, artifacts, tmp_path):
    hub = speckle_hub
    failed = []
    t0 = time.monotonic()
    page = page_of(alice)  # the real login form, then the landing page
    page.on("requestfailed", lambda req: failed.append(req.url))
    assert page.url.endswith("/hub/home")
    tile = page.locator("#tile-xpcs_quick_check")
    assert tile.is_visible() and "XPCS" in tile.inner_text()
    # Alice's server is not running yet (the landing page is starting it, Quick check): the tile
    # waits for it and lands on the dashboard
    server = hub.api("GET", f"users/{alice.name}").json().get("servers", {}).get("")
    assert server is None or not server["ready"], server
    tile.click()
    page.wait_for_url(re.compile(r".*/voila/render/.*xpcs_quick_check\.ipynb.*"), timeout=TIMEOUT_MS)
    wait_dashboard_ready(page, TIMEOUT_MS)
    first_dashboard_s = time.monotonic() - t0
    assert page.url.split("?")[0] == alice.dashboard_url()
    assert page.locator(".speckle-dashboard").is_visible()

    # what computes: this machine has no GPU
    device = _device_text(page)
    assert CPU_TEXT in device, device

    # before any data: a hint where the image will be, not empty axes
    hint = page.locator(".speckle-image-empty")
    assert hint.is_visible() and "Choose a dataset above" in hint.inner_text()
    assert page.locator(".speckle-image").is_hidden()

    # the demo data, with their published q-rings
    page.click("button.speckle-demo-choice")
    info = wait_dataset_open(page, "demo-xpcs")
    assert "100 of 256 × 256" in info, info
    page.locator(".speckle-qrings").wait_for(state="visible")  # known geometry: q-rings
    assert hint.is_hidden() and page.locator(".speckle-image").is_visible()
    # the file's frame time beside the field, and what 0 means
    page.wait_for_selector(".speckle-frame-time-note:has-text('0 = as in the file: 1.3007 ms')",
                           timeout=10_000)
    n_rings = int(page.get_by_label("rings", exact=True).input_value())
    assert n_rings >= 2

    t1 = time.monotonic()
    page.click("button.speckle-analyze")
    wait_analysis_done(page)
    analyze_s = time.monotonic() - t1
    shown = _check_results(page)
    assert len(shown["rows"]) == n_rings, shown["rows"]
    for i, row in enumerate(shown["rows"]):
        assert row.split()[0] == str(i + 1) and "q=" in row
    assert page.locator(".speckle-progress .progress-bar").evaluate("e => e.style.width") == "100%"
    screenshot(page, artifacts / "xpcs-dashboard.png")
    assert (artifacts / "xpcs-dashboard.png").stat().st_size > 50_000

    # the result file, downloaded through the browser as a person would
    link = page.locator("a.speckle-download-link[download='result.h5']")
    assert "HDF5" in link.inner_text()
    assert download(page, "result.h5", tmp_path)[:8] == HDF5
    got = tmp_path / "result.h5"
    with h5py.File(got, "r") as f:
        g2 = f["/xpcs/multitau/normalized_g2"][()]
        assert g2.ndim == 2 and g2.shape[1] == n_rings and np.isfinite(g2).any()
    # the same bytes as the file the server wrote into Alice's results
    href = link.get_attribute("href")
    rel = unquote(href.split("/files/", 1)[1].split("?")[0])
    assert _sha256(got) == _sha256(alice.home / rel)

    # the details of a problem unfold on a click; how much longer to count, ring by ring
    first = page.locator(".speckle-verdict details.speckle-problem").first
    assert first.locator("li").first.is_hidden()
    first.locator("summary").click()
    assert first.locator("li").first.is_visible()
    assert page.locator(".speckle-verdict tr.speckle-forecast-row").count() == n_rings
    # the demo's three intensity spikes, left out with one click
    exclude = page.locator("button.speckle-exclude-again")
    assert exclude.inner_text().strip() == "Exclude frames 3,10,32 and analyse again"
    assert "intensity spike" in shown["text"]
    exclude.click()
    page.wait_for_selector(".speckle-verdict:not(:has-text('intensity spike'))", timeout=TIMEOUT_MS)
    wait_analysis_done(page)
    assert page.locator(".speckle-exclude-frames input").input_value() == "3,10,32"
    assert exclude.is_hidden()
    _check_results(page)

    assert not page.errors, page.errors
    outside = [u for u in failed if not u.startswith(hub.url)]
    print(f"\nlogin -> live dashboard (spawn from the tile included): {first_dashboard_s:.1f} s; "
          f"Analyze -> verdict (demo, {n_rings} rings): {analyze_s:.1f} s; "
          f"requests to other hosts that failed: {len(outside)} {sorted(set(outside))[:3]}")


# ---------------------------------------------------------------------------------- 2. a big upload
def test_upload_200mb_through_the_dashboard_and_analyse(alice, page_of, big_npy, artifacts):
    uploads = _uploads(alice)
    before = _visible_files(uploads)
    page = page_of(alice)
    open_dashboard(page, alice, TIMEOUT_MS)
    size = big_npy.stat().st_size
    assert size >= 200e6

    bar = page.locator("progress.speckle-upload-progress")
    seen = []
    t0 = time.monotonic()
    with RssPeak() as rss:
        # a file path: for a local browser Playwright hands Chromium the path, not the bytes
        page.set_input_files("input.speckle-upload-input", str(big_npy))
        while True:
            status = page.locator(".speckle-upload-status").inner_text()
            seen.append(float(bar.evaluate("e => e.value")))
            if status.startswith("Uploaded") or page.locator(".speckle-upload-error").is_visible():
                break
            assert time.monotonic() - t0 < 150, f"upload stuck: {status!r}"
            page.wait_for_timeout(250)
    upload_s = time.monotonic() - t0
    assert not page.locator(".speckle-upload-error").is_visible(), page.locator(".speckle-upload-error").inner_text()
    assert status == f"Uploaded {BIG_NAME}.", status
    assert bar.evaluate("e => [e.value, e.max]") == [1, 1]  # 100 %
    assert any(0 < v < 1 for v in seen), "the progress bar never showed partial progress"
    assert seen == sorted(seen)

    # memory stayed sane: neither the test driver nor the browser held the whole file
    grown = {k: (rss.peak[k] - rss.start_rss[k]) / 1e6 for k in rss.peak}
    assert grown["driver"] < 100, f"Playwright's driver grew by {grown['driver']:.0f} MB during the upload"
    assert grown["chromium"] < 150, f"Chromium grew by {grown['chromium']:.0f} MB during the upload"

    # placed, complete and identical, in Alice's upload folder only
    assert _visible_files(uploads) - before == {BIG_NAME}
    placed = uploads / BIG_NAME
    assert placed.stat().st_size == size and _sha256(placed) == _sha256(big_npy)
    assert placed.stat().st_mode & 0o077 == 0
    assert not [n for n in _partials(uploads) if n.endswith(".part")]  # only the done record stays

    # the uploaded stack opens in the dashboard at once; two rectangles, Analyze
    info = wait_dataset_open(page, BIG_NAME)
    assert f"{BIG_FRAMES} of 256 × 256" in info, info
    add_rectangle(page, "0:128,0:128")
    add_rectangle(page, "128:256,128:256")
    n_regions = page.locator(".speckle-region-list option").count()
    assert n_regions == 2
    t1 = time.monotonic()
    page.click("button.speckle-analyze")
    wait_analysis_done(page, 240_000)
    analyze_s = time.monotonic() - t1
    shown = _check_results(page)
    assert len(shown["rows"]) == n_regions, shown["rows"]
    screenshot(page, artifacts / "xpcs-dashboard-upload.png")
    assert not page.errors, page.errors
    print(f"\nupload of {size / 1e6:.0f} MB through Chromium: {upload_s:.1f} s "
          f"({size / 1e6 / upload_s:.0f} MB/s); peak RSS driver {rss.peak['driver'] / 1e6:.0f} MB "
          f"(+{grown['driver']:.0f}), Chromium {rss.peak['chromium'] / 1e6:.0f} MB "
          f"(+{grown['chromium']:.0f}); Analyze {BIG_FRAMES} frames: {analyze_s:.1f} s, "
          f"verdict {shown['level']}")


# ---------------------------------------------------------------------------------- 3. a refusal
def test_rejected_upload_shows_the_servers_reason(alice, page_of, tmp_path, artifacts):
    from speckle.io import open_dataset

    bad = tmp_path / "data.h5"
    bad.write_text("temperature,pressure\n20.5,1013\n21.0,1012\n" * 50)
    try:
        open_dataset(bad)
    except Exception as exc:  # the message the server must pass on, its path replaced by the name
        expected = " ".join(str(exc).split()).replace(str(bad), "data.h5")
    else:
        pytest.fail("speckle opened a text file")
    uploads = _uploads(alice)
    before, partial_before = _visible_files(uploads), _partials(uploads)
    page = page_of(alice)
    open_dashboard(page, alice, TIMEOUT_MS)
    page.set_input_files("input.speckle-upload-input", str(bad))
    error = page.locator(".speckle-upload-error")
    error.wait_for(state="visible", timeout=60_000)
    assert error.inner_text().strip() == expected
    assert expected.startswith("data.h5: unsupported content")
    assert "did not succeed" in page.locator(".speckle-upload-status").inner_text()
    assert page.locator("progress.speckle-upload-progress").evaluate("e => e.value") == 1  # bytes sent
    page.locator(".speckle-source-upload").screenshot(path=str(artifacts / "xpcs-upload-refused.png"))
    # nothing placed, nothing partial left, no dataset opened
    assert _visible_files(uploads) == before
    assert _partials(uploads) == partial_before
    assert "data.h5" not in page.locator(".speckle-dataset-info").inner_text()
    assert not page.errors, page.errors


# ---------------------------------------------------------------------------------- 4. isolation
def test_second_user_sees_none_of_the_first_users_data(speckle_hub, alice, bob, page_of, artifacts):
    alice_files = _visible_files(_uploads(alice))
    assert BIG_NAME in alice_files, "the upload test must have run first"
    results = sorted((alice.home / "speckle-results").iterdir())
    assert results
    page = page_of(bob)
    open_dashboard(page, bob, TIMEOUT_MS)
    # Bob's dashboard names none of Alice's files (uploads or results)
    text = page.locator(".speckle-dashboard").inner_text()
    for name in alice_files | {p.name for p in results}:
        assert name not in text
    browse = " ".join(page.locator(".speckle-browse option").all_inner_texts())
    assert BIG_NAME not in browse
    # his own data API lists his uploads only (none)
    base = speckle_hub.url.rstrip("/")
    r = page.request.get(f"{base}/user/{bob.name}/speckle/api/data?root=uploads")
    assert r.status == 200 and r.json() == [], r.text()[:300]
    roots = page.request.get(f"{base}/user/{bob.name}/speckle/api/data").json()
    assert all(alice.name not in str(root) for root in roots), roots

    # direct requests for Alice's data with Bob's cookies are refused
    secret_rel = f"speckle-uploads/{BIG_NAME}"
    result_rel = f"speckle-results/{results[0].name}/result.h5"
    for path in (f"files/{secret_rel}", f"files/{result_rel}?download=1",
                 "speckle/api/data?root=uploads", "speckle/api/status", f"api/contents/{secret_rel}",
                 "voila/render/dashboards/xpcs_quick_check.ipynb"):
        r = page.request.get(f"{base}/user/{alice.name}/{path}", max_redirects=10)
        assert r.status in (401, 403, 404) or "/hub/login" in r.url, (path, r.status, r.url)
        assert BIG_NAME not in r.text() and b"\x93NUMPY" not in r.body() and b"\x89HDF" not in r.body()
    r = page.request.post(f"{base}/user/{alice.name}/speckle/api/uploads",
                          data={"name": "x.npy", "size": 10}, max_redirects=0)
    assert r.status in (302, 401, 403, 404), r.status
    # and in a page (what a curious Bob would type in the address bar)
    response = page.goto(f"{base}/user/{alice.name}/files/{secret_rel}")
    assert response.status in (401, 403, 404) or "/hub/login" in page.url
    assert BIG_NAME not in page.content()
    assert _visible_files(_uploads(alice)) == alice_files
    assert _visible_files(_uploads(bob)) == set()


# ---------------------------------------------------------------------------------- 5. cancel, damage
def test_cancel_and_a_damaged_file_show_in_the_page(speckle_hub, bob, page_of, big_npy, artifacts):
    beam = speckle_hub.beamline_dir
    good = beam / "beam_long_1600.npy"
    if not good.exists():
        os.link(big_npy, good)  # same file system (/tmp): no copy
    damaged = beam / "beam_damaged.npy"
    with open(big_npy, "rb") as src, open(damaged, "wb") as dst:
        dst.write(src.read(4 << 20))  # the header promises 1600 frames, 4 MB follow
    for p in (good, damaged):
        os.chmod(p, 0o644)
    page = page_of(bob)
    open_dashboard(page, bob, TIMEOUT_MS)

    # a damaged file: the reason appears in the page, nothing opens
    choose_beamline_file(page, damaged.name)
    error = page.locator(".speckle-data-chooser .speckle-error").filter(has_text=damaged.name)
    error.wait_for(state="visible", timeout=60_000)
    text = error.inner_text()
    assert "damaged or truncated" in text and "copy it again" in text, text
    assert page.locator(".speckle-dataset-info").inner_text().strip() == ""

    # a long analysis, cancelled: "cancelled" in the page, no result files written
    results = bob.home / "speckle-results"
    choose_beamline_file(page, good.name)
    wait_dataset_open(page, good.name)
    assert page.locator(".speckle-data-chooser .speckle-error:visible").count() == 0
    add_rectangle(page, "0:256,0:256")
    attempts = []
    for attempt in range(3):
        before = sorted(results.iterdir()) if results.exists() else []
        page.wait_for_selector("button.speckle-analyze:enabled")
        page.click("button.speckle-analyze")
        page.wait_for_selector("button.speckle-cancel:enabled", timeout=30_000)
        if attempt == 0:  # in the middle of the work: the stage reports per cent
            page.wait_for_selector(".speckle-stage:has-text('%')", timeout=30_000)
        at_cancel = page.locator(".speckle-stage").inner_text().strip()
        page.click("button.speckle-cancel")
        text, shown = _final_stage(page)
        attempts.append((at_cancel, shown))
        if text == "cancelled":
            break
        # the analysis (about 3 s here) finished before the click reached the kernel: again, sooner
        assert text.startswith("done"), f"after Cancel the stage showed {shown}"
    assert text == "cancelled", f"Cancel never landed: {attempts}"
    if len(attempts) == 1:  # no earlier result on the page: a cancelled one shows nothing
        assert page.locator(VERDICT_SELECTOR).count() == 0, f"a verdict after Cancel ({at_cancel})"
        assert page.locator("a.speckle-download-link").count() == 0
    assert page.locator("button.speckle-analyze").is_enabled()
    assert page.locator("button.speckle-cancel").is_disabled()
    assert not page.locator(".speckle-runner .speckle-error").is_visible()
    after = sorted(results.iterdir()) if results.exists() else []
    assert after == before, "a cancelled analysis left result files"
    page.locator(".speckle-runner").screenshot(path=str(artifacts / "xpcs-cancelled.png"))
    assert not page.errors, page.errors
