"""Faults under `make hub` (hub_config/launch.py supervises the hub): the hub killed with SIGKILL
comes back by itself, keeps the running proxy (open connections are not cut) and the user
servers, and leaves no culler behind; the proxy killed, a dashboard page says "reconnecting" at
once and is connected again within 2 s of the proxy being back."""

import os
import signal
import time

import pytest
import requests

from hubtools import Hub, _children_map, _cmdline, _wait_gone, running_hub, wait_dashboard_ready
from kernel_client import KernelSocket, start_kernel


@pytest.fixture(scope="module")
def fault_hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("speckle-hub-faults")) as hub:
        yield hub


def _cullers(hub_pid: int) -> list[int]:
    return [p for p in _children_map().get(hub_pid, []) if "speckle_hub.culler" in _cmdline(p)]


def _proxy_pid(hub: Hub) -> int:
    return int((hub.state_dir / "proxy.pid").read_text())


def _wait(condition, timeout: float, what: str, interval: float = 0.05) -> float:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() > t0 + timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - t0


def _healthy(hub: Hub) -> bool:
    try:
        return requests.get(hub.url + "hub/health", timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def test_the_hub_comes_back_after_sigkill_keeping_proxy_servers_and_connections(fault_hub):
    hub = fault_hub
    user = hub.new_user("crash")
    user.start("lab")
    socket = KernelSocket(user, start_kernel(user), user.api_token())
    assert socket.run("print(6 * 7)")[1].strip() == "42"
    old_hub, proxy = hub.hub_pid(), _proxy_pid(hub)
    _wait(lambda: len(_cullers(old_hub)) == 1, 30, "the culler runs")
    old_culler = _cullers(old_hub)[0]
    started = hub.api("GET", f"users/{user.name}").json()["servers"][""]["started"]
    os.kill(old_hub, signal.SIGKILL)
    assert _wait_gone(old_culler, 10)  # it dies with its hub
    took = _wait(lambda: _healthy(hub), 60, "the hub answers again")
    print(f"hub killed: answering again after {took:.1f} s")
    new_hub = hub.hub_pid()
    assert new_hub != old_hub and took < 30
    assert _proxy_pid(hub) == proxy and "configurable-http-proxy" in _cmdline(proxy)  # kept
    _wait(lambda: len(_cullers(new_hub)) == 1, 30, "the new hub's culler runs")
    log = hub.log_path.read_text(errors="replace")
    assert "the hub died (killed by SIGKILL); starting it again" in log
    assert f"Keeping the proxy that is already running (pid {proxy})" in log
    # the connection through the proxy was never cut, and the server was found, not restarted
    assert socket.run("print(7 * 6)")[1].strip() == "42"
    socket.close()
    server = hub.api("GET", f"users/{user.name}").json()["servers"][""]
    assert server["ready"] and server["started"] == started


def test_a_page_reconnects_within_2_s_of_the_proxy_being_back(fault_hub, browser, browser_login):
    hub = fault_hub
    user = hub.new_user("net")
    user.start("quick")
    context = browser.new_context()
    try:
        page = context.new_page()
        browser_login(page, hub, user)
        page.goto(user.dashboard_url(), timeout=90_000)
        wait_dashboard_ready(page)
        old_proxy = _proxy_pid(hub)
        os.kill(old_proxy, signal.SIGKILL)
        t_kill = time.monotonic()
        page.locator("#speckle-reconnecting").wait_for(state="visible", timeout=5_000)
        said = time.monotonic() - t_kill
        assert said < 1.5  # "reconnecting" at once
        _wait(lambda: _healthy(hub), 30, "the proxy is back", interval=0.02)
        t_back = time.monotonic()
        assert _proxy_pid(hub) != old_proxy
        page.locator("#speckle-reconnecting").wait_for(state="hidden", timeout=10_000)
        again = time.monotonic() - t_back
        print(f"proxy killed: 'reconnecting' after {said:.2f} s, proxy back after {t_back - t_kill:.2f} s, "
              f"page connected {again:.2f} s later")
        assert again < 2.0, f"reconnected {again:.1f} s after the proxy was back"
        # the same kernel answers: the widgets work, nothing was lost
        page.click(".speckle-demo-xpcs")
        page.wait_for_selector(".speckle-dataset-info:has-text('256')", timeout=60_000)
        assert page.locator("#speckle-kernel-lost").is_hidden()
    finally:
        context.close()
