"""The proxy: adopted by a restarted hub (``make hub``), or run on its own (systemd).

Under ``make hub`` the hub starts the proxy itself. JupyterHub's own class, restarted after a
crash, kills the proxy it finds running and starts another, which cuts every user's open page
for many seconds; :class:`AdoptingProxy` keeps it instead (its routes and the connections
through it are untouched) and restarts it only when it is gone.

In production the proxy runs in its own unit (``speckle-proxy.service``, :func:`main`), so that
routes to the user servers survive a hub restart; the hub then runs with
``SPECKLE_HUB_PROXY=external`` (``ConfigurableHTTPProxy.should_start = False``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from jupyterhub.proxy import ConfigurableHTTPProxy
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.ioloop import PeriodicCallback

from . import settings as settings_mod
from .launch import prepare_state


class _Running:
    """A proxy process this hub did not start (a previous run of the hub did): what
    ConfigurableHTTPProxy asks of its ``proxy_process`` (poll, terminate, kill, wait)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None

    def poll(self):
        try:
            os.kill(self.pid, 0)
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, OSError):
            state = "X"
        if state in ("Z", "X"):  # gone, or a zombie its new parent has not reaped yet
            self.returncode = self.returncode if self.returncode is not None else 1
        return self.returncode

    def terminate(self):
        self._signal(signal.SIGTERM)

    def kill(self):
        self._signal(signal.SIGKILL)

    def _signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"the proxy (pid {self.pid}) is still running")
            time.sleep(0.05)
        return self.returncode


class AdoptingProxy(ConfigurableHTTPProxy):
    """ConfigurableHTTPProxy that keeps a proxy left running by a previous run of the hub."""

    async def start(self):
        pid = self._previous_pid()
        if pid is not None and await self._answers():
            self.log.info("Keeping the proxy that is already running (pid %s): open pages stay "
                          "connected", pid)
            self.proxy_process = _Running(pid)
            self._check_running_callback = PeriodicCallback(self.check_running,
                                                            1e3 * self.check_running_interval)
            self._check_running_callback.start()
            return
        await super().start()

    def _previous_pid(self) -> int | None:
        try:
            pid = int(Path(self.pid_file).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"configurable-http-proxy" in cmdline else None

    async def _answers(self) -> bool:
        """The running proxy's API answers this hub's token: it is this hub's proxy."""
        request = HTTPRequest(self.api_url.rstrip("/") + "/api/routes", request_timeout=3,
                              headers={"Authorization": f"token {self.auth_token}"})
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError:
            return False
        return response.code == 200


def command(s: dict) -> list[str]:
    hub = s["hub"]
    internal = f"http://127.0.0.1:{hub['internal_port']}"
    cmd = [
        str(settings_mod.PROXY_BIN),
        "--ip", hub["bind_address"], "--port", str(hub["port"]),
        "--api-ip", "127.0.0.1", "--api-port", str(hub["proxy_api_port"]),
        "--default-target", internal,
        "--error-target", f"{internal}{hub['base_url']}hub/error",
        "--log-level", "info",
    ]
    if hub["tls"]["cert"]:
        cmd += ["--ssl-cert", hub["tls"]["cert"], "--ssl-key", hub["tls"]["key"]]
    return cmd


def main() -> int:
    try:
        s = settings_mod.load()
    except settings_mod.SettingsError as exc:
        print(f"speckle proxy: the settings are wrong:\n{exc}", file=sys.stderr)
        return 2
    state = Path(s["_state_dir"])
    prepare_state(state)
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": settings_mod.read_secret(state / "proxy-auth-token")}
    cmd = command(s)
    os.execve(cmd[0], cmd, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
