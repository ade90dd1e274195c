"""``make hub``: check the settings, prepare the state folder, say where to log in, run the hub.

The hub then runs in the foreground under this process, which starts it again when it dies
(SIGKILL, a crash): the restarted hub keeps the running proxy and the user servers, so open pages
stay connected (:func:`supervise`). Ctrl-C stops the hub, its proxy and the user servers.
Environment: ``SPECKLE_HUB_SETTINGS`` (another settings file), ``SPECKLE_HUB_STATE`` (another
state folder).
"""

from __future__ import annotations

import argparse
import collections
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from . import limits as limits_mod
from .lifetime import die_with_parent
from . import settings as settings_mod
from .auth import new_password, read_password_file, write_password_file

CONFIG_FILE = settings_mod.HUB_CONFIG / "jupyterhub_config.py"


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def prepare_state(state: Path) -> None:
    """The state folder (mode 700) with the cookie secret and the proxy token (mode 600)."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state, 0o700)
    cookie = state / "jupyterhub_cookie_secret"
    if not cookie.exists():
        _write_secret(cookie, secrets.token_hex(32))
    token = state / "proxy-auth-token"
    if not token.exists():
        _write_secret(token, secrets.token_hex(32))
    db = state / "jupyterhub.sqlite"
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # SQLite fills it
    for path in (cookie, token, db, state / "first-admin-password"):
        if path.exists():
            os.chmod(path, 0o600)


def first_admin_passwords(s: dict) -> dict[str, str]:
    """On a fresh state folder, choose the first admins' one-time passwords (the hub creates the
    accounts with them); return the passwords chosen now, to be shown this once. Later starts
    return none: the passwords stay in ``<state>/first-admin-password`` (mode 600) until changed,
    never repeated into whatever log ``make hub`` writes to."""
    if s["auth"]["type"] != "native":
        return {}
    state = Path(s["_state_dir"])
    path = state / "first-admin-password"
    known = read_password_file(path)
    db = state / "jupyterhub.sqlite"
    new = {}
    if not db.exists() or db.stat().st_size == 0:
        new = {name.lower(): new_password() for name in s["auth"]["admin_users"]
               if name.lower() not in known}
        if new:
            write_password_file(path, {**known, **new})
    return new


def _world_can_reach(path: Path) -> str | None:
    """None when every user can traverse to ``path`` (and run it); else the folder that blocks."""
    path = Path(os.path.abspath(path))
    for target in {path, path.resolve()}:
        for p in [*reversed(target.parents), target]:
            mode = p.stat().st_mode
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                return str(p)
        if not target.stat().st_mode & (stat.S_IXOTH | stat.S_IROTH):
            return str(target)
    return None


def preflight(s: dict) -> list[str]:
    """Problems that would stop the hub or its users' servers, as sentences."""
    problems = []
    if not settings_mod.PROXY_BIN.exists():
        problems.append(
            f"The proxy is not installed ({settings_mod.PROXY_BIN}): run `make hub` (or "
            "`npm ci --prefix hub_config/proxy`)."
        )
    if shutil.which("node") is None:
        problems.append("node is not installed (apt-get install -y nodejs npm).")
    if os.geteuid() == 0:
        for target in (Path(sys.executable), settings_mod.SINGLEUSER, settings_mod.JUPYTER_DATA,
                       settings_mod.NOTEBOOKS):
            blocked = target.exists() and _world_can_reach(target)
            if blocked:
                problems.append(
                    f"Users' servers run as their own accounts and cannot reach {target}: {blocked} "
                    "is closed to other users (e.g. a checkout under /root). Put the project in a "
                    "folder every user can read (e.g. /opt/speckle) or `chmod o+x` the folders on the way."
                )
        if shutil.which("useradd") is None:
            problems.append("useradd is missing (apt-get install -y passwd).")
        from . import beamtime

        problems += beamtime.problems(s)
    try:
        limits_mod.confiner(s["limits"]["method"], s["_state_dir"])
    except limits_mod.LimitsError as exc:
        problems.append(str(exc) + ".")
    return problems


