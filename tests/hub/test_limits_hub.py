"""Per-user limits in the real hub: a user allocating past their memory limit is killed alone, their
dashboard page says so with the limit, another user's analysis finishes and the hub answers.

As root (CI) the hub puts every server in a cgroup of its own (PID 1 is not systemd on these
machines: cgroup v1, written directly); not as root there are no limits, and the landing page
says so (tests/hub/test_hub_live.py).
"""

import os
import pwd
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hubtools import IS_ROOT, Hub, HealthWatch, _cmdline, _pids_of_uid, running_hub, wait_dashboard_ready
from kernel_client import KernelSocket, start_kernel
from speckle_hub import limits as L
from speckle_jupyter.cgroups import memory_limit, oom_kills

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="limits need root: CI runs as root")

QUICK_GB, LAB_GB = 1.5, 3
ANALYSIS = ("import json, io, contextlib\nfrom speckle.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    rc = main(['demo', '--json'])\n"
            "print(rc, json.loads(buf.getvalue())['verdict'])")


@pytest.fixture(scope="module")
def limited_hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("speckle-hub-limits"), settings={"limits": {
        "memory_gb": 6, "profiles": {"quick": {"memory_gb": QUICK_GB}, "lab": {"memory_gb": LAB_GB}}}}) as hub:
        yield hub


def _memory_cgroup(hub: Hub, unix_name: str) -> Path:
    way = L.confiner("auto", str(hub.state_dir))
    assert way.kind == "cgroup", way.describe()
    return next(Path(d) for d in way.placement(unix_name, L.Limits())["cgroups"] if "/memory/" in d)


def test_a_user_past_the_memory_limit_is_killed_alone(limited_hub, browser, browser_login, artifacts):
    hub = limited_hub
    ana, ben = hub.new_user("oom"), hub.new_user("calm")
    ana.start("quick")
    ben.start("lab")
    cgroup = _memory_cgroup(hub, ana.unix_name)
    uid = pwd.getpwnam(ana.unix_name).pw_uid
    inside = {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
    assert inside and inside <= set(_pids_of_uid(uid))  # the server and its kernels, nothing else
    assert set(_pids_of_uid(uid)) <= inside
    # the hub (and its proxy) answer before the users compute: its event loop at nice -10 and
    # its session's scheduling group too (where the kernel groups by session), the users at 0
    assert os.getpriority(os.PRIO_PROCESS, hub.hub_pid()) == L.LOOP_NICE
    autogroup = Path(f"/proc/{hub.hub_pid()}/autogroup")
    if Path("/proc/sys/kernel/sched_autogroup_enabled").exists() and autogroup.exists():
        assert autogroup.read_text().split()[-1] == str(L.LOOP_NICE)
    assert {os.getpriority(os.PRIO_PROCESS, p) for p in inside} == {0}
    assert memory_limit((1, cgroup)) == int(QUICK_GB * 1e9) // 4096 * 4096
    assert memory_limit((1, _memory_cgroup(hub, ben.unix_name))) == int(LAB_GB * 1e9) // 4096 * 4096

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        browser_login(page, hub, ana)
        page.goto(ana.dashboard_url(), timeout=90_000)
        wait_dashboard_ready(page)
        kernel_id = page.evaluate(
            "JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
        ben_socket = KernelSocket(ben, start_kernel(ben), ben.api_token())
        ana_socket = KernelSocket(ana, kernel_id, ana.api_token())
        with HealthWatch(hub.url) as health, ThreadPoolExecutor(1) as pool:
            analysis = pool.submit(ben_socket.run, ANALYSIS, 300)
            time.sleep(0.5)
            ana_socket.send("hog = bytearray(4 * 10**9)")  # zero-filled: every page is touched
            banner = page.locator("#speckle-kernel-lost")
            banner.wait_for(state="visible", timeout=60_000)
            status, out = analysis.result(300)
        page.screenshot(path=str(artifacts / "limits_killed_for_memory.png"))
        text = banner.inner_text()
        assert f"memory limit of {QUICK_GB:.1f} GB (swap included)" in text, text
        assert "Try a smaller region or fewer frames" in text
        assert banner.get_attribute("data-reason") == "memory"
        assert status == "ok" and out.split()[0] == "0", out  # ben's analysis finished
        assert health.slowest < 1.0, f"the hub took {health.slowest:.2f} s to answer"
        assert oom_kills((1, cgroup)) >= 1
        assert ana.get("speckle/api/status").status_code == 200  # ana's server itself lives on
        assert ben_socket.run("print(len(bytearray(10**8)))")[1].strip() == str(10**8)
        ben_socket.close()
    finally:
        context.close()
    ana.stop()
    assert not cgroup.exists()  # released: nothing of ana's keeps running
    left = {p: (_cmdline(p), Path(f"/proc/{p}/status").read_text().split("State:")[1].split("\n")[0],
                Path(f"/proc/{p}/status").read_text().split("PPid:")[1].split("\n")[0],
                Path(f"/proc/{p}/status").read_text().split("Name:")[1].split("\n")[0])
            for p in _pids_of_uid(uid)}
    assert not left, left
