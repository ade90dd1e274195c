"""User servers forked from a warm template instead of started cold (settings ``hub.warm_start``).

A user server spends about a CPU-second importing jupyter-server, JupyterHub's single-user
code, Voila, JupyterLab's server side and the speckle extension before it does anything for its
user; with ten users logging in at once on a two-core machine that alone is five seconds of the
wait. The template is one process that has imported all of it once: each new server is a fork of
it, which joins its cgroup, drops to the user, takes the spawner's environment, arguments and
home, and runs ``jupyterhub-singleuser``'s ``main`` (``hub_config/user_server/singleuser.py``,
the same entry point as a cold start). The template runs no other code: a request names only the
server's arguments, environment, account, home and cgroups, never a command.

The template is the hub's child (it dies with the hub); the servers it forks do not (they
survive a hub restart, as cold-started ones do). It listens on a unix socket in the hub's state
folder (mode 700) and accepts requests only from its own account (``SO_PEERCRED``). It reaps the
servers that end, so that the spawner's ``os.kill(pid, 0)`` sees them gone.

Forked servers share the template's hash seed (Python's ``str`` hashing); every secret they make
comes from ``os.urandom``, and :mod:`random` is re-seeded in each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import hashlib
import importlib
import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["PRELOAD", "WarmStarter", "main"]

#: What a user server imports before serving: the template imports it once for all of them.
#: (Not the kernels' modules, nor anything that could start a GPU context: a fork must not
#: inherit one.)
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyterhub.singleuser.extension",
    "jupyter_server.serverapp",
    "jupyter_server.services.kernels.kernelmanager",
    "jupyter_server.services.contents.largefilemanager",
    "jupyter_server_terminals",
    "jupyterlab",
    "jupyterlab.labapp",
    "jupyter_lsp",
    "notebook_shim",
    "voila.server_extension",
    "voila.voila_kernel_manager",
    "voila.handler",
    "speckle_jupyter",
    "speckle_jupyter.handlers",
    "speckle_jupyter.uploads",
    "speckle_preheat",
)
#: What a dashboard's kernel imports before it runs the dashboard: imported once here, each
#: server's kernel template (``hub_config/user_server/warm_kernels.py``) forks kernels with it.
KERNEL_PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipywidgets",
    "ipympl.backend_nbagg",
    "speckle.ui",
    "speckle.io.read_hdf5",  # the readers open_dataset imports on a file's first open
    "speckle.io.read_tiff",
    "speckle.xpcs.engine",
)
#: Modules that must not be in the template (a forked CUDA context is unusable).
NEVER = ("cupy", "torch", "numba.cuda")
_MAX_REQUEST = 4 * 2**20
#: After a template failed to start, servers start cold this long before it is tried again (s).
RETRY_AFTER_S = 600.0
#: The only variables of the hub's environment the template gets (and LC_*).
_TEMPLATE_ENV = ("PATH", "LANG", "TZ")


class WarmStartError(RuntimeError):
    """The template cannot start a server (the spawner then starts it cold)."""


# ---------------------------------------------------------------------------------------- hub side
class WarmStarter:
    """The hub's handle on the template: starts it when first needed, asks it for servers.

    Parameters
    ----------
    state_dir : path-like
        The hub's state folder (mode 700): the socket is ``warmstart.sock`` there.
    user_server_dir : path-like
        ``hub_config/user_server`` (``speckle_preheat`` and ``singleuser.py``).
    start_timeout : float
        How long the template may take to import everything and listen (s).
    """

    def __init__(self, state_dir, user_server_dir, start_timeout: float = 60.0):
        self.socket_path = _socket_path(Path(state_dir))
        self.user_server_dir = Path(user_server_dir)
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._started = 0.0
        self._failed_until = 0.0  # a template that failed to start is not tried again before

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def launch(self) -> None:
        """Start the template unless it runs (returns at once; call it from the hub's main thread:
        the template dies with the thread that started it)."""
        if self.running():
            return
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        cmd = [sys.executable, "-m", "speckle_hub.warmstart", "--socket", str(self.socket_path),
               "--user-server-dir", str(self.user_server_dir)]
        # what a user could read back from /proc/<pid>/environ of a forked server: nothing of the hub's
        env = {k: v for k, v in os.environ.items() if k in _TEMPLATE_ENV or k.startswith("LC_")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        self._proc = subprocess.Popen(cmd, env=env, cwd="/", stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self._started = time.monotonic()

    async def ready(self) -> None:
        """Launch the template if needed and wait until it listens."""
        if not self.running() and time.monotonic() < self._failed_until:
            raise WarmStartError("the warm-start template failed to start a moment ago (see above in the log)")
        self.launch()
        proc = self._proc
        while not self.socket_path.exists():
            failure = None
            if proc.poll() is not None:
                self._proc = None
                failure = f"the warm-start template exited with {proc.returncode}"
            elif time.monotonic() > self._started + self.start_timeout:
                self.stop()
                failure = f"the warm-start template did not listen within {self.start_timeout:.0f} s"
            if failure:
                self._failed_until = time.monotonic() + RETRY_AFTER_S  # servers start cold meanwhile
                raise WarmStartError(failure)
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        """Stop the template (the servers it started go on)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    async def spawn(self, args: list[str], env: dict[str, str], cwd: str, account: str | None,
                    cgroups: list[str]) -> int:
        """Fork a user server; return its pid.

        Parameters
        ----------
        args : list of str
            The server's arguments (after ``singleuser.py``).
        env : dict
            Its whole environment.
        cwd : str
            Its working folder (the user's home).
        account : str or None
            The unix account to become (None: stay the hub's account, single-account mode).
        cgroups : list of str
            The cgroup folders to join first (as root).
        """
        await self.ready()
        request = json.dumps({"args": list(args), "env": dict(env), "cwd": cwd, "account": account,
                              "cgroups": list(cgroups)}).encode()
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        try:
            writer.write(request + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
        finally:
            writer.close()
        try:
            answer = json.loads(line or b"{}")
        except ValueError:
            answer = {}
        if not isinstance(answer.get("pid"), int):
            raise WarmStartError(answer.get("error") or "the warm-start template gave no answer")
        return answer["pid"]


def _socket_path(state_dir: Path) -> Path:
    """``warmstart.sock`` in the state folder, or, where that path is too long for a unix socket
    (108 bytes), in a private folder of the temporary folder named after it."""
    path = state_dir.resolve() / "warmstart.sock"
    if len(os.fsencode(path)) < 100:
        return path
    digest = hashlib.sha1(os.fsencode(state_dir.resolve())).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"speckle-warm-{os.getuid()}-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise WarmStartError(f"{folder} is not a private folder of this account")
    return folder / "warmstart.sock"


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


# ----------------------------------------------------------------------------------- the template
def _preload(log) -> None:
    # matplotlib reads its backend from the environment when imported: the one kernels set
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    for name in PRELOAD + KERNEL_PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - an optional extension missing costs only time
            log(f"not preloaded: {name}: {exc}")
    if "speckle.xpcs.engine" in sys.modules:
        with contextlib.suppress(Exception):  # the compiled XPCS kernels, loaded from their cache
            sys.modules["speckle.xpcs.engine"].load_all()
    for name in NEVER:
        if name in sys.modules:
            raise WarmStartError(f"{name} was imported by the preloaded modules: a fork cannot use it")
    # what is imported stays: the collector of every fork leaves it alone instead of walking (and
    # so copying) the shared pages
    gc.freeze()
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:  # a fork keeps only the forking thread: whatever these hold would be lost
        raise WarmStartError(f"threads started while preloading: {', '.join(others)}")


def _become_subreaper() -> None:
    """Adopt what the servers leave behind: a server's kernel template (and its kernels) outlive
    it by a moment, orphaned; reparented here instead of to PID 1, they are reaped at once by
    :func:`_reap`, not left as zombies of the user's account until PID 1 gets to them."""
    import ctypes  # noqa: PLC0415

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER (Linux 3.4+; harmless where refused)


def _reap(*_ignored) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _read_request(conn: socket.socket) -> dict:
    data = b""
    conn.settimeout(10)
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_REQUEST:
            raise ValueError("request too large")
    req = json.loads(data)
    if not (isinstance(req, dict) and isinstance(req.get("args"), list)
            and all(isinstance(a, str) for a in req["args"])
            and isinstance(req.get("env"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in req["env"].items())
            and isinstance(req.get("cwd"), str)
            and (req.get("account") is None or isinstance(req["account"], str))
            and isinstance(req.get("cgroups"), list) and all(isinstance(c, str) for c in req["cgroups"])):
        raise ValueError("malformed request")
    return req


def _become_server(req: dict, singleuser: Path, base_path: list[str], warm_kernels) -> int:
    """In the forked child: confine, drop privileges, take the request's world, fork this
    server's kernel template, run the server."""
    from jupyterhub.spawner import set_user_setuid  # noqa: PLC0415 - preloaded already

    from speckle_hub.limits import join, user_priority  # noqa: PLC0415

    os.setsid()
    if req["cgroups"]:
        join(req["cgroups"])
    user_priority()
    if req["account"] is not None:
        set_user_setuid(req["account"], chdir=False)()
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [str(singleuser.parent), *extra, *(p for p in base_path if p not in extra)]
    _fork_kernel_template(base_path, warm_kernels)
    argv = [str(singleuser), *req["args"]]
    sys.argv = argv
    if "setproctitle" in sys.modules:  # ps shows the server's own command line
        sys.modules["setproctitle"].setproctitle(" ".join([sys.executable, *argv]))
    random.seed()
    from jupyterhub.singleuser import main as server_main  # noqa: PLC0415

    return server_main() or 0


def _fork_kernel_template(base_path: list[str], warm_kernels) -> None:
    """Fork this server's kernel template (before the server starts any thread); the server
    finds its end of the socket pair in ``SPECKLE_KERNEL_TEMPLATE_FD``."""
    if not all(name in sys.modules for name in ("ipykernel.kernelapp", "speckle.ui")):
        return  # nothing preloaded for kernels: they start cold
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # if it fails, the server starts its kernels cold
        def become():
            ours.close()
            from speckle_hub.lifetime import die_with_parent  # noqa: PLC0415

            die_with_parent()
            if "setproctitle" in sys.modules:
                sys.modules["setproctitle"].setproctitle(f"speckle kernel template (server {os.getppid()})")
            warm_kernels.serve(theirs, base_path)

        warm_kernels.run_child(become)
    theirs.close()
    os.environ[warm_kernels.ENV_FD] = str(ours.detach())


def _serve(listener: socket.socket, singleuser: Path, base_path: list[str], warm_kernels, log) -> None:
    me = os.getuid()
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                if _peer_uid(conn) != me:
                    raise PermissionError("request from another account")
                req = _read_request(conn)
            except (OSError, ValueError) as exc:
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"error": f"refused: {exc}"}).encode() + b"\n")
                continue
            pid = os.fork()
            if pid == 0:  # the new server
                def become(req=req, conn=conn):
                    listener.close()
                    conn.close()
                    devnull = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(devnull, 0)
                    os.close(devnull)
                    return _become_server(req, singleuser, base_path, warm_kernels)

                warm_kernels.run_child(become)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            log(f"forked server {pid} for {req['account'] or 'the hub account'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="speckle_hub.warmstart", description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True, help="the unix socket to listen on")
    p.add_argument("--user-server-dir", required=True, help="hub_config/user_server")
    a = p.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[speckle warm start] {msg}", file=sys.stderr, flush=True)

    from speckle_hub.lifetime import die_with_parent  # noqa: PLC0415

    die_with_parent()
    _become_subreaper()
    from speckle_hub.limits import user_priority  # noqa: PLC0415

    user_priority()  # importing and forking for users is users' work, not the hub's
    user_server = Path(a.user_server_dir).resolve()
    singleuser = user_server / "singleuser.py"
    if not singleuser.is_file():
        log(f"no {singleuser}")
        return 2
    # never import from the working folder (a cold server's sys.path[0] is its script's folder)
    ours = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    base_path = [p for p in sys.path if p not in ("", os.getcwd(), *ours)]  # a fresh interpreter's
    sys.path[:] = [str(user_server), *ours, *base_path]
    sys.modules.setdefault("rfc3987_syntax", None)  # as singleuser.py does (see there)
    t0 = time.process_time()
    try:
        _preload(log)
    except WarmStartError as exc:
        log(str(exc))
        return 3
    with contextlib.suppress(ImportError):
        import setproctitle  # noqa: PLC0415 - set up here: it needs the environment untouched

        setproctitle.setproctitle(setproctitle.getproctitle())
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    path = Path(a.socket)
    old = os.umask(0o077)
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = path.with_name(path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        listener.bind(str(tmp))
        listener.listen(64)
        os.replace(tmp, path)  # the hub sees the socket only once it accepts
    except OSError as exc:
        log(f"cannot listen on {path}: {exc}")
        return 4
    finally:
        os.umask(old)
    import warm_kernels  # noqa: PLC0415 - hub_config/user_server, on sys.path from here on

    log(f"ready: {len(sys.modules)} modules imported in {time.process_time() - t0:.1f} CPU-s")
    try:
        _serve(listener, singleuser, base_path, warm_kernels, log)
    except OSError as exc:
        if exc.errno != errno.EINTR:
            raise
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
