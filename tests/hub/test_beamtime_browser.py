"""The beamtime monitor in the real hub, driven in a real browser.

A hub with the monitor on (a managed service with its own unix account as root, analyses on a Dask
LocalCluster) watches the hub's beamline folder. A user opens the Beamtime tile; a new dataset
written into the folder appears on the page without a reload, with its verdict; *Open* shows it
in the XPCS dashboard with the folder's template, analysed. In the dashboard, "Use for new files
in this folder" saves the page's region as the folder's template, and the next file is analysed
with it. The page and its API refuse anyone not logged in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from browser_helpers import screenshot
from hubtools import (IS_ROOT, Hub, add_rectangle, browser_login, free_port, wait_analysis_done,
                      wait_dashboard_ready, wait_dataset_open)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor_helpers import write_stack  # noqa: E402
from speckle.monitor.index import read_index  # noqa: E402

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def beamtime_hub(tmp_path_factory):
    """A hub whose beamtime monitor watches the hub's beamline folder."""
    results = Path(tempfile.mkdtemp(prefix="speckle-beamtime-", dir="/tmp"))
    os.chmod(results, 0o755)
    hub = Hub(tmp_path_factory.mktemp("speckle-hub-beamtime"), settings={"monitor": {
        "enabled": True, "results_dir": str(results), "settle_seconds": 1.0,
        "internal_port": free_port(), "cluster": {"type": "local", "workers": 1}}})
    hub.results = results
    try:
        hub.start()
        _wait_monitor_started(hub)
        yield hub
    finally:
        hub.stop()
        shutil.rmtree(results, ignore_errors=True)


