"""Processes that must not outlive the one that started them.

The hub's companions (the idle culler, the beamtime monitor) are started by the hub in sessions
of their own, so a hub killed with SIGKILL used to leave them running beside the next hub: two
cullers polling, two monitors writing one results folder. Such a process calls
:func:`die_with_parent` and gets SIGTERM when its parent dies, whatever killed it. The users'
servers never call it: they survive a hub restart on purpose.
"""

from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux).

    Call it after any change of user or group (the kernel forgets it then) and before exec (it
    survives exec). If the parent is already gone, the signal is sent at once.
    """
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
