"""Work with an owner: a dashboard's kernel is stopped once its page has gone, even while busy;
another open page's kernel and a JupyterLab kernel go on."""

import time

import pytest

from hubtools import running_hub, wait_dashboard_ready
from kernel_client import KernelSocket, start_kernel

GRACE = 4.0
KERNEL_ID = "JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId"


@pytest.fixture(scope="module")
def owner_hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("speckle-hub-owner"),
                     settings={"culling": {"dashboard_orphan_grace": GRACE}}) as hub:
        yield hub


def _kernel_state(user, kernel_id: str) -> str:
    r = user.get(f"api/kernels/{kernel_id}")
    return "gone" if r.status_code == 404 else r.json()["execution_state"]


def _open_dashboard(context, user) -> tuple:
    page = context.new_page()
    page.goto(user.dashboard_url(), timeout=90_000)
    wait_dashboard_ready(page)
    return page, page.evaluate(KERNEL_ID)


def test_a_dashboard_kernel_stops_once_its_page_is_gone(owner_hub, browser, browser_login):
    hub = owner_hub
    user = hub.new_user("own")
    user.start("quick")
    token = user.api_token()
    lab = start_kernel(user)  # a JupyterLab-style kernel: its long run goes on without a page
    socket = KernelSocket(user, lab, token)
    socket.start("import time; time.sleep(300)")
    socket.close()
    context = browser.new_context()
    try:
        browser_login(context.new_page(), hub, user)
        closing, closing_kernel = _open_dashboard(context, user)
        staying, staying_kernel = _open_dashboard(context, user)
        assert closing_kernel != staying_kernel
        socket = KernelSocket(user, closing_kernel, token)
        socket.start("import time; time.sleep(600)")  # busy: idle culling would never stop it
        socket.close()
        assert _kernel_state(user, closing_kernel) == "busy"
        closing.close()
        t0 = time.monotonic()
        while _kernel_state(user, closing_kernel) != "gone" and time.monotonic() < t0 + GRACE + 30:
            time.sleep(0.5)
        took = time.monotonic() - t0
        assert _kernel_state(user, closing_kernel) == "gone", f"still there {took:.0f} s after its page closed"
        assert GRACE - 0.5 <= took <= GRACE + 15, took  # after the grace period, not before
        assert _kernel_state(user, staying_kernel) == "idle"  # its page is still open
        assert _kernel_state(user, lab) == "busy"  # not a dashboard: the usual rules
        assert staying.locator("#speckle-kernel-lost").is_hidden()
    finally:
        context.close()