def _wait_monitor_started(hub, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (hub.results / "state.sqlite").exists() and "watching" in hub.log_tail(400):
            return
        time.sleep(0.5)
    raise AssertionError(f"the monitor did not start:\n{hub.log_tail(80)}")


@pytest.fixture(scope="module")
def carla(beamtime_hub):
    return beamtime_hub.new_user("carla")


@pytest.fixture
def page(browser, beamtime_hub, carla):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(60_000)
    p.errors = []
    p.on("pageerror", lambda exc: p.errors.append(str(exc)))
    browser_login(p, beamtime_hub, carla)
    yield p
    context.close()


def test_the_monitor_runs_as_its_own_account_and_writes_only_its_results(beamtime_hub):
    owner = beamtime_hub.results.stat().st_uid
    if IS_ROOT:
        import pwd

        assert pwd.getpwuid(owner).pw_name == "speckle-monitor"
    assert beamtime_hub.results.stat().st_mode & 0o777 == 0o755  # users read results


def test_a_new_dataset_appears_live_and_opens_in_its_dashboard(beamtime_hub, page, artifacts):
    hub = beamtime_hub
    page.click("#tile-beamtime")
    page.wait_for_url(re.compile(r".*/services/beamtime/$"))
    page.wait_for_selector("#bt-live.ok", timeout=60_000)
    assert "speckle-beamline-" in page.inner_text("#bt-folders")
    # a dataset lands while the page is open: it appears without a reload
    page.evaluate("() => { window.notReloaded = true; }")
    t0 = time.monotonic()
    write_stack(hub.beamline_dir / "scan_0007.h5", seed=7)
    row = page.locator("tr[data-path$='/scan_0007.h5'][data-state='done']")
    row.wait_for(timeout=TIMEOUT_MS)
    seen_s = time.monotonic() - t0
    assert page.evaluate("() => window.notReloaded === true")
    [entry] = [e for e in read_index(hub.results / "index.jsonl") if e["path"].endswith("scan_0007.h5")]
    verdict = entry["verdict"]
    assert row.locator(f".bt-badge.{verdict}").inner_text().strip() == verdict.upper()
    assert entry["conclusion"] in row.inner_text()
    assert row.locator("img.bt-thumb").evaluate("e => e.complete && e.naturalWidth > 0")
    assert row.locator("img.bt-g2").evaluate("e => e.complete && e.naturalWidth > 0")
    if verdict == "bad":
        assert "bt-row-bad" in row.get_attribute("class")
    # filters
    page.select_option("#bt-filter-verdict", "failed")
    assert row.is_hidden()
    page.select_option("#bt-filter-verdict", "")
    assert row.is_visible()
    screenshot(page, artifacts / "beamtime-page.png")

    # Open: the dashboard with the dataset and the folder's settings, analysed at once
    with page.context.expect_page() as opened:
        row.locator("a.bt-open").click()
    dash = opened.value
    dash.errors = []
    dash.on("pageerror", lambda exc: dash.errors.append(str(exc)))
    dash.set_default_timeout(TIMEOUT_MS)
    wait_dashboard_ready(dash, TIMEOUT_MS)
    wait_dataset_open(dash, "scan_0007.h5", TIMEOUT_MS)
    wait_analysis_done(dash, TIMEOUT_MS)
    assert dash.locator(f".speckle-verdict-{verdict}").count() >= 1  # the page's verdict again
    assert not page.errors and not dash.errors, (page.errors, dash.errors)
    print(f"\nfile closed -> row on the page: {seen_s:.1f} s")


def test_use_for_new_files_in_this_folder(beamtime_hub, page, carla):
    hub = beamtime_hub
    sub = hub.beamline_dir / "sample3"
    sub.mkdir(exist_ok=True)
    os.chmod(sub, 0o755)
    write_stack(sub / "first.h5", seed=1)
    page.goto(carla.dashboard_url())
    wait_dashboard_ready(page, TIMEOUT_MS)
    page.click(".speckle-source-browse button:has-text('Refresh')")
    select = page.locator(".speckle-browse select")
    select.locator("option", has_text="sample3").first.wait_for(state="attached")
    labels = select.locator("option").all_inner_texts()
    select.select_option(index=next(i for i, t in enumerate(labels) if "sample3/" in t))  # go in
    select.locator("option", has_text="first.h5").first.wait_for(state="attached")
    labels = select.locator("option").all_inner_texts()
    select.select_option(index=next(i for i, t in enumerate(labels) if t.split()[0] == "first.h5"))
    page.click("button.speckle-browse-open")
    wait_dataset_open(page, "first.h5")
    add_rectangle(page, "0:16,0:16")
    page.click("button.speckle-use-for-folder")
    note = page.locator(".speckle-folder-template-note")
    note.filter(has_text="Saved").wait_for(timeout=30_000)
    assert str(sub) in note.inner_text() and carla.name in note.inner_text()
    [saved] = list((hub.results / "templates").glob("sample3-*.yaml"))
    assert f"saved_by: {carla.name}" in saved.read_text()
    # the next file of that folder is analysed with that region
    write_stack(sub / "second.h5", seed=2)
    end = time.monotonic() + 120
    entries = []
    while time.monotonic() < end:
        entries = [e for e in read_index(hub.results / "index.jsonl") if e["path"].endswith("second.h5")]
        if entries:
            break
        time.sleep(0.5)
    assert entries and "error" not in entries[0], entries
    summary = json.loads((Path(entries[0]["result"]) / "summary.json").read_text())
    assert [b["label"] for b in summary["details"]["bins"]] == ["ROI 1 [0:16, 0:16]"]


def test_the_page_and_its_api_refuse_strangers(beamtime_hub):
    base = beamtime_hub.url + "services/beamtime/"
    for path in ("", "api/datasets?since=0", "api/templates?folder=/tmp",
                 "api/file?path=/etc/passwd&name=thumb.png"):
        r = requests.get(base + path, allow_redirects=False, timeout=10)
        assert r.status_code in (302, 403), (path, r.status_code)
        if r.status_code == 302:
            assert "/hub/api/oauth2/authorize" in r.headers["location"]
    r = requests.post(base + "api/templates", json={"folder": "/tmp", "template": {}}, timeout=10,
                      headers={"Authorization": "token not-a-token"})
    assert r.status_code in (302, 403)
