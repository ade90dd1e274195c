"""What the landing page shows: the tiles, the mode, the GPUs (template variables)."""

from __future__ import annotations

import ipaddress
import os
import pwd

from . import gpus as gpu_mod
from .settings import DASHBOARDS_DIR, EXAMPLES_DIR, NOTEBOOKS

#: Dashboards in the order of the landing page: (notebook, title, text). A tile is live when its
#: notebook exists in notebooks/dashboards/, else it shows "coming".
DASHBOARDS = [
    ("xpcs_quick_check.ipynb", "XPCS quick check",
     "Choose or upload a dataset, draw regions or q-rings, Analyze: g2 with fits, τ and β, "
     "two-time map, and a verdict on the data."),
    ("fth_reconstruction.ipynb", "FTH reconstruction",
     "Fourier transform holography: hologram to image, refocus."),
    ("cdi_phasing.ipynb", "CDI phasing", "Coherent diffractive imaging: phase retrieval."),
    ("propagation.ipynb", "Propagation", "Propagate a wavefield and find the focus."),
]
#: Data browser: a dashboard of that name when one exists, else JupyterLab's file browser on the
#: beamline folders linked into the home.
DATA_BROWSER = "data_browser.ipynb"
BEAMLINE_LINKS_DIR = "beamline-data"


def tiles(names: set[str] | None = None, beamtime_url: str | None = None) -> list[dict]:
    """The landing page's tiles: id, title, text, path (under the user's server), profile, ready;
    a tile with ``url`` links there instead (the Beamtime page, a hub service)."""
    if names is None:
        folder = NOTEBOOKS / "dashboards"
        names = {p.name for p in folder.glob("*.ipynb")} if folder.is_dir() else set()
    out = []
    if beamtime_url:
        out.append({"id": "beamtime", "title": "Beamtime",
                    "text": "Every new dataset analysed as it lands: the verdicts of this beamtime, "
                            "live, newest first.",
                    "profile": None, "path": "", "url": beamtime_url, "ready": True})
    for nb, title, text in DASHBOARDS:
        out.append({"id": nb.removesuffix(".ipynb"), "title": title, "text": text, "profile": "quick",
                    "path": f"voila/render/{DASHBOARDS_DIR}/{nb}", "ready": nb in names})
    known = {d[0] for d in DASHBOARDS} | {DATA_BROWSER}
    for nb in sorted(names - known):
        title = nb.removesuffix(".ipynb").replace("_", " ").capitalize()
        out.append({"id": nb.removesuffix(".ipynb"), "title": title, "text": "Dashboard", "profile": "quick",
                    "path": f"voila/render/{DASHBOARDS_DIR}/{nb}", "ready": True})
    if DATA_BROWSER in names:
        browser_path = f"voila/render/{DASHBOARDS_DIR}/{DATA_BROWSER}"
        profile = "quick"
    else:
        browser_path = f"lab/tree/{BEAMLINE_LINKS_DIR}"
        profile = "lab"
    out.append({"id": "data_browser", "title": "Data browser",
                "text": "The beamline's data folders (read-only) and your uploads.",
                "profile": profile, "path": browser_path, "ready": True})
    out.append({"id": "jupyterlab", "title": "JupyterLab",
                "text": "Notebooks, a terminal and the speckle library, for your own analysis.",
                "profile": "lab", "path": "lab", "ready": True})
    out.append({"id": "examples", "title": "Example notebooks",
                "text": "Reading data, XPCS end to end, using the GPU: your own copies to change.",
                "profile": "lab", "path": f"lab/tree/{EXAMPLES_DIR}", "ready": True})
    return out


def insecure_http(hub: dict) -> bool:
    """Whether passwords reach the hub unencrypted over the network: it listens on a non-loopback
    address (a host name, all interfaces) without TLS. Behind a TLS proxy the hub listens on
    loopback, so no warning there."""
    if hub["tls"]["cert"]:
        return False
    host = hub["bind_address"]
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def template_vars(s: dict) -> dict:
    g = s["gpus"]
    found = [] if g["policy"] == "cpu" else gpu_mod.detect(g["nvidia_smi"])
    if g["devices"] != "all":
        found = [x for x in found if x.index in set(g["devices"])]
    single = os.geteuid() != 0
    gpu_choice = len(found) > 1 and g["let_users_choose"]
    out = {
        "speckle_tiles": tiles(beamtime_url=f"{s['hub']['base_url']}services/beamtime/"
                               if s["monitor"]["enabled"] else None),
        "speckle_single_account": single,
        "speckle_account": pwd.getpwuid(os.geteuid()).pw_name if single else "",
        "speckle_auth": s["auth"]["type"],
        "speckle_insecure_http": insecure_http(s["hub"]),
        "speckle_gpus": ", ".join(f"{x.name}" for x in found) if found else "",
        "speckle_data_dirs": s["data"]["beamline_dirs"],
        "speckle_autostart": s["users"]["start_at_login"] and not gpu_choice,
    }
    if s["hub"]["announcement"]:
        out["announcement"] = s["hub"]["announcement"]
    return out
