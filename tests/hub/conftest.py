"""Fixtures for tests that need the real hub: JupyterHub + npm proxy + spawner, and a browser.

For other test writers (import nothing from here; use the fixtures):

- ``speckle_hub`` (session): a :class:`Hub` started with ``hub_config/launch.py`` (the same path
  as ``make hub``) on 127.0.0.1 with random free ports, a temporary state folder, a temporary
  beamline folder (``hub.beamline_dir``, world-readable, listed in ``data.beamline_dirs``), and
  the admin logged in. As root (CI) every hub user runs as its own unix account
  (``sptest-<name>``, home under a temporary folder), removed with ``userdel -r`` at the end.
- ``hub.new_user()`` -> :class:`HubUser`: signed up, approved by the admin, logged in (a
  ``requests.Session`` in ``user.session``). ``user.start("quick"|"lab")`` spawns the server and
  waits until it answers; ``user.get(path)`` / ``user.post(path, ...)`` talk to the user's server
  (``path`` relative to ``/user/<name>/``) with the server's XSRF token set; ``user.stop()``.
- ``user.dashboard_url("xpcs_quick_check.ipynb")``: the Voila URL of a dashboard (the home copy).
- ``browser`` (per test module): headless Debian Chromium through Playwright. ``browser_login(page, hub,
  user)`` logs in through the real login form and waits for the landing page.
- ``ARTIFACTS``: ``tests/artifacts/`` (gitignored) for screenshots.

Missing proxy or browser make these fixtures FAIL (not skip): ``make test`` installs both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hubtools import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Hub, browser_login  # noqa: F401


@pytest.fixture(scope="session")
def speckle_hub(tmp_path_factory):
    """The real hub (JupyterHub + npm proxy + spawner), shared by the whole test session."""
    hub = Hub(tmp_path_factory.mktemp("speckle-hub"))
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (fails when chromium is missing).

    Module scope on purpose: while Playwright's sync API runs it owns an asyncio loop on the main
    thread, and every ``asyncio.run()`` in later tests would fail ("cannot be called from a
    running event loop"). Stopping it at the end of each module gives the thread back.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make setup-test` (as root: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(name="browser_login")
def _browser_login_fixture():
    return browser_login
