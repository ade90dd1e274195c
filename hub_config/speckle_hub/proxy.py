"""Run the proxy on its own (systemd's speckle-proxy.service), with the hub's settings and token.

Normally the hub starts the proxy itself. In production the proxy runs in its own unit so that
routes to the user servers, and so the users' open pages, survive a hub restart; the hub then
runs with ``SPECKLE_HUB_PROXY=external`` (``ConfigurableHTTPProxy.should_start = False``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import settings as settings_mod
from .launch import prepare_state


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
