"""Servers and dashboard kernels forked from warm templates (speckle_hub/warmstart.py,
hub_config/user_server/warm_kernels.py): what they are forked from, who they run as, where,
with what, and that they work; JupyterLab's kernels and a hub without warm start stay cold."""

from __future__ import annotations

import json
import os
import pwd
import socket
import time
from pathlib import Path

import pytest

from hubtools import IS_ROOT, _cmdline, _pids_of_uid, running_hub
from kernel_client import KernelSocket, page_kernel_id, start_kernel
from speckle_hub.limits import Limits, confiner
from speckle_hub.warmstart import _socket_path, pid_alive

HUB_CONFIG = Path(__file__).resolve().parents[2] / "hub_config"
PROBE = ("import json, os, random, sys\n"
         "print(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'uid': os.getuid(),\n"
         "  'path': sys.path, 'random': random.random(), 'cwd': os.getcwd(),\n"
         "  'user': os.environ.get('USER'), 'voila': 'VOILA_BASE_URL' in os.environ,\n"
         "  'targets': sorted(get_ipython().kernel.comm_manager.targets)}))")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _probe(user, kernel_id: str) -> dict:
    socket_ = KernelSocket(user, kernel_id, user.api_token())
    try:
        status, out = socket_.run(PROBE)
    finally:
        socket_.close()
    assert status == "ok", out
    return json.loads(out)


def _dashboard_kernel(user) -> str:
    page = user.get(user.dashboard_url().removeprefix(user.server_url), timeout=120)
    page.raise_for_status()
    return page_kernel_id(page.text)


def _server_of(user) -> int:
    """The process of ``user``'s server (as root its own account's; else the newest)."""
    uid = pwd.getpwnam(user.unix_name).pw_uid if IS_ROOT else os.getuid()
    servers = [p for p in _pids_of_uid(uid) if "user_server/singleuser.py" in _cmdline(p)]
    assert servers, f"no server process for {user.name}"
    return max(servers)


def test_a_quick_check_server_and_its_dashboard_kernels_are_forked_warm(speckle_hub):
    user = speckle_hub.new_user("warm")
    user.start("quick")
    server = _server_of(user)
    template = _ppid(server)
    assert "speckle_hub.warmstart" in _cmdline(template)  # forked, not exec'd by the hub
    assert _nice(server) == 0  # the users' priority, not the hub's
    environ = Path(f"/proc/{server}/environ").read_bytes()
    assert b"CONFIGPROXY_AUTH_TOKEN" not in environ and b"JUPYTERHUB_API_TOKEN" not in environ
    if IS_ROOT:
        entry = pwd.getpwnam(user.unix_name)
        assert os.stat(f"/proc/{server}").st_uid == entry.pw_uid
        way = confiner(speckle_hub.settings.get("limits", {}).get("method", "auto"), str(speckle_hub.state_dir))
        for folder in way.placement(user.unix_name, Limits()).get("cgroups", []):
            assert str(server) in (Path(folder) / "cgroup.procs").read_text().split()  # the user's own

    first, second = _dashboard_kernel(user), _dashboard_kernel(user)
    a, b = _probe(user, first), _probe(user, second)
    for kernel in (a, b):
        assert kernel["voila"]
        assert "speckle kernel template" in _cmdline(kernel["ppid"])  # forked, as the user
        assert _ppid(kernel["ppid"]) == server  # this server's own template
        assert kernel["uid"] == os.stat(f"/proc/{server}").st_uid
        assert kernel["user"] == user.unix_name  # the request's environment, not the template's
        # a fresh interpreter's path: nothing of the templates' (hub_config, user_server)
        assert not any(p.startswith(str(HUB_CONFIG)) for p in kernel["path"]), kernel["path"]
        assert "jupyter.widget.control" in kernel["targets"]  # registered although imported before
        assert "ipykernel_launcher" in _cmdline(kernel["pid"])
    assert a["random"] != b["random"]  # each fork its own random state

    # the forked dashboard works: the demo is analysed to a verdict in its kernel
    socket_ = KernelSocket(user, second, user.api_token())
    try:
        status, out = socket_.run(
            "import gc\nfrom speckle.ui import XpcsDashboard\n"
            "_d = next(o for o in gc.get_objects() if isinstance(o, XpcsDashboard))\n"
            "_d.chooser.open_demo('xpcs'); _d.wait(120)\n_d.runner.run()\n"
            "print('verdict', _d.wait(300) and _d.results.level)", timeout=300)
    finally:
        socket_.close()
    assert status == "ok" and any(f"verdict {v}" in out for v in ("good", "marginal", "bad")), out

    # JupyterLab's kernels start as before: a new process of the server itself
    lab = _probe(user, start_kernel(user))
    assert lab["ppid"] == server and not lab["voila"]

    # a forked kernel killed is reported with its signal, and its template goes with its server
    os.kill(a["pid"], 9)
    end = time.monotonic() + 30
    while time.monotonic() < end and user.get(f"api/kernels/{first}").status_code != 404:
        time.sleep(0.3)
    assert user.get(f"api/kernels/{first}").status_code == 404
    end_reason = user.get(f"speckle/api/kernels/{first}/end").json()
    assert end_reason["reason"] == "killed" and "SIGKILL" in end_reason["message"], end_reason
    kernel_template = a["ppid"]
    user.stop()
    end = time.monotonic() + 30
    while time.monotonic() < end and pid_alive(kernel_template):
        time.sleep(0.2)
    assert not pid_alive(kernel_template) and not pid_alive(b["pid"]) and not pid_alive(server)


