"""Upload from the laptop: a browser-side streaming, resumable upload (anywidget).

ipywidgets' ``FileUpload`` sends a whole file as one websocket message (dropped silently over
10 MiB, and held whole in browser memory; see FIELD-NOTES). This widget's JavaScript
(``uploader.js``, shipped as package data) instead reads the chosen file in 64 MiB slices and
sends them to the ``speckle_jupyter`` server extension's REST API, which validates the file
with :func:`speckle.io.open_dataset` before it becomes visible. The kernel only learns the
outcome, through the traits below.
"""

from __future__ import annotations

from importlib import resources

import anywidget
import traitlets

from .server import base_url as default_base_url

__all__ = ["Uploader", "UPLOAD_STATES"]

#: Values of :attr:`Uploader.state`.
UPLOAD_STATES = ("idle", "starting", "uploading", "validating", "done", "failed", "cancelled")


def _esm() -> str:
    return resources.files(__package__).joinpath("uploader.js").read_text(encoding="utf-8")


class Uploader(anywidget.AnyWidget):
    """File chooser and progress bar that streams a file to the user server.

    Parameters
    ----------
    base_url : str, optional
        The user server's base URL (default :func:`speckle.ui.common.server.base_url`, i.e.
        ``JUPYTERHUB_SERVICE_PREFIX`` under a hub, else ``/``).
    chunk_size : int, optional
        Bytes per request (default 64 MiB; the server may ask for less).

    Attributes
    ----------
    state : str
        One of :data:`UPLOAD_STATES`; ``"done"`` once the server validated and placed the file.
    progress : float
        Fraction of the bytes the server acknowledged, 0 to 1.
    path : str
        Where the server placed the finished file.
    error : str
        The server's message (or a plain-words description) when the upload failed.
    name, size, info
        The file's name and size, and the server's description of the dataset
        (``format``, ``shape``, ``dtype``).

    Notes
    -----
    The page element carries the CSS class ``speckle-upload``; inside it the file input is
    ``.speckle-upload-input``, the bar ``.speckle-upload-progress``, the status line
    ``.speckle-upload-status``, a refusal ``.speckle-upload-error`` and the cancel button
    ``.speckle-upload-cancel``.
    """

    _esm = _esm()

    base_url = traitlets.Unicode("/").tag(sync=True)
    chunk_size = traitlets.Int(64 * 2**20).tag(sync=True)
    state = traitlets.Unicode("idle").tag(sync=True)
    progress = traitlets.Float(0.0).tag(sync=True)
    path = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    name = traitlets.Unicode("").tag(sync=True)
    size = traitlets.Int(0).tag(sync=True)
    info = traitlets.Dict().tag(sync=True)

    def __init__(self, base_url: str | None = None, **kwargs):
        super().__init__(base_url=base_url or default_base_url(), **kwargs)
        self.add_class("speckle-upload")

    def reset(self) -> None:
        """Forget the last upload (the page shows an empty chooser again)."""
        self.path = ""
        self.error = ""
        self.progress = 0.0
        self.info = {}
        self.state = "idle"
