"""Where the dashboards live: the user server's base URL and the user's folders.

Everything a dashboard needs to know about the Jupyter server it runs under comes from the site
configuration the hub gave the server (:mod:`speckle.site`, read from the environment the kernel
inherits); nothing is guessed from the browser. These functions are the dashboards' names for
its fields; ``environ`` lets tests pass their own environment.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from ...site import site

__all__ = ["base_url", "data_dirs", "download_url", "monitor_results", "monitor_url",
           "results_root", "server_root", "upload_dir"]


def _normalise_prefix(prefix: str) -> str:
    prefix = "/" + prefix.strip().strip("/")
    return prefix if prefix.endswith("/") else prefix + "/"


def base_url(environ=None) -> str:
    """Return the base URL of the Jupyter server that runs this kernel, e.g. ``/user/ana/``.

    Parameters
    ----------
    environ : mapping, optional
        Defaults to ``os.environ``.

    Returns
    -------
    str
        Starts and ends with ``/``: ``SPECKLE_BASE_URL`` when set, else
        ``JUPYTERHUB_SERVICE_PREFIX`` (under a hub), else ``"/"``.
    """
    return site(environ).base_url


def data_dirs(environ=None) -> list[Path]:
    """Return the configured beamline data folders that exist (``SPECKLE_DATA_DIRS``)."""
    return site(environ).existing_data_dirs()


def upload_dir(environ=None) -> Path:
    """Return the folder where finished uploads are placed (``SPECKLE_UPLOAD_DIR``)."""
    return site(environ).upload_dir


def results_root(environ=None) -> Path:
    """Return the per-user folder that holds result folders (``SPECKLE_RESULTS_DIR``)."""
    return site(environ).results_dir


def monitor_url(environ=None) -> str | None:
    """The beamtime monitor's API on this machine (``SPECKLE_MONITOR_URL``), or None."""
    return site(environ).monitor_url


def monitor_results(environ=None) -> Path | None:
    """The beamtime monitor's results folder (``SPECKLE_MONITOR_RESULTS``), or None."""
    return site(environ).monitor_results


def server_root(environ=None) -> Path:
    """Return the Jupyter server's root folder (``SPECKLE_SERVER_ROOT``, default home)."""
    return site(environ).server_root


def download_url(path, *, prefix: str | None = None, root=None) -> str | None:
    """Return the URL that downloads ``path`` through the Jupyter server, or None.

    Parameters
    ----------
    path : str or path-like
        A file.
    prefix : str, optional
        Base URL (default :func:`base_url`).
    root : path-like, optional
        The server's root folder (default :func:`server_root`).

    Returns
    -------
    str or None
        ``{prefix}files/<path relative to root>?download=1`` (each part URL-quoted), or None
        when the file is outside the server's root folder (the server cannot serve it).
    """
    prefix = base_url() if prefix is None else _normalise_prefix(prefix)
    root = server_root() if root is None else Path(root)
    try:
        rel = Path(path).resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    if any(part.startswith(".") for part in rel.parts):
        return None  # the server refuses hidden files
    return f"{prefix}files/{'/'.join(quote(p) for p in rel.parts)}?download=1"
