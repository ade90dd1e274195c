"""Why a dashboard's kernel ended: the server's memory limit, a kill, or an exit.

The user server's kernel manager (``hub_config/user_server/speckle_preheat.py``) watches every
dashboard kernel with :class:`KernelEnds`; when one dies, the reason is kept, and the dashboard's
page (the speckle Voila template), finding its kernel gone, asks
``GET speckle/api/kernels/<id>/end`` and shows the sentence. Killed for memory means: the kernel
died of SIGKILL and the kernel's OOM killer killed a process in this server's memory cgroup
meanwhile (the hub's per-user limit, ``hub_config/speckle_hub/limits.py``).
"""

from __future__ import annotations

import collections
import signal

from .cgroups import memory_limit, oom_kills, own_memory_cgroup

__all__ = ["KernelEnds", "explain"]

_KEEP = 200


def explain(returncode: int | None, oom_killed: bool, limit_bytes: int | None) -> dict:
    """The reason a kernel ended, as shown on its page.

    Parameters
    ----------
    returncode : int or None
        The kernel process's exit status (negative: the signal that killed it).
    oom_killed : bool
        Whether the OOM killer killed a process in this server's cgroup while the kernel ran.
    limit_bytes : int or None
        The server's memory limit.

    Returns
    -------
    dict
        ``reason`` ("memory", "killed", "exited"), ``message`` (one paragraph for the page) and
        ``limit_bytes``.
    """
    if oom_killed and returncode in (None, -signal.SIGKILL, 128 + signal.SIGKILL):
        limit = f"of {limit_bytes / 1e9:.1f} GB (swap included) " if limit_bytes else ""
        message = (f"This server reached its memory limit {limit}and the system stopped this page's "
                   "analysis engine (the kernel): what it held in memory is lost. Try a smaller "
                   "region or fewer frames, close your other dashboards and notebooks (each holds "
                   "memory), or ask an administrator for a higher limit.")
        return {"reason": "memory", "message": message, "limit_bytes": limit_bytes}
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return {"reason": "killed", "limit_bytes": limit_bytes,
                "message": f"Its analysis engine (the kernel) was killed ({name}): what it held in "
                           "memory is lost."}
    status = "" if returncode is None else f" (exit status {returncode})"
    return {"reason": "exited", "limit_bytes": limit_bytes,
            "message": f"Its analysis engine (the kernel) ended{status}: what it held in memory is lost."}


class KernelEnds:
    """The reasons dashboard kernels of this server ended, by kernel id (the latest few hundred)."""

    def __init__(self, cgroup=None):
        self.cgroup = own_memory_cgroup() if cgroup is None else cgroup
        self.ended: collections.OrderedDict[str, dict] = collections.OrderedDict()

    def watch(self, kernel_id: str, km) -> None:
        """Record why the kernel of ``km`` (a jupyter_client KernelManager) ends, when it dies."""
        before = oom_kills(self.cgroup)

        def dead():
            process = getattr(getattr(km, "provisioner", None), "process", None)
            code = getattr(process, "returncode", None)
            self.ended[kernel_id] = explain(code, oom_kills(self.cgroup) > before,
                                            memory_limit(self.cgroup))
            while len(self.ended) > _KEEP:
                self.ended.popitem(last=False)

        km.add_restart_callback(dead, "dead")

    def get(self, kernel_id: str) -> dict | None:
        """Why that kernel ended, or None when it did not die (culled, shut down) or is unknown."""
        return self.ended.get(kernel_id)