def banner(s: dict, passwords: dict[str, str]) -> str:
    url = settings_mod.public_url(s)
    state = s["_state_dir"]
    lines = ["", "=" * 78, f"  speckle hub: log in at  {url}", "=" * 78]
    if os.geteuid() == 0:
        lines.append("  Mode: isolated. Each hub user's server runs as their own unix account"
                     f" ({s['users']['unix_prefix']}NAME), created at its first start.")
    else:
        me = pwd.getpwuid(os.geteuid()).pw_name
        lines.append(f"  Mode: SINGLE-ACCOUNT (not root). Every hub user's server runs as the unix account "
                     f"'{me}';\n        their files are NOT separated from each other. Run as root for a beamline.")
    way = limits_mod.confiner(s["limits"]["method"], state)
    lines.append(f"  {way.describe()}.")
    if way.kind != "off":
        lines.append(f"    Each server: {limits_mod.resolve(s['limits']).text()} (settings limits:).")
    kind = s["auth"]["type"]
    if kind == "native":
        if passwords:
            lines.append("  First admin (one-time password, shown this once; change it at /hub/change-password):")
            for name, pw in passwords.items():
                lines.append(f"      user: {name}    password: {pw}")
            lines.append(f"    (kept in {state}/first-admin-password, readable only by you, until changed)")
        elif (Path(state) / "first-admin-password").exists():
            lines.append(f"  Admins: {', '.join(s['auth']['admin_users'])}. A one-time password not changed yet "
                         f"is in {state}/first-admin-password (readable only by you).")
        else:
            lines.append(f"  Admins: {', '.join(s['auth']['admin_users'])} (their passwords were set already).")
        lines.append(f"  New users sign up at {url}hub/signup; an admin approves them at {url}hub/authorize.")
    else:
        lines.append(f"  Accounts: {kind}. Admins: {', '.join(s['auth']['admin_users']) or 'none'}.")
    lines.append(f"  Settings: {s['_source']}    State: {state}")
    lines.append(f"  Health: {url}hub/health    Stop: Ctrl-C")
    note = settings_mod.firewall_note(s)
    if note:
        lines.append("  " + note.replace("\n", "\n  "))
    if s["hub"]["bind_address"] not in ("127.0.0.1", "::1", "localhost") and not s["hub"]["tls"]["cert"]:
        lines.append("  WARNING: reachable from other machines without TLS: set hub.tls.cert and hub.tls.key.")
    lines.append("=" * 78)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--settings", help="settings file (default $SPECKLE_HUB_SETTINGS or hub_config/settings.yaml)")
    p.add_argument("--state", help="state folder (default $SPECKLE_HUB_STATE, settings, or hub_config/state)")
    p.add_argument("--check", action="store_true", help="check settings and setup, print the banner, do not start")
    a = p.parse_args(argv)
    if a.state:
        os.environ["SPECKLE_HUB_STATE"] = a.state
    try:
        s = settings_mod.load(a.settings)
    except settings_mod.SettingsError as exc:
        print(f"speckle hub: the settings are wrong:\n{exc}", file=sys.stderr)
        return 2
    problems = preflight(s)
    if problems:
        print("speckle hub cannot start:\n- " + "\n- ".join(problems), file=sys.stderr)
        return 2
    state = Path(s["_state_dir"])
    prepare_state(state)
    if s["monitor"]["enabled"]:
        from . import beamtime

        beamtime.prepare(s)
    passwords = first_admin_passwords(s)
    print(banner(s, passwords), flush=True)
    if a.check:
        return 0
    os.environ["SPECKLE_HUB_SETTINGS"] = s["_source"]
    os.environ["SPECKLE_HUB_STATE"] = str(state)
    if os.environ.get("SPECKLE_HUB_EXTRA_CONFIG"):
        os.environ["SPECKLE_HUB_EXTRA_CONFIG"] = os.path.abspath(os.environ["SPECKLE_HUB_EXTRA_CONFIG"])
    os.chdir(state)
    exe = str(Path(sys.executable).with_name("jupyterhub"))
    return supervise([exe, "-f", str(CONFIG_FILE)])


#: A hub that fails this soon after its start has a problem a restart does not fix.
FAILS_AT_START_S = 15
#: More restarts than this within RESTART_WINDOW_S: give up (something keeps killing it).
MAX_RESTARTS = 5
RESTART_WINDOW_S = 120


def _hub_child() -> None:
    """In the hub's process before it runs: die with this supervisor, answer before the users."""
    die_with_parent()
    limits_mod.hub_priority()


def supervise(cmd: list[str]) -> int:
    """Run the hub and start it again when it dies; return its exit status once it stops.

    Ctrl-C and SIGTERM go to the hub once (it then stops its proxy and the users' servers) and
    end the supervision. The hub runs in its own session, so that a terminal's Ctrl-C
    reaches it only through here, dies with this process (speckle_hub.lifetime), and runs (with
    its proxy) at a higher priority than the users' servers (``limits.HUB_NICE``).
    """
    stopping = False
    hub: subprocess.Popen | None = None

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        if hub is not None and hub.poll() is None:
            hub.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    restarts: collections.deque[float] = collections.deque()
    while True:
        started = time.monotonic()
        # a session of its own: a terminal's Ctrl-C reaches it only through here, and its
        # scheduling weight (limits.hub_priority) is the hub's alone, not the terminal's
        hub = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_hub_child)
        status = hub.wait()
        if stopping or status == 0:
            return status
        how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        if status > 0 and time.monotonic() - started < FAILS_AT_START_S:
            print(f"speckle hub: the hub stopped at its start ({how}); see the messages above",
                  file=sys.stderr, flush=True)
            return status
        now = time.monotonic()
        restarts.append(now)
        while restarts and restarts[0] < now - RESTART_WINDOW_S:
            restarts.popleft()
        if len(restarts) > MAX_RESTARTS:
            print(f"speckle hub: the hub died {len(restarts)} times in {RESTART_WINDOW_S} s "
                  f"({how}); not starting it again", file=sys.stderr, flush=True)
            return status if status > 0 else 1
        print(f"speckle hub: the hub died ({how}); starting it again. The user servers and the "
              "proxy run on.", file=sys.stderr, flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
