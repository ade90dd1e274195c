"""The beamtime monitor as a hub service: settings -> the service, its account and folders.

The service (``python -m speckle_hub.beamtime``, :mod:`.service`) runs the library's monitor
(:class:`speckle.monitor.Monitor`, analyses on Dask) and serves the live **Beamtime** page to
hub users at ``/services/beamtime/``. This module is used by the hub process only:

- :func:`monitor_settings` resolves the ``monitor:`` section (folders, results folder, template);
- :func:`prepare` creates what the service needs before it starts: as root, its own unix account
  (``monitor.account``), which can read the beamline folders and writes only the results folder;
  the results folder, readable by every hub user (their dashboards open results and templates);
  with no beamline folder configured, a demo folder holding the bundled demo data;
- :func:`service` and :func:`roles` are the JupyterHub configuration: the managed service, and
  the scopes that let hub users (and their servers' kernels, which save templates) reach it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from ..settings import HUB_CONFIG

__all__ = ["NAME", "monitor_settings", "prepare", "roles", "service"]

NAME = "beamtime"
#: The dashboards a result opens in, by kind (notebooks/dashboards).
DASHBOARD_FOR = {"xpcs": "xpcs_quick_check.ipynb", "fth": "fth_reconstruction.ipynb",
                 "cdi": "cdi_phasing.ipynb"}


def _beside_state(s: dict) -> Path:
    """A folder beside the state folder (which is closed to everyone else) for the monitor's
    default results and the demo folder."""
    state = Path(s["_state_dir"])
    return state.with_name(state.name + "-beamtime")


def monitor_settings(s: dict) -> dict:
    """The ``monitor:`` settings with the defaults resolved.

    Returns
    -------
    dict
        ``folders`` (the watched folders: ``monitor.folders``, else ``data.beamline_dirs``, else
        the demo folder), ``demo`` (True for the demo folder), ``results_dir``, ``home``, and the
        rest of the section as given.
    """
    m = dict(s["monitor"])
    beside = _beside_state(s)
    folders = m.get("folders")
    if folders is None:
        folders = list(s["data"]["beamline_dirs"])
    m["demo"] = not folders
    m["folders"] = folders or [str(beside / "demo-beamline")]
    m["results_dir"] = str(Path(m.get("results_dir") or beside / "results").expanduser())
    # the account's home (matplotlib's cache, Dask's scratch): inside the results, its own
    m["home"] = str(Path(m["results_dir"]) / ".monitor")
    return m


def _account(name: str, home: Path) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", str(home), "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


def _seed_demo(folder: Path, results: Path) -> None:
    """The bundled demo data in the demo folder, and a template that knows the XPCS demo's
    geometry (once: a person may remove files or change the template)."""
    from speckle.demo import DEMO_RINGS, demo_metadata, demo_path
    from speckle.monitor.templates import Template, TemplateStore
    from speckle.units import format_quantity

    if folder.exists():
        return
    folder.mkdir(parents=True)
    for name in ("xpcs", "fth", "cdi"):
        src = demo_path(name)
        shutil.copy2(src, folder / src.name)
    md, rings = demo_metadata("xpcs"), DEMO_RINGS["xpcs"]
    template = Template.from_dict({
        "kind": "auto",
        "xpcs": {"partition": {"kind": "q_rings", "n_rings": rings["n_rings"],
                               "q_min": format_quantity(rings["q_min"] * 1e10, "q"),
                               "q_width": format_quantity(rings["q_width"] * 1e10, "q"),
                               "static_per_ring": rings["static_per_ring"]},
                 "metadata": {k: md[k] for k in ("frame_time", "energy", "distance", "pixel_size",
                                                 "beam_center")}},
        "note": "the demo data's geometry (speckle/demo/PROVENANCE.md)"})
    TemplateStore(Path(results) / "templates").save(template.stamped(folder=str(folder),
                                                                     saved_by="speckle hub"))


def prepare(s: dict) -> dict:
    """Create the monitor's folders (and, as root, its account); return the resolved settings.

    The results folder is owned by the monitor's account and readable by everyone (mode 755):
    hub users' dashboards open its results and templates; nobody else writes there.
    """
    m = monitor_settings(s)
    home, results = Path(m["home"]), Path(m["results_dir"])
    results.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    if m["demo"]:
        _seed_demo(Path(m["folders"][0]), results)
    if os.geteuid() == 0:
        user = _account(m["account"], home)
        for path in (results, *results.rglob("*")):
            if path.is_symlink():
                continue
            os.chown(path, user.pw_uid, user.pw_gid)
        m["uid"] = user.pw_uid
    os.chmod(results, 0o755)
    return m


def problems(s: dict) -> list[str]:
    """What would stop the monitor's account (as root) from working, as sentences."""
    if os.geteuid() != 0 or not s["monitor"]["enabled"]:
        return []
    from ..launch import _world_can_reach

    m = monitor_settings(s)
    out = []
    results = Path(m["results_dir"])
    blocked = _world_can_reach(results.parent) if results.parent.exists() else None
    if blocked:
        out.append(f"The beamtime monitor runs as the account {m['account']} and cannot reach its "
                   f"results folder {results}: {blocked} is closed to other users. Set "
                   "monitor.results_dir to a folder every account can reach (e.g. "
                   "/var/lib/speckle-beamtime) or `chmod o+x` the folders on the way.")
    return out


def service(s: dict, m: dict) -> dict:
    """The JupyterHub managed service that runs the monitor and serves the Beamtime page."""
    config = {k: m[k] for k in ("folders", "settle_seconds", "watch", "poll_interval",
                                "max_seconds", "cluster")}
    config["results"] = m["results_dir"]
    if m.get("template"):
        config["template"] = m["template"]
    env = {
        "PYTHONPATH": str(HUB_CONFIG),
        "SPECKLE_MONITOR_CONFIG": json.dumps(config),
        "HOME": m["home"],
        "MPLCONFIGDIR": str(Path(m["home"]) / ".cache" / "matplotlib"),
        "SPECKLE_MONITOR_DEMO": "1" if m["demo"] else "",
    }
    for key in ("PATH", "SLURM_CONF", "LANG"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    spec = {
        "name": NAME,
        "url": f"http://127.0.0.1:{m['internal_port']}",
        "command": [sys.executable, "-m", "speckle_hub.beamtime"],
        "environment": env,
        "cwd": m["home"],
        "oauth_no_confirm": True,
        "display": False,
        "info": {"description": "The beamtime monitor: every new dataset analysed as it lands"},
    }
    if os.geteuid() == 0:
        spec["user"] = m["account"]
    return spec


def roles() -> list[dict]:
    """Scopes that let every hub user open the Beamtime page, and their servers (the dashboards'
    kernels) save a folder's template through the service's API."""
    access = f"access:services!service={NAME}"
    return [
        {"name": "user", "description": "Standard user privileges, and the Beamtime page",
         "scopes": ["self", access]},
        {"name": "server", "description": "Post activity, and save templates with the monitor",
         "scopes": ["users:activity!user", "access:servers!server", access]},
    ]
