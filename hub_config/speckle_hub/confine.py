"""Run a hub service inside its own limits, as its own account: what its command is wrapped in.

JupyterHub starts its managed services itself, with no hook before they run, so a service's
command becomes ``python -m speckle_hub.confine --name NAME --state STATE --method METHOD
--limits JSON [--user ACCOUNT] -- COMMAND...`` (:func:`speckle_hub.limits.service_command`).
As root, this process kills what a previous run of the service left in its cgroup (or scope),
sets the limits up afresh, joins them, drops to ``ACCOUNT`` and becomes ``COMMAND``: everything
the service starts (the monitor's Dask workers) stays inside. Either way the service dies with
the hub (speckle_hub.lifetime): a hub killed with SIGKILL leaves no monitor behind to compete
with the next hub's. The user servers join theirs in the
spawner instead (``SpeckleSpawner.make_preexec_fn``).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys

from .lifetime import die_with_parent
from .limits import Limits, confiner, user_priority


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="speckle_hub.confine", description=__doc__)
    p.add_argument("--name", required=True, help="the service's cgroup (or scope) name")
    p.add_argument("--state", required=True, help="the hub's state folder")
    p.add_argument("--method", default="auto")
    p.add_argument("--limits", required=True, help="JSON of speckle_hub.limits.Limits")
    p.add_argument("--user", help="the unix account to run the command as")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("give the command after --")
    user_priority()  # the hub runs at a higher priority than what it starts
    way = confiner(a.method, a.state)
    way.release(way.placement(a.name, Limits()))
    placement = way.setup(a.name, Limits(**json.loads(a.limits)))
    prefix = way.prefix(placement, a.user)
    if prefix:  # systemd-run: it makes the scope and drops to the account itself
        die_with_parent()
        os.execvp(prefix[0], prefix + command)
    join = way.preexec(placement)
    if join is not None:
        join()
    if a.user:
        entry = pwd.getpwnam(a.user)
        os.setgid(entry.pw_gid)
        os.initgroups(a.user, entry.pw_gid)
        os.setuid(entry.pw_uid)
        os.environ.update(USER=a.user, LOGNAME=a.user)
    die_with_parent()  # after the change of user, which clears it
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
