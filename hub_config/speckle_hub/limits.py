"""Kernel-enforced limits on each user's server and everything it starts: memory (swap included),
CPU and processes; the beamtime monitor gets its own.

How, chosen once per hub (``limits.method: auto``):

- ``systemd`` (PID 1 is systemd, as on beamline servers): the server starts inside a transient
  scope ``speckle-<account>.scope`` in ``speckle.slice`` (``systemd-run --scope``) with
  ``MemoryMax``, ``MemorySwapMax=0``, ``CPUQuota``, ``TasksMax``; the same cgroup machinery as
  TLJH's systemdspawner, keeping JupyterHub's process spawner.
- ``cgroup`` (PID 1 is not systemd: containers, test machines): the hub makes one cgroup per
  server, ``<the hub's own cgroup>/speckle-hub-<id>/<account>``, in each controller of cgroup v1
  (memory, cpu, pids) or in the unified cgroup v2 hierarchy, writes the limits, and the server's
  first process joins it before it runs anything, so every kernel and analysis it starts is
  inside.
- ``off``: the hub is not root (single-account mode) or ``limits.method: off``. No limit; the
  banner, the log and the landing page say so.

Past the memory limit the kernel's OOM killer kills a process of that cgroup only (the one that
allocated most, normally the kernel that asked): the user's server, other users and the hub run
on. When the server stops, whatever is left in its cgroup is killed and the cgroup removed: no
computation outlives its server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from speckle_jupyter.cgroups import mount_table, own_cgroups

__all__ = ["Limits", "LimitsError", "confiner", "machine_memory", "resolve", "service_command"]

CPU_PERIOD_US = 100_000
#: The servers' cgroups share one parent, which the kernel weighs against every process beside
#: it (the hub, the proxy, anything else on the machine) as if it were one process: with the
#: default weight, ten busy users together got the CPU of one process (Analyze 5x slower under
#: load). Weighed as this many processes, the users get the machine and the hub still gets a
#: ninth of it when everything is busy, enough to answer at once.
USERS_CPU_WEIGHT = 8
#: The hub and its proxy run at this nice value (as root), so that they answer at once even when
#: every user computes (20 busy users: /hub/health took 3.1 s at nice 0); what they start for
#: users (servers, services) is put back to 0 (:func:`user_priority`).
HUB_NICE = -5
#: The hub's event-loop thread (and so its proxy, which that thread starts) runs higher still:
#: with the hub's other threads at HUB_NICE (password hashing), ten logins at once held its
#: answers back by up to a second on two cores.
LOOP_NICE = -10
SLICE = "speckle.slice"


class LimitsError(RuntimeError):
    """Limits cannot be applied as configured (one line saying what to change)."""


@dataclass(frozen=True)
class Limits:
    """What one server (or service) may use; None means no limit.

    Attributes
    ----------
    memory_bytes : int or None
        Memory, swap included.
    cpus : float or None
        A hard cap in cores (``1.5`` = one and a half cores' time).
    processes : int or None
        Processes and threads together.
    """

    memory_bytes: int | None = None
    cpus: float | None = None
    processes: int | None = None

    def text(self) -> str:
        """The limits in words, e.g. ``'memory 4.0 GB (swap included), 2 CPUs, 4096 processes'``."""
        parts = [f"memory {self.memory_bytes / 1e9:.1f} GB (swap included)" if self.memory_bytes
                 else "no memory limit"]
        if self.cpus:
            parts.append(f"{self.cpus:g} CPU{'s' if self.cpus != 1 else ''}")
        if self.processes:
            parts.append(f"{self.processes} processes")
        return ", ".join(parts)


def machine_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve(section: dict, user: str | None = None, profile: str | None = None) -> Limits:
    """The limits of one server from the settings' ``limits`` section.

    Parameters
    ----------
    section : dict
        ``limits`` of the validated settings: ``memory_gb``, ``cpus``, ``processes`` and
        ``profiles`` / ``users`` overriding them (a user's entry wins over their profile's).
    user, profile : str, optional
        The hub user and the profile of the server.

    Returns
    -------
    Limits
        ``memory_gb: null`` is half of this machine's memory; 0 (or null for ``cpus`` and
        ``processes``) is no limit.
    """
    keys = ("memory_gb", "cpus", "processes")
    merged = {k: section.get(k) for k in keys}
    for layer in (section.get("profiles", {}).get(profile or "", {}),
                  section.get("users", {}).get(user or "", {})):
        merged.update({k: layer[k] for k in keys if k in layer})
    memory = merged["memory_gb"]
    memory_bytes = machine_memory() // 2 if memory is None else int(float(memory) * 1e9)
    return Limits(memory_bytes=memory_bytes or None, cpus=float(merged["cpus"] or 0) or None,
                  processes=int(merged["processes"] or 0) or None)


def base_name(state_dir: str) -> str:
    """The cgroup (or nothing, under systemd) that holds one hub's servers: one per state folder,
    so that a restarted hub finds its servers' cgroups and two test hubs never share one."""
    return "speckle-hub-" + hashlib.sha1(os.path.abspath(state_dir).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------------------
# the ways
# --------------------------------------------------------------------------------------------

class Off:
    """No limits (not root, or switched off): says why."""

    kind = "off"

    def __init__(self, reason: str):
        self.reason = reason

    def describe(self) -> str:
        return f"Resource limits are OFF: {self.reason}. One user can use all of this machine's memory and CPU."

    def placement(self, name: str, limits: Limits) -> dict:
        return {}

    def setup(self, name: str, limits: Limits) -> dict:
        return {}

    def prefix(self, placement: dict, account: str | None) -> list[str]:
        return []

    def preexec(self, placement: dict):
        return None

    def release(self, placement: dict) -> None:
        pass


class CgroupFs:
    """cgroup v1 (one folder per controller) or v2 (one folder), written directly.

    Parameters
    ----------
    version : {1, 2}
    mounts : dict
        Controller (v1) or ``"unified"`` (v2) -> mount point.
    own : dict
        The same keys -> this process's cgroup path inside that mount (``/proc/self/cgroup``).
    base : str
        The folder under ``own`` holding this hub's servers (:func:`base_name`).
    """

    kind = "cgroup"

    def __init__(self, version: int, mounts: dict[str, Path], own: dict[str, str], base: str):
        self.version = version
        self.mounts = {k: Path(v) for k, v in mounts.items()}
        self.own = own
        self.base = base

    def describe(self) -> str:
        where = ", ".join(str(p) for p in self._parents())
        return f"Resource limits: cgroup v{self.version}, one cgroup per server under {where}"

    def _parents(self) -> list[Path]:
        return [self.mounts[k] / self.own.get(k, "/").lstrip("/") / self.base for k in self.mounts]

    def placement(self, name: str, limits: Limits) -> dict:
        """Where the cgroup ``name`` is (nothing is made)."""
        return {"cgroups": [str(parent / name) for parent in self._parents()]}

    def setup(self, name: str, limits: Limits) -> dict:
        """Make (or reuse) the cgroup ``name`` with ``limits``; return its :meth:`placement`."""
        dirs = [Path(d) for d in self.placement(name, limits)["cgroups"]]
        try:
            if self.version == 2:
                self._enable_v2(dirs[0].parent)
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
            for base in {d.parent for d in dirs}:  # all the servers together, against the hub
                for filename, value in (("cpu.shares", str(1024 * USERS_CPU_WEIGHT)),
                                        ("cpu.weight", str(100 * USERS_CPU_WEIGHT))):
                    if (base / filename).exists():
                        (base / filename).write_text(value)
            writes = _v1_writes(limits) if self.version == 1 else _v2_writes(limits)
            for d in dirs:
                for filename, value in writes:
                    if (d / filename).exists():  # each v1 folder has its own controller's files
                        _write_limit(d, filename, value)
        except OSError as exc:
            raise LimitsError(f"cannot set up the cgroup {dirs[0]}: {exc.strerror or exc} "
                              "(set limits.method: off to run without limits)") from None
        memory = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        if not any((d / memory).exists() for d in dirs):
            raise LimitsError(f"the cgroup {dirs[0]} has no memory controller (no {memory}); "
                              "set limits.method: off to run without limits")
        return {"cgroups": [str(d) for d in dirs]}

    def _enable_v2(self, base: Path) -> None:
        """Controllers must be enabled in every parent's cgroup.subtree_control down to ``base``."""
        top = self.mounts["unified"]
        base.mkdir(parents=True, exist_ok=True)
        for folder in [*reversed(base.relative_to(top).parents), base.relative_to(top)]:
            control = top / folder / "cgroup.subtree_control"
            have = set(control.read_text().split()) if control.exists() else set()
            for ctrl in ("memory", "cpu", "pids"):
                if ctrl not in have:
                    control.write_text(f"+{ctrl}")

    def prefix(self, placement: dict, account: str | None) -> list[str]:
        return []  # the first process joins the cgroup itself (preexec)

    def preexec(self, placement: dict):
        """A function for ``Popen(preexec_fn=...)``: the child joins the cgroup, as root, before
        it drops to the user and runs anything."""
        dirs = list(placement.get("cgroups", []))
        return (lambda: join(dirs)) if dirs else None

    def release(self, placement: dict, timeout: float = 10) -> None:
        """Kill what is left in the cgroup and remove it."""
        for d in map(Path, placement.get("cgroups", [])):
            end = time.monotonic() + timeout
            while d.exists():
                for pid in _pids(d):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    d.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        break
                    time.sleep(0.05)


    def remove_all(self) -> None:
        """Release every cgroup of this hub and remove its folder (the hub is gone for good)."""
        for parent in self._parents():
            if parent.is_dir():
                self.release({"cgroups": [str(d) for d in parent.iterdir() if d.is_dir()]})
                try:
                    parent.rmdir()
                except OSError:
                    pass


class Systemd:
    """A transient scope per server (``systemd-run --scope``), in ``speckle.slice``."""

    kind = "systemd"

    def __init__(self, systemd_run: str = "systemd-run", systemctl: str = "systemctl"):
        self.systemd_run, self.systemctl = systemd_run, systemctl

    def describe(self) -> str:
        return f"Resource limits: systemd, one scope per server in {SLICE}"

    def placement(self, name: str, limits: Limits) -> dict:
        return {"unit": f"speckle-{name}.scope", "properties": _systemd_properties(limits)}

    def setup(self, name: str, limits: Limits) -> dict:
        placement = self.placement(name, limits)
        self.release(placement)  # a scope of that name left by a crashed server
        return placement

    def prefix(self, placement: dict, account: str | None) -> list[str]:
        cmd = [self.systemd_run, "--scope", "--quiet", "--collect", f"--unit={placement['unit']}",
               f"--slice={SLICE}", "--nice=0"]
        for prop in placement["properties"]:
            cmd += ["-p", prop]
        if account:
            entry = pwd.getpwnam(account)
            cmd += [f"--uid={entry.pw_uid}", f"--gid={entry.pw_gid}"]
        return cmd + ["--"]

    def preexec(self, placement: dict):
        return None

    def release(self, placement: dict) -> None:
        if placement.get("unit"):
            subprocess.run([self.systemctl, "stop", placement["unit"]], capture_output=True, timeout=30,
                           check=False)  # a scope that is not there is fine


def _v1_writes(limits: Limits) -> list[tuple[str, str]]:
    mem = str(limits.memory_bytes) if limits.memory_bytes else "-1"
    quota = str(int(limits.cpus * CPU_PERIOD_US)) if limits.cpus else "-1"
    return [("memory.limit_in_bytes", mem), ("memory.memsw.limit_in_bytes", mem),
            ("cpu.cfs_period_us", str(CPU_PERIOD_US)), ("cpu.cfs_quota_us", quota),
            ("pids.max", str(limits.processes) if limits.processes else "max")]


def _v2_writes(limits: Limits) -> list[tuple[str, str]]:
    quota = str(int(limits.cpus * CPU_PERIOD_US)) if limits.cpus else "max"
    return [("memory.max", str(limits.memory_bytes) if limits.memory_bytes else "max"),
            ("memory.swap.max", "0" if limits.memory_bytes else "max"),
            ("cpu.max", f"{quota} {CPU_PERIOD_US}"),
            ("pids.max", str(limits.processes) if limits.processes else "max")]


def _systemd_properties(limits: Limits) -> list[str]:
    props = []
    if limits.memory_bytes:
        props += [f"MemoryMax={limits.memory_bytes}", "MemorySwapMax=0"]
    if limits.cpus:
        props.append(f"CPUQuota={round(limits.cpus * 100)}%")
    if limits.processes:
        props.append(f"TasksMax={limits.processes}")
    return props


def _write_limit(folder: Path, filename: str, value: str) -> None:
    """Write one limit. v1 keeps memory.memsw >= memory: lowering one may first need the other."""
    try:
        (folder / filename).write_text(value)
    except OSError:
        if not filename.startswith("memory."):
            raise
        other = "memory.memsw.limit_in_bytes" if filename == "memory.limit_in_bytes" else "memory.limit_in_bytes"
        if not (folder / other).exists():
            raise
        (folder / other).write_text(value)
        (folder / filename).write_text(value)


def _pids(folder: Path) -> list[int]:
    try:
        return [int(x) for x in (folder / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def hub_priority() -> None:
    """Raise the calling process to :data:`HUB_NICE` when root (the hub, and its proxy after it),
    and its session's autogroup to :data:`LOOP_NICE`.

    Where the kernel groups processes by session (``/proc/sys/kernel/sched_autogroup_enabled``,
    the default of most distributions) and the hub is not in a cpu cgroup of its own, nice values
    count only inside a session: the whole hub (event loop, password hashing, proxy) weighed as
    one process at nice 0 against the users' servers weighed as eight (USERS_CPU_WEIGHT). Ten
    users starting at once then left the hub a ninth of the machine: each login's bcrypt took
    2-3 s instead of 0.25 s and /hub/health stalled past a second. The session's own nice value
    (``/proc/self/autogroup``) is what weighs it there.
    """
    if os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, 0, HUB_NICE)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(LOOP_NICE))
        except OSError:
            pass  # no autogroups here: the nice values above already count


def event_loop_priority() -> None:
    """Raise the calling thread (the hub's event loop) to :data:`LOOP_NICE` when root; what it
    starts later inherits that (the proxy), the rest set their own (servers and services:
    :func:`user_priority`; hashing threads: :func:`hub_thread_priority`)."""
    if os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOOP_NICE)


