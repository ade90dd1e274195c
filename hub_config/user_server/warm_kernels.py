"""Dashboard kernels forked from a warm template instead of started cold.

A dashboard's kernel spends about a CPU-second starting Python and importing ipykernel, numpy,
matplotlib, ipywidgets, ``speckle.ui`` and the compiled XPCS kernels before it runs the
dashboard. A user server forked from the hub's warm template (``speckle_hub.warmstart``) has all
of that imported already: before it becomes the server it forks once more, and that child, the
**kernel template**, already runs as the user inside the user's cgroup. It serves this server
only, over a socket pair inherited by the server (``SPECKLE_KERNEL_TEMPLATE_FD``), and forks a
kernel per request: the kernel takes the request's environment, working folder and command line
and runs ``ipykernel`` as ``python -m ipykernel_launcher`` would.

Only dashboards' kernels (the ones Voila starts: their environment has ``VOILA_BASE_URL``) of the
default ``python3`` kernel are forked; JupyterLab's kernels and every other kernel start as
usual, as does any kernel when the template is missing or fails. The server's side is
:class:`WarmKernelManager` (jupyter-server's kernel manager with :class:`WarmProvisioner`); the
template's side is :func:`serve`, run by ``speckle_hub.warmstart`` (no Jupyter server code here
runs in the template).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time

__all__ = ["ENV_FD", "KernelTemplate", "run_child", "serve"]

#: The server's end of the socket pair to its kernel template (a file descriptor number).
ENV_FD = "SPECKLE_KERNEL_TEMPLATE_FD"
_KERNEL_MODULE = "ipykernel_launcher"


# ------------------------------------------------------------------------------------ the template
def serve(sock: socket.socket, base_path: list[str]) -> None:
    """The kernel template's loop: fork a kernel per ``start`` request, report exit statuses.

    Parameters
    ----------
    sock : socket.socket
        The template's end of the socket pair (one JSON request per line, one answer each).
    base_path : list of str
        ``sys.path`` of a fresh interpreter of this install (without the template's additions);
        each kernel's is that with its environment's ``PYTHONPATH`` in front.
    """
    ended: dict[int, int] = {}

    def reap(*_ignored):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ended[pid] = os.waitstatus_to_exitcode(status)
            while len(ended) > 1000:
                ended.pop(next(iter(ended)))

    signal.signal(signal.SIGCHLD, reap)
    reader = sock.makefile("rb")
    while True:
        line = reader.readline()
        if not line:
            return  # the server has gone
        try:
            req = json.loads(line)
            op = req["op"]
        except (ValueError, KeyError, TypeError):
            _answer(sock, {"error": "malformed request"})
            continue
        if op == "status":
            _answer(sock, {"returncode": ended.get(int(req.get("pid", 0)))})
        elif op == "start":
            try:
                argv, env, cwd = _checked(req)
            except ValueError as exc:
                _answer(sock, {"error": str(exc)})
                continue
            pid = os.fork()
            if pid == 0:
                def become(argv=argv, env=env, cwd=cwd):
                    reader.close()
                    sock.close()
                    return _become_kernel(argv, env, cwd, base_path)

                run_child(become)
            ended.pop(pid, None)  # an earlier kernel's status under a reused pid is not this one's
            _answer(sock, {"pid": pid})
        else:
            _answer(sock, {"error": f"unknown operation {op!r}"})


def run_child(body) -> None:
    """In a freshly forked child: default SIGCHLD and SIGTERM, run ``body()``, exit with its
    status (a traceback to stderr, the hub's or the server's log, if it raised); never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = body() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported, then exit
        import traceback  # noqa: PLC0415

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _answer(sock: socket.socket, body: dict) -> None:
    sock.sendall(json.dumps(body).encode() + b"\n")


def _checked(req: dict) -> tuple[list[str], dict[str, str], str]:
    argv, env, cwd = req.get("argv"), req.get("env"), req.get("cwd")
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)
            and argv[1:3] == ["-m", _KERNEL_MODULE]):
        raise ValueError("only python -m ipykernel_launcher is forked")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError("the environment must map strings to strings")
    if not isinstance(cwd, str):
        raise ValueError("the working folder must be a string")
    return argv, env, cwd


def _become_kernel(argv: list[str], env: dict[str, str], cwd: str, base_path: list[str]) -> int:
    """In the forked child: the request's world, then ipykernel's own start."""
    os.setsid()  # its own process group: an interrupt or a kill reaches it and its children
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = extra + [p for p in base_path if p not in extra]
    sys.argv = [argv[0], *argv[3:]]
    if "setproctitle" in sys.modules:
        sys.modules["setproctitle"].setproctitle(" ".join(argv))
    random.seed()
    if "numpy" in sys.modules:  # forks share the template's random state: each its own
        sys.modules["numpy"].random.seed()
    from ipykernel.kernelapp import IPKernelApp  # noqa: PLC0415 - imported by the template

    app = IPKernelApp.instance()
    app.initialize(argv[3:])
    _register_with_shell(app.shell)
    app.start()
    return 0


