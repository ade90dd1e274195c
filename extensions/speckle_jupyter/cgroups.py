"""This process's cgroups: where they are mounted, which are its own, its memory limit, OOM kills.

Read by the user server (why a kernel ended) and by the hub (where to make the servers'
cgroups, ``hub_config/speckle_hub/limits.py``). cgroup v1 keeps each controller in a mount of its
own; v2 keeps them all in one (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` beside v1).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["memory_limit", "mount_table", "oom_kills", "own_cgroups", "own_memory_cgroup"]

V1_CONTROLLERS = ("memory", "cpu", "pids")
#: Above this a limit is "none" (v1 writes a page-rounded 2**63 - 1 for "unlimited").
_UNLIMITED = 2**60


def mount_table(text: str | None = None) -> tuple[dict[str, Path], Path | None]:
    """The v1 controllers' mount points and the cgroup2 mount point.

    Parameters
    ----------
    text : str, optional
        The content of ``/proc/self/mountinfo`` (read when not given).

    Returns
    -------
    (dict, Path or None)
        controller (memory, cpu, pids) -> mount point, and where cgroup2 is mounted.
    """
    if text is None:
        text = _read(Path("/proc/self/mountinfo"))
    v1, v2 = {}, None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        if rest[0] == "cgroup2":
            v2 = Path(fields[4])
        elif rest[0] == "cgroup":
            for opt in rest[2].split(","):
                if opt in V1_CONTROLLERS:
                    v1[opt] = Path(fields[4])
    return v1, v2


def own_cgroups(text: str | None = None) -> dict[str, str]:
    """controller (v1) or ``"unified"`` (v2) -> this process's cgroup path in that hierarchy.

    Parameters
    ----------
    text : str, optional
        The content of ``/proc/self/cgroup`` (read when not given).
    """
    if text is None:
        text = _read(Path("/proc/self/cgroup"))
    own = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            own["unified"] = parts[2]
        for ctrl in parts[1].split(","):
            if ctrl in V1_CONTROLLERS:
                own[ctrl] = parts[2]
    return own


def own_memory_cgroup() -> tuple[int, Path] | None:
    """(cgroup version, folder) of this process's memory cgroup, or None where there is none."""
    v1, v2 = mount_table()
    own = own_cgroups()
    if "memory" in v1 and "memory" in own:
        return 1, v1["memory"] / own["memory"].lstrip("/")
    if v2 is not None and "unified" in own:
        folder = v2 / own["unified"].lstrip("/")
        if (folder / "memory.max").exists():
            return 2, folder
    return None


def memory_limit(cgroup: tuple[int, Path] | None) -> int | None:
    """The memory limit in bytes of a cgroup from :func:`own_memory_cgroup` (None: none).

    With v1 the smaller of memory and memory+swap counts (the hub sets both alike).
    """
    if cgroup is None:
        return None
    version, folder = cgroup
    names = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes") if version == 1 else ("memory.max",)
    values = [int(t) for t in (_read(folder / n).strip() for n in names) if t.isdigit()]
    value = min(values) if values else None
    return value if value is not None and value < _UNLIMITED else None


def oom_kills(cgroup: tuple[int, Path] | None) -> int:
    """How many processes the kernel killed so far in this cgroup for lack of memory."""
    if cgroup is None:
        return 0
    version, folder = cgroup
    text = _read(folder / ("memory.oom_control" if version == 1 else "memory.events"))
    found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