@pytest.mark.skipif(not IS_ROOT, reason="another unix account needs root")
def test_the_template_answers_only_its_own_account(speckle_hub):
    path = _socket_path(speckle_hub.state_dir)
    assert path.exists() and (path.stat().st_mode & 0o077) == 0
    nobody = pwd.getpwnam("nobody")
    pid = os.fork()
    if pid == 0:  # as another account: the socket cannot even be opened
        code = 3
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(path))
                code = 1
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    # a request that is not one: refused with a sentence, and the template goes on
    for junk in (b"not json\n", json.dumps({"args": "x"}).encode() + b"\n",
                 json.dumps({"args": [], "env": {"A": 1}, "cwd": "/", "cgroups": []}).encode() + b"\n"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        s.sendall(junk)
        answer = json.loads(s.makefile().readline())
        s.close()
        assert "refused" in answer["error"] and "pid" not in answer
    user = speckle_hub.new_user("warm")
    user.start("quick")
    assert "speckle_hub.warmstart" in _cmdline(_ppid(_server_of(user)))
    user.stop()


def test_without_warm_start_servers_and_kernels_start_cold(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("speckle-hub-cold"), settings={"hub": {"warm_start": False}}) as hub:
        assert not _socket_path(hub.state_dir).exists()
        user = hub.new_user("cold")
        user.start("quick")
        server = _server_of(user)
        assert "speckle_hub.warmstart" not in _cmdline(_ppid(server))
        kernel = _probe(user, _dashboard_kernel(user))
        assert kernel["voila"] and kernel["ppid"] == server  # a new process of the server
        assert "jupyter.widget.control" in kernel["targets"]
        user.stop()


def test_a_template_that_cannot_start_is_reported_and_not_retried_at_once(tmp_path):
    import asyncio

    from speckle_hub.warmstart import WarmStarter, WarmStartError

    starter = WarmStarter(tmp_path, tmp_path / "no-user-server")  # no singleuser.py there
    t0 = time.monotonic()
    with pytest.raises(WarmStartError, match="exited with 2"):
        asyncio.run(starter.ready())
    with pytest.raises(WarmStartError, match="a moment ago"):  # the spawner starts servers cold
        asyncio.run(starter.ready())
    assert time.monotonic() - t0 < 30 and not starter.running()