def hub_thread_priority() -> None:
    """Put the calling thread of the hub back to :data:`HUB_NICE` (when root)."""
    if os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HUB_NICE)


def user_priority() -> None:
    """Put the calling process back to nice 0 (a user's server or a service the hub starts)."""
    if os.getpriority(os.PRIO_PROCESS, 0) < 0:
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def join(dirs: list[str]) -> None:
    """Move the calling process into each cgroup folder (as root; safe in a forked child)."""
    pid = str(os.getpid()).encode()
    for d in dirs:
        fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def service_command(s: dict, name: str, limits: Limits, account: str | None,
                    command: list[str]) -> list[str]:
    """A hub service's command run inside its own limits as ``account``, dying with the hub
    (speckle_hub.confine). Not root: no limits, no change of account, the same wrapper."""
    cmd = [sys.executable, "-m", "speckle_hub.confine", "--name", name, "--state", s["_state_dir"],
           "--method", s["limits"]["method"], "--limits", json.dumps(dataclasses.asdict(limits))]
    if account and os.geteuid() == 0:
        cmd += ["--user", account]
    return cmd + ["--", *command]


# --------------------------------------------------------------------------------------------
# which way
# --------------------------------------------------------------------------------------------

def _controllers(v2: Path) -> list[str]:
    try:
        return (v2 / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def _systemd_is_init() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


def confiner(method: str, state_dir: str):
    """The way limits are applied on this machine (see the module documentation).

    Parameters
    ----------
    method : {"auto", "systemd", "cgroup", "off"}
        ``limits.method`` of the settings.
    state_dir : str
        The hub's state folder (names this hub's cgroup).

    Raises
    ------
    LimitsError
        When the method asked for is not available here.
    """
    if os.geteuid() != 0:
        return Off("the hub does not run as root (single-account mode)")
    if method == "off":
        return Off("limits.method is off in the settings")
    if method in ("auto", "systemd") and _systemd_is_init():
        return Systemd()
    if method == "systemd":
        raise LimitsError("limits.method systemd: systemd is not this machine's init (PID 1); "
                          "use auto or cgroup")
    v1, v2 = mount_table()
    own = own_cgroups()
    base = base_name(state_dir)
    if v2 is not None and "memory" in _controllers(v2):
        return CgroupFs(2, {"unified": v2}, {"unified": own.get("unified", "/")}, base)
    if "memory" in v1:
        return CgroupFs(1, v1, own, base)
    if method == "cgroup":
        raise LimitsError("limits.method cgroup: no cgroup memory controller is mounted "
                          "under /sys/fs/cgroup")
    return Off("this machine offers neither systemd nor a writable cgroup memory controller")
