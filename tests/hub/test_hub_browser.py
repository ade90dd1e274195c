"""A person's first steps in a real browser: the login form, the landing page, the XPCS dashboard.

One journey through the real hub (the ``journey`` fixture, once for the module): log in through
the form, land on the tiles, choose the XPCS quick check, wait until the dashboard is live. Every
request of that browser context goes through an interceptor that lets through only the hub's own
address (and the page's ``data:``/``blob:`` URLs) and refuses anything else, as a beamline network
would. The tests then check what that journey saw.
"""

import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from hubtools import ARTIFACTS, browser_login, wait_dashboard_ready

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def journey(speckle_hub, browser):
    """Login -> landing page -> XPCS tile -> live dashboard, every request recorded."""
    hub = speckle_hub
    artifacts = ARTIFACTS
    artifacts.mkdir(parents=True, exist_ok=True)
    user = hub.new_user("p")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    seen = {"outside": [], "requests": 0}

    def only_the_hub(route):
        url = route.request.url
        seen["requests"] += 1
        if url.startswith(hub.url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            seen["outside"].append(url)
            route.abort("blockedbyclient")

    context.route("**/*", only_the_hub)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        t0 = time.monotonic()
        page.goto(hub.url + "hub/home")  # anonymous: sent to the login form
        seen["anonymous_url"] = page.url
        seen["signup_hint"] = page.is_visible("#signup-hint")
        browser_login(page, hub, user)
        seen["login_s"] = time.monotonic() - t0
        page.wait_for_selector("#tile-xpcs_quick_check")
        seen["title"] = page.title()
        seen["tiles_visible"] = page.is_visible("#tile-jupyterlab") and page.is_visible("#tile-data_browser")
        seen["login_widget"] = page.inner_text("#login_widget").strip()
        page.screenshot(path=str(artifacts / "hub-landing.png"), full_page=True)
        # no tile chosen yet: the landing page has asked the hub to start the server
        t_landing = time.monotonic()
        server = None
        while time.monotonic() - t_landing < 10 and not server:
            server = hub.api("GET", f"users/{user.name}").json().get("servers", {}).get("")
            if not server:
                time.sleep(0.1)
        seen["server_after_landing"] = server
        seen["server_seen_after_s"] = time.monotonic() - t_landing
        page.click("#tile-xpcs_quick_check")
        page.wait_for_url(re.compile(r".*/voila/render/.*xpcs_quick_check\.ipynb.*"))
        wait_dashboard_ready(page, TIMEOUT_MS)
        seen["dashboard_s"] = time.monotonic() - t0
        seen["kernel_id"] = _page_kernel_id(page)
        # the icons of the buttons: Font Awesome from Voila's own bundle, loaded and applied
        seen["icon_font"] = page.locator("button.speckle-analyze i").first.evaluate(
            "e => getComputedStyle(e, '::before').fontFamily")
        seen["icon_font_loaded"] = page.evaluate(
            "async () => { await document.fonts.ready;"
            " return document.fonts.check('900 16px \"Font Awesome 5 Free\"'); }")
        page.screenshot(path=str(artifacts / "hub-dashboard-first-view.png"))
        seen["errors"] = errors
        yield hub, user, seen
    finally:
        context.close()
        try:
            user.stop()
        except Exception:  # noqa: BLE001 - teardown: the hub's own stop cleans up too
            pass


def test_login_through_the_form_reaches_the_landing_page(journey):
    hub, user, seen = journey
    assert "/hub/login" in seen["anonymous_url"] and seen["signup_hint"]
    assert seen["title"] == "speckle hub"
    assert seen["tiles_visible"]
    assert seen["login_widget"].startswith(user.name)
    assert seen["login_s"] < 15


def test_the_landing_page_starts_the_server_before_a_tile_is_chosen(journey):
    hub, user, seen = journey
    server = seen["server_after_landing"]
    assert server is not None, "the landing page did not start the server"
    assert seen["server_seen_after_s"] < 5
    # the Quick check profile: it lands on the XPCS dashboard
    assert server.get("user_options", {}).get("profile") == "quick", server


def test_the_dashboard_comes_from_a_preheated_kernel(journey):
    hub, user, seen = journey
    # Voila's preheated kernel had already run the dashboard when the page asked for it
    log = hub.log_path.read_text(errors="replace")
    assert f"Using pre-heated kernel: {seen['kernel_id']} for dashboards/xpcs_quick_check.ipynb" in log
    assert not seen["errors"], seen["errors"]
    # and that kernel was launched while its server was still starting, not after
    lines = log.splitlines()
    started = next(i for i, line in enumerate(lines) if f"Kernel started: {seen['kernel_id']}" in line)
    spawned = max(i for i, line in enumerate(lines[:started])
                  if "Spawning" in line and "singleuser.py" in line)
    running = next(i for i, line in enumerate(lines) if i > spawned and "is running at" in line)
    assert spawned < started < running, lines[spawned:running + 1]


@contextlib.contextmanager
def _dashboard_page(browser, hub, user):
    """A new browser context logged in as ``user``, on their live XPCS dashboard."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        browser_login(page, hub, user)
        page.goto(user.dashboard_url(), timeout=TIMEOUT_MS)
        wait_dashboard_ready(page, TIMEOUT_MS)
        yield page
    finally:
        context.close()


def _page_kernel_id(page) -> str:
    return json.loads(page.evaluate(
        "() => document.getElementById('jupyter-config-data').textContent"))["kernelId"]


def _wait_until_kernels_idle(user, quiet_s: float = 1.5, timeout: float = 90) -> None:
    """Until the server's kernels (the preheated one) have been idle for ``quiet_s``."""
    end, quiet_since = time.monotonic() + timeout, None
    while time.monotonic() < end:
        kernels = user.get("api/kernels").json()
        if kernels and all(k["execution_state"] == "idle" for k in kernels):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return
        else:
            quiet_since = None
        time.sleep(0.25)
    raise AssertionError(f"the preheated kernel did not settle: {kernels}")


def test_a_preheated_dashboard_lists_new_files_when_it_is_shown(speckle_hub, browser):
    """The preheated kernel listed the beamline folder when the server started; a file that has
    arrived since is in the list when the page is shown, without pressing Refresh."""
    hub = speckle_hub
    user = hub.new_user("late")
    user.start(profile="quick")
    _wait_until_kernels_idle(user)  # the dashboard was executed, the folder listed
    arrived = hub.beamline_dir / f"arrived-{user.name}.npy"
    np.save(arrived, np.ones((2, 8, 8), np.uint16))
    try:
        with _dashboard_page(browser, hub, user) as page:
            log = hub.log_path.read_text(errors="replace")
            assert f"Using pre-heated kernel: {_page_kernel_id(page)}" in log
            option = page.locator(".speckle-browse select option", has_text=arrived.name)
            option.first.wait_for(state="attached", timeout=30_000)
            assert "listed at" in page.inner_text(".speckle-listed")
    finally:
        user.stop()
        arrived.unlink()


def _kernel_pid(kernel_id: str) -> int:
    """The process of a kernel (its command line names its connection file)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"kernel-{kernel_id}.json".encode() in cmdline:
            return int(proc.name)
    raise AssertionError(f"no process for kernel {kernel_id}")


def test_a_dashboard_whose_kernel_dies_says_so_and_a_reload_works(speckle_hub, browser):
    """A kernel killed mid-analysis (by hand here; past the server's memory limit the page says
    that too, with the limit: tests/hub/test_limits_hub.py). The page must say that it stopped
    working, why, and what to do, and nothing else may break."""
    hub = speckle_hub
    user = hub.new_user("oom")
    stack = contextlib.ExitStack()
    try:
        page = stack.enter_context(_dashboard_page(browser, hub, user))
        kernel_id = _page_kernel_id(page)
        # the page asks after its kernel; while it lives, it says nothing
        with page.expect_response(lambda r: f"api/kernels/{kernel_id}" in r.url,
                                  timeout=30_000) as answer:
            pass
        assert answer.value.status == 200
        banner = page.locator("#speckle-kernel-lost")
        assert banner.is_hidden()
        os.kill(_kernel_pid(kernel_id), signal.SIGKILL)
        banner.wait_for(state="visible", timeout=30_000)
        text = banner.inner_text()
        assert "This page has stopped working" in text and "was killed (SIGKILL)" in text
        assert banner.get_attribute("data-reason") == "killed"
        assert "speckle-results" in text
        # the server removed the dead kernel instead of restarting it empty
        assert user.get(f"api/kernels/{kernel_id}").status_code == 404
        # the way out works: a reload gives a live dashboard with a new kernel
        page.click("button.speckle-kernel-lost-reload")
        wait_dashboard_ready(page, TIMEOUT_MS)
        new_id = _page_kernel_id(page)
        assert new_id != kernel_id and page.locator("#speckle-kernel-lost").is_hidden()
        page.click(".speckle-demo-xpcs")
        page.wait_for_selector(".speckle-dataset-info:has-text('256')", timeout=60_000)
    finally:
        stack.close()
        user.stop()


def test_nothing_is_loaded_from_another_host(journey):
    hub, user, seen = journey
    assert seen["requests"] > 20  # the interceptor saw the pages' requests
    assert seen["outside"] == [], f"requests to other hosts: {sorted(set(seen['outside']))}"
    assert "Font Awesome" in seen["icon_font"], seen["icon_font"]
    assert seen["icon_font_loaded"]


def test_signup_page_is_branded_like_login_and_quiet_about_http_on_loopback(speckle_hub, browser,
                                                                         artifacts):
    hub = speckle_hub
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    try:
        page.goto(hub.url + "hub/login")
        login_brand = page.inner_text("#login-main h1.h3"), page.inner_text("#login-main p.text-muted")
        page.click("#signup-hint a")
        page.wait_for_selector("#signup_submit")
        assert page.url.endswith("/hub/signup")
        # the login page's title, logo, heading and tagline; not the authenticator's stock page
        assert page.title() == "speckle hub"
        assert (page.inner_text("#login-main h1.h3"), page.inner_text("#login-main p.text-muted")) \
            == login_brand == ("speckle hub", "Is the data good? Find out during the beamtime.")
        assert page.locator("img.jpy-logo").get_attribute("alt") == "speckle hub"
        assert page.locator("#signup_submit").get_attribute("value") == "Sign up"
        # served over plain HTTP, but on 127.0.0.1 only: nothing crosses the network, no warning
        assert page.url.startswith("http://127.0.0.1:")
        body = page.inner_text("body")
        assert "HTTP" not in body and "unsecured" not in body
        assert page.locator("#insecure-signup-warning, #insecure-login-warning").count() == 0
        page.screenshot(path=str(artifacts / "hub-signup.png"))
        # the form works: a new account waits for an administrator
        name, password = "signup-browser", "a-long-password-1"
        page.fill("#username_input", name)
        page.fill("#password_input", password)
        page.fill("#password_confirmation_input", password)
        page.click("#signup_submit")
        page.wait_for_selector("#signup-result")
        assert "sent to the admin" in page.inner_text("#signup-result")
        assert page.inner_text("#login-main h1.h3") == "speckle hub"
        page.click("#login-hint a")
        page.wait_for_selector("#login_submit")
        page.fill("#username_input", name)
        page.fill("#password_input", password)
        page.click("#login_submit")
        page.wait_for_selector(".login_error")
        assert "waits for an administrator's approval" in page.inner_text(".login_error")
    finally:
        page.close()


def test_login_page_screenshot_wrong_password_and_spawn_form(speckle_hub, browser, artifacts):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(speckle_hub.url + "hub/login")
        page.screenshot(path=str(artifacts / "hub-login.png"))
        page.fill("#username_input", "nobody")
        page.fill("#password_input", "not-the-password")
        page.click("#login_submit")
        page.wait_for_selector(".login_error")
        assert "Invalid username or password" in page.inner_text(".login_error")
        # straight to the spawn form (not through the landing page, which would start the server)
        user = speckle_hub.new_user("f")
        page.goto(speckle_hub.url + "hub/login?next=" + quote("/hub/spawn"))
        page.fill("#username_input", user.name)
        page.fill("#password_input", user.password)
        page.click("#login_submit")
        page.wait_for_selector("#profile-quick")
        assert page.is_checked("#profile-quick")
        page.screenshot(path=str(artifacts / "hub-spawn-form.png"), full_page=True)
    finally:
        page.close()
