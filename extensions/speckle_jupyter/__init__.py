"""Jupyter server extension of the speckle hub (uploads, data browser, status).

Enable it with ``--ServerApp.jpserver_extensions='{"speckle_jupyter": true}'`` (the hub's
spawner does). It serves, under ``{base_url}speckle/api/``:

* ``uploads``: streaming, resumable, chunked uploads with a per-user quota, validated with
  :func:`speckle.io.open_dataset` before the file appears in the upload folder;
* ``data``: a read-only listing of the beamline folders, the uploads and the demo datasets;
* ``status``: what computes (GPU name or CPU), the quota and its use.

The protocol is documented in ``extensions/README.md``.
"""

from __future__ import annotations

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points():
    return [{"module": "speckle_jupyter"}]


def _load_jupyter_server_extension(serverapp):
    """Register the handlers and the upload store on a running jupyter_server ``ServerApp``."""
    from .handlers import handlers  # noqa: PLC0415 - import jupyter_server only when loaded
    from .uploads import UploadStore  # noqa: PLC0415

    web_app = serverapp.web_app
    store = UploadStore()
    try:
        store.ensure_dirs()
        store.cleanup()
    except OSError as exc:
        serverapp.log.error("speckle_jupyter: cannot prepare the upload folder %s: %s",
                            store.upload_dir, exc)
    web_app.settings["speckle_upload_store"] = store
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    serverapp.log.info("speckle_jupyter: speckle/api/ ready (uploads into %s, quota %d bytes, "
                       "chunks of %d bytes)", store.upload_dir, store.quota_bytes,
                       store.chunk_size)


# the name of older notebook-server releases
load_jupyter_server_extension = _load_jupyter_server_extension