def _register_with_shell(shell) -> None:
    """What the template's modules do when imported inside a kernel, done now that there is one:
    they were imported before it existed."""
    widgets = sys.modules.get("ipywidgets")
    if widgets is not None:  # the comm target through which a page asks for every widget's state
        widgets.register_comm_target()
    nbagg = sys.modules.get("ipympl.backend_nbagg")
    if nbagg is not None:  # pyplot figures of the widget backend are shown after each cell
        shell.events.register("post_execute", nbagg.flush_figures)


# ------------------------------------------------------------------------------ the server's side
class KernelTemplate:
    """The server's handle on its kernel template (one per server process)."""

    _instance: "KernelTemplate | None" = None

    def __init__(self, fd: int):
        self._sock = socket.socket(fileno=fd)
        self._reader = self._sock.makefile("rb")
        self._lock = threading.Lock()
        self.broken = False

    @classmethod
    def get(cls) -> "KernelTemplate | None":
        """This server's template, or None (a server started cold, or the template failed)."""
        if cls._instance is None:
            fd = os.environ.pop(ENV_FD, None)
            if fd is None or not fd.isdigit():
                return None
            try:
                cls._instance = cls(int(fd))
            except OSError:
                return None
        return None if cls._instance.broken else cls._instance

    def ask(self, body: dict, timeout: float = 30.0) -> dict:
        """One request and its answer (blocking; thread-safe)."""
        with self._lock:
            try:
                self._sock.settimeout(timeout)
                self._sock.sendall(json.dumps(body).encode() + b"\n")
                line = self._reader.readline()
            except OSError as exc:
                self.broken = True
                raise OSError(f"the kernel template does not answer: {exc}") from None
        if not line:
            self.broken = True
            raise OSError("the kernel template has ended")
        return json.loads(line)


class ForkedKernel:
    """What jupyter_client's local provisioner expects of a ``Popen``, for a forked kernel."""

    def __init__(self, pid: int, template: KernelTemplate):
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None
        self._template = template

    def poll(self) -> int | None:
        if self.returncode is None:
            try:  # the template reaps its kernels and keeps their exit status
                code = self._template.ask({"op": "status", "pid": self.pid}, timeout=5).get("returncode")
            except (OSError, ValueError):  # the template has gone: ask the system
                try:
                    os.kill(self.pid, 0)
                    code = None
                except ProcessLookupError:
                    code = -signal.SIGKILL  # its status went with the template
                except PermissionError:
                    code = None
            if code is not None:
                self.returncode = int(code)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"kernel {self.pid} still runs")
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _provisioner_classes():
    """WarmProvisioner and WarmKernelManager (made on first use: they import jupyter_client and
    jupyter_server, which the template must not need)."""
    import uuid  # noqa: PLC0415

    from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner  # noqa: PLC0415
    from jupyter_server.services.kernels.kernelmanager import ServerKernelManager  # noqa: PLC0415

    class WarmProvisioner(LocalProvisioner):
        """LocalProvisioner that forks dashboards' kernels from the kernel template."""

        async def launch_kernel(self, cmd, **kwargs):
            import asyncio  # noqa: PLC0415

            template = KernelTemplate.get()
            env = kwargs.get("env") or {}
            if (template is None or "VOILA_BASE_URL" not in env
                    or list(cmd[:3]) != [sys.executable, "-m", _KERNEL_MODULE]):
                return await super().launch_kernel(cmd, **kwargs)
            request = {"op": "start", "argv": list(cmd), "env": {str(k): str(v) for k, v in env.items()},
                       "cwd": str(kwargs.get("cwd") or os.getcwd())}
            try:
                answer = await asyncio.to_thread(template.ask, request)
                pid = int(answer["pid"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.log.warning("Kernel template failed (%s): starting the kernel as a new process", exc)
                return await super().launch_kernel(cmd, **kwargs)
            self.process = ForkedKernel(pid, template)
            self.pid = self.pgid = pid  # the kernel made its own process group
            self.cwd = request["cwd"]
            self.log.info("Kernel %s forked from the kernel template (pid %d)", self.kernel_id, pid)
            return self.connection_info

    class WarmKernelManager(ServerKernelManager):
        """jupyter-server's kernel manager; the kernels of dashboards come from the template."""

        async def _async_pre_start_kernel(self, **kw):
            if self.provisioner is None and KernelTemplate.get() is not None:  # None: a restart
                self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
                made = KernelProvisionerFactory.instance(parent=self.parent).create_provisioner_instance(
                    self.kernel_id, self.kernel_spec, parent=self)
                self.provisioner = (WarmProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                    parent=self)
                                    if type(made) is LocalProvisioner else made)
            return await super()._async_pre_start_kernel(**kw)

    return WarmProvisioner, WarmKernelManager


def __getattr__(name):
    if name in ("WarmProvisioner", "WarmKernelManager"):
        provisioner, manager = _provisioner_classes()
        globals().update(WarmProvisioner=provisioner, WarmKernelManager=manager)
        return globals()[name]
    raise AttributeError(name)
