"""The site configuration a user server runs with: one :class:`SiteConfig`, read in one place.

The hub writes it from ``hub_config/settings.yaml`` into the environment of every user server
(``hub_config/speckle_hub/spawner.py``, ``get_env``); the kernels inherit it. The library, the
dashboards and the server extension read it here and nowhere else. Every variable is optional:
outside a hub (a laptop, the tests) the defaults below apply.

=============================  ==================================================  ===========
variable                       meaning                                             default
=============================  ==================================================  ===========
``SPECKLE_HUB_MODE``           ``isolated`` (one unix account per user) or         ``""``
                               ``single-account``
``SPECKLE_DATA_DIRS``          read-only beamline folders, ``:``-separated         none
``SPECKLE_UPLOAD_DIR``         where finished uploads are placed                   ``~/speckle-uploads``
``SPECKLE_UPLOAD_QUOTA_BYTES`` the user's upload quota                             50 GB
``SPECKLE_UPLOAD_CHUNK_BYTES`` the largest upload request                          64 MiB
``SPECKLE_RESULTS_DIR``        where the dashboards write result folders           ``~/speckle-results``
``SPECKLE_SERVER_ROOT``        the Jupyter server's root folder                    ``~``
``SPECKLE_BASE_URL``           the server's base URL, when it must be forced       ``JUPYTERHUB_SERVICE_PREFIX``, ``/``
``SPECKLE_GPU_NAME``           the GPU the hub assigned (``CPU``: none)            ``""``
``CUDA_VISIBLE_DEVICES``       the GPUs this server may use                        unset
``SPECKLE_MONITOR_URL``        the beamtime monitor's API on this machine          none
``SPECKLE_MONITOR_RESULTS``    the beamtime monitor's results folder               none
=============================  ==================================================  ===========
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_UPLOAD_CHUNK_BYTES", "DEFAULT_UPLOAD_QUOTA_BYTES", "SiteConfig", "site"]

log = logging.getLogger(__name__)

#: The one default upload quota (the hub's ``data.upload_quota_gb`` defaults to it too).
DEFAULT_UPLOAD_QUOTA_BYTES = 50 * 10**9
# 64 MiB: a 1 GB upload through Chromium took 100-103 MB/s in 16 MiB requests, 109-111 MB/s in
# 64 MiB ones (2-core machine; benchmarks/bench_hub.py); a resumed upload resends at most one.
DEFAULT_UPLOAD_CHUNK_BYTES = 64 * 2**20
MIN_UPLOAD_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class SiteConfig:
    """Where things are and what this server may use (see the module documentation).

    Attributes
    ----------
    mode : str
        ``"isolated"``, ``"single-account"``, or ``""`` outside a hub.
    data_dirs : tuple of Path
        The beamline folders, as configured (missing ones included; :meth:`existing_data_dirs`).
    upload_dir, results_dir, server_root : Path
        Absolute folders.
    upload_quota_bytes, upload_chunk_bytes : int
    base_url : str
        Starts and ends with ``/``.
    gpu_name : str
        The GPU the hub assigned; ``""`` when none.
    cuda_visible_devices : str or None
    monitor_url : str or None
        Ends with ``/``.
    monitor_results : Path or None
    """

    mode: str = ""
    data_dirs: tuple[Path, ...] = ()
    upload_dir: Path = Path("~/speckle-uploads").expanduser()
    upload_quota_bytes: int = DEFAULT_UPLOAD_QUOTA_BYTES
    upload_chunk_bytes: int = DEFAULT_UPLOAD_CHUNK_BYTES
    results_dir: Path = Path("~/speckle-results").expanduser()
    server_root: Path = Path("~").expanduser()
    base_url: str = "/"
    gpu_name: str = ""
    cuda_visible_devices: str | None = None
    monitor_url: str | None = None
    monitor_results: Path | None = None

    @classmethod
    def from_environ(cls, environ=None) -> "SiteConfig":
        """Read the configuration from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str:
            return (env.get(name) or "").strip()

        def folder(name: str, default: str) -> Path:
            return Path(text(name) or default).expanduser().absolute()

        base = text("SPECKLE_BASE_URL") or text("JUPYTERHUB_SERVICE_PREFIX") or "/"
        base = "/" + base.strip("/") + "/" if base.strip("/") else "/"
        dirs = []
        for part in text("SPECKLE_DATA_DIRS").split(os.pathsep):
            path = Path(part.strip()).expanduser().absolute() if part.strip() else None
            if path is not None and path not in dirs:
                dirs.append(path)
        gpu = text("SPECKLE_GPU_NAME")
        monitor = text("SPECKLE_MONITOR_URL")
        return cls(
            mode=text("SPECKLE_HUB_MODE"),
            data_dirs=tuple(dirs),
            upload_dir=folder("SPECKLE_UPLOAD_DIR", "~/speckle-uploads"),
            upload_quota_bytes=_bytes(env, "SPECKLE_UPLOAD_QUOTA_BYTES", DEFAULT_UPLOAD_QUOTA_BYTES, 0),
            upload_chunk_bytes=_bytes(env, "SPECKLE_UPLOAD_CHUNK_BYTES", DEFAULT_UPLOAD_CHUNK_BYTES,
                                      MIN_UPLOAD_CHUNK_BYTES),
            results_dir=folder("SPECKLE_RESULTS_DIR", "~/speckle-results"),
            server_root=folder("SPECKLE_SERVER_ROOT", "~"),
            base_url=base,
            gpu_name="" if gpu.upper() == "CPU" else gpu,  # the hub's word for "no GPU assigned"
            cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
            monitor_url=monitor.rstrip("/") + "/" if monitor else None,
            monitor_results=Path(text("SPECKLE_MONITOR_RESULTS")) if text("SPECKLE_MONITOR_RESULTS") else None,
        )

    def existing_data_dirs(self) -> list[Path]:
        """The beamline folders that exist (a folder not mounted yet is left out)."""
        return [p for p in self.data_dirs if p.is_dir()]

    @property
    def gpu_hidden(self) -> bool:
        """Whether the hub gave this server no GPU (``CUDA_VISIBLE_DEVICES`` empty or ``-1``)."""
        return self.cuda_visible_devices is not None and self.cuda_visible_devices.strip() in ("", "-1")


def site(environ=None) -> SiteConfig:
    """This server's :class:`SiteConfig` (read from the environment at each call: cheap).

    Parameters
    ----------
    environ : mapping, optional
        Defaults to ``os.environ``.
    """
    return SiteConfig.from_environ(environ)


def _bytes(env, name: str, default: int, minimum: int) -> int:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        log.warning("speckle.site: %s=%r is not a number of bytes; using %d", name, text, default)
        return default
    if value < minimum:
        log.warning("speckle.site: %s=%d is below %d; using %d", name, value, minimum, default)
        return default
    return value
