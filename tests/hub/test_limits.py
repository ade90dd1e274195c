"""Per-user limits without a hub: settings to limits, the three ways, and the kernel enforcing them.

The cgroup v1 tests run for real (root, as CI runs; these machines mount v1 controllers
writable and PID 1 is not systemd); v2 and systemd are checked on what they write and run.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubtools import HUB_CONFIG, IS_ROOT
from speckle_hub import limits as L
from speckle_hub.settings import SettingsError, load
from speckle_jupyter.cgroups import memory_limit, mount_table, oom_kills, own_cgroups
from speckle_jupyter.kernel_end import explain

GB = 10**9
needs_root = pytest.mark.skipif(not IS_ROOT, reason="cgroups are written as root (CI runs as root)")


def test_limits_come_from_settings_profile_then_user():
    section = {"memory_gb": 8, "cpus": None, "processes": 4096,
               "profiles": {"lab": {"memory_gb": 16, "cpus": 4}},
               "users": {"alice": {"memory_gb": 64, "processes": 0}}}
    assert L.resolve(section, "bob", "quick") == L.Limits(8 * GB, None, 4096)
    assert L.resolve(section, "bob", "lab") == L.Limits(16 * GB, 4.0, 4096)
    assert L.resolve(section, "alice", "lab") == L.Limits(64 * GB, 4.0, None)
    half = L.resolve({"memory_gb": None})
    assert half.memory_bytes == L.machine_memory() // 2
    assert L.resolve({"memory_gb": 0}).memory_bytes is None
    assert L.Limits(4 * GB, 2, 100).text() == "memory 4.0 GB (swap included), 2 CPUs, 100 processes"


def test_settings_refuse_a_limit_too_small_for_a_server(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text(json.dumps({"limits": {"users": {"alice": {"memory_gb": 0.1}}}}))
    with pytest.raises(SettingsError, match=r"limits.users.alice.memory_gb: 0.1 GB is too little"):
        load(path)
    path.write_text(json.dumps({"limits": {"profiles": {"gpu": {"memory_gb": 4}}}}))
    with pytest.raises(SettingsError, match=r"limits.profiles: Additional properties .*gpu"):
        load(path)
    path.write_text(json.dumps({"limits": {"method": "docker"}}))
    with pytest.raises(SettingsError, match=r"limits.method: 'docker' is not one of"):
        load(path)


def test_cgroup_v2_writes_limits_and_enables_controllers(tmp_path):
    top = tmp_path / "cg2"
    (top / "hub").mkdir(parents=True)
    (top / "cgroup.subtree_control").write_text("")
    (top / "hub" / "cgroup.subtree_control").write_text("")
    way = L.CgroupFs(2, {"unified": top}, {"unified": "/hub"}, "speckle-hub-x")
    base = top / "hub" / "speckle-hub-x"
    base.mkdir()
    (base / "cgroup.subtree_control").write_text("")
    (base / "cpu.weight").write_text("100")
    user = base / "speckle-ana"
    user.mkdir()
    for name in ("memory.max", "memory.swap.max", "cpu.max", "pids.max", "cgroup.procs"):
        (user / name).write_text("")
    placement = way.setup("speckle-ana", L.Limits(3 * GB, 1.5, 500))
    assert placement == {"cgroups": [str(user)]}
    assert (user / "memory.max").read_text() == str(3 * GB)
    assert (user / "memory.swap.max").read_text() == "0"
    assert (user / "cpu.max").read_text() == "150000 100000"
    assert (user / "pids.max").read_text() == "500"
    assert (base / "cpu.weight").read_text() == str(100 * L.USERS_CPU_WEIGHT)  # all users vs the hub
    # every level down to the hub's folder hands the controllers on (the files take one "+x"
    # per write; a real cgroup.subtree_control accumulates them)
    assert (base / "cgroup.subtree_control").read_text() == "+pids"
    assert way.prefix(placement, "speckle-ana") == []


def test_cgroup_v2_without_a_memory_controller_is_refused_with_what_to_do(tmp_path):
    top = tmp_path / "cg2"
    top.mkdir()
    way = L.CgroupFs(2, {"unified": top}, {"unified": "/"}, "speckle-hub-x")
    with pytest.raises(L.LimitsError, match="no memory controller.*limits.method: off"):
        way.setup("speckle-ana", L.Limits(GB))


def test_systemd_runs_each_server_in_a_scope_with_its_limits():
    way = L.Systemd(systemd_run="/usr/bin/systemd-run", systemctl="/bin/true")
    placement = way.setup("speckle-ana", L.Limits(4 * GB, 2, 1000))
    prefix = way.prefix(placement, "root")
    assert prefix == ["/usr/bin/systemd-run", "--scope", "--quiet", "--collect",
                      "--unit=speckle-speckle-ana.scope", "--slice=speckle.slice", "--nice=0",
                      "-p", f"MemoryMax={4 * GB}", "-p", "MemorySwapMax=0", "-p", "CPUQuota=200%",
                      "-p", "TasksMax=1000", "--uid=0", "--gid=0", "--"]
    assert way.preexec(placement) is None


def test_mount_and_own_cgroup_tables_are_read_from_proc():
    mountinfo = ("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                 "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                 "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    v1, v2 = mount_table(mountinfo)
    assert v1 == {"memory": Path("/sys/fs/cgroup/memory"), "cpu": Path("/sys/fs/cgroup/cpu,cpuacct")}
    assert v2 == Path("/sys/fs/cgroup/unified")
    assert own_cgroups("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/c\n") == {"memory": "/a/b", "cpu": "/", "unified": "/c"}


def test_a_kernel_killed_for_memory_is_explained_with_the_limit():
    end = explain(-signal.SIGKILL, True, 2 * GB)
    assert end["reason"] == "memory" and "memory limit of 2.0 GB (swap included)" in end["message"]
    assert "ask an administrator" in end["message"]
    assert explain(-signal.SIGKILL, False, 2 * GB)["reason"] == "killed"
    assert explain(-signal.SIGTERM, True, 2 * GB)["reason"] == "killed"
    assert explain(1, False, None)["message"].startswith("Its analysis engine (the kernel) ended (exit status 1)")


def test_single_account_mode_says_limits_are_off(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    way = L.confiner("auto", str(tmp_path))
    assert way.kind == "off"
    assert "Resource limits are OFF: the hub does not run as root (single-account mode)" in way.describe()


@needs_root
def test_cgroup_v1_kills_only_the_process_past_its_limit(tmp_path):
    """Real cgroups: a process allocating past 300 MB is killed alone, a neighbour outside goes
    on, CPU is capped, and release kills what is left and removes the cgroup."""
    way = L.confiner("cgroup", str(tmp_path))
    assert way.kind == "cgroup" and way.version == 1
    placement = way.setup("speckle-ana", L.Limits(300 * 10**6, 0.5, 200))
    memory = next(Path(d) for d in placement["cgroups"] if "/memory/" in d)
    cpu = next(Path(d) for d in placement["cgroups"] if "/cpu/" in d)
    assert (cpu.parent / "cpu.shares").read_text().strip() == str(1024 * L.USERS_CPU_WEIGHT)
    try:
        neighbour = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(400_000_000); time.sleep(30)"])
        hog = subprocess.run([sys.executable, "-c", "b = bytearray(600_000_000); print('survived')"],
                             preexec_fn=way.preexec(placement), capture_output=True, timeout=60)
        assert hog.returncode == -signal.SIGKILL and b"survived" not in hog.stdout
        assert oom_kills((1, memory)) == 1 and memory_limit((1, memory)) == 299999232
        assert neighbour.poll() is None  # outside the cgroup: untouched
        neighbour.kill()
        spin = ("import time\nt, e = time.process_time(), time.time()\n"
                "while time.time() - e < 1.5: pass\nprint(time.process_time() - t)")
        used = subprocess.run([sys.executable, "-c", spin], preexec_fn=way.preexec(placement),
                              capture_output=True, text=True, timeout=60)
        assert float(used.stdout) < 1.0  # half a core for 1.5 s of wall time
        leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                    preexec_fn=way.preexec(placement))
        way.release(placement)
        assert leftover.wait(10) == -signal.SIGKILL
        assert not any(Path(d).exists() for d in placement["cgroups"])
    finally:
        way.remove_all()
    assert not any(Path(d).parent.exists() for d in placement["cgroups"])


@needs_root
def test_a_service_runs_confined_as_its_account(tmp_path):
    """speckle_hub.confine: the monitor's wrapper joins the cgroup, then drops to the account."""
    s = {"limits": {"method": "cgroup"}, "_state_dir": str(tmp_path)}
    probe = [sys.executable, "-c", "import os; print(os.getuid(), open('/proc/self/cgroup').read())"]
    cmd = L.service_command(s, "monitor", L.Limits(GB), "nobody", probe)
    assert cmd[-len(probe) - 1:] == ["--", *probe]
    env = {**os.environ, "PYTHONPATH": str(HUB_CONFIG)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/", timeout=60)
    way = L.confiner("cgroup", str(tmp_path))
    try:
        assert out.returncode == 0, out.stderr
        uid, cgroups = out.stdout.split(" ", 1)
        assert int(uid) == 65534
        memory = next(d for d in way.placement("monitor", L.Limits())["cgroups"] if "/memory/" in d)
        assert "memory:" + memory.split("/sys/fs/cgroup/memory", 1)[1] in cgroups
        assert Path(memory, "memory.limit_in_bytes").read_text().strip() == str(GB - GB % 4096)
    finally:
        way.remove_all()
    # limits off: the same wrapper still runs the service as its account (and with the hub's life)
    off = L.service_command({**s, "limits": {"method": "off"}}, "monitor", L.Limits(GB), "nobody", probe)
    out = subprocess.run(off, capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert out.returncode == 0 and out.stdout.split(" ", 1)[0] == "65534", out.stderr
    assert "speckle-hub-" not in out.stdout


def test_a_service_dies_with_the_hub(tmp_path):
    """A hub killed with SIGKILL takes its services (culler, monitor) with it: no orphan polls the
    next hub. Here a shell plays the hub: it starts a confined service, then is killed."""
    s = {"limits": {"method": "off"}, "_state_dir": str(tmp_path)}
    service = L.service_command(s, "probe", L.Limits(), None, [sys.executable, "-c", "import time; time.sleep(60)"])
    env = {**os.environ, "PYTHONPATH": str(HUB_CONFIG)}
    hub = subprocess.Popen(["/bin/sh", "-c", " ".join(map(shlex.quote, service)) + " & echo $!; wait"],
                           stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    pid = int(hub.stdout.readline())
    time.sleep(1.0)  # the wrapper has become the service
    assert "time.sleep(60)" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    hub.kill()
    hub.wait(10)
    end = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
