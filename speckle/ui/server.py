"""Where the dashboards live: the user server's base URL and the user's folders.

Everything a dashboard needs to know about the Jupyter server it runs under comes from the
environment the server (and so the kernel) was started with; nothing is guessed from the
browser. The variables, all optional:

``SPECKLE_BASE_URL``
    The user server's base URL, when it must be forced (tests, unusual proxies).
``JUPYTERHUB_SERVICE_PREFIX``
    Set by JupyterHub for every user server (``/user/<name>/``); the base URL under a hub.
``SPECKLE_DATA_DIRS``
    ``:``-separated read-only beamline folders (set by the hub's spawner).
``SPECKLE_UPLOAD_DIR``
    Where the server extension places finished uploads (default ``~/speckle-uploads``).
``SPECKLE_RESULTS_DIR``
    Where the dashboards write result folders (default ``~/speckle-results``).
``SPECKLE_SERVER_ROOT``
    The Jupyter server's ``root_dir`` (default the user's home): result files inside it are
    offered as ``{base_url}files/...`` download links.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

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
    env = os.environ if environ is None else environ
    for name in ("SPECKLE_BASE_URL", "JUPYTERHUB_SERVICE_PREFIX"):
        value = env.get(name, "").strip()
        if value:
            return _normalise_prefix(value)
    return "/"


def data_dirs(environ=None) -> list[Path]:
    """Return the configured beamline data folders that exist (``SPECKLE_DATA_DIRS``)."""
    env = os.environ if environ is None else environ
    out = []
    for part in env.get("SPECKLE_DATA_DIRS", "").split(os.pathsep):
        part = part.strip()
        if part:
            path = Path(part).expanduser()
            if path.is_dir() and path not in out:
                out.append(path)
    return out


def upload_dir(environ=None) -> Path:
    """Return the folder where finished uploads are placed (``SPECKLE_UPLOAD_DIR``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("SPECKLE_UPLOAD_DIR") or "~/speckle-uploads").expanduser()


def results_root(environ=None) -> Path:
    """Return the per-user folder that holds result folders (``SPECKLE_RESULTS_DIR``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("SPECKLE_RESULTS_DIR") or "~/speckle-results").expanduser()


def monitor_url(environ=None) -> str | None:
    """The beamtime monitor's API on this machine (``SPECKLE_MONITOR_URL``), or None."""
    env = os.environ if environ is None else environ
    url = env.get("SPECKLE_MONITOR_URL", "").strip()
    return (url.rstrip("/") + "/") if url else None


def monitor_results(environ=None) -> Path | None:
    """The beamtime monitor's results folder (``SPECKLE_MONITOR_RESULTS``), or None."""
    env = os.environ if environ is None else environ
    value = env.get("SPECKLE_MONITOR_RESULTS", "").strip()
    return Path(value) if value else None


def server_root(environ=None) -> Path:
    """Return the Jupyter server's root folder (``SPECKLE_SERVER_ROOT``, default home)."""
    env = os.environ if environ is None else environ
    return Path(env.get("SPECKLE_SERVER_ROOT") or "~").expanduser()


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
