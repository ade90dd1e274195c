"""What every dashboard has: a title with the device badge, the data chooser, where results go."""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets

from .data_chooser import DataChooser
from .device import DeviceBadge
from .server import base_url as default_base_url

__all__ = ["Dashboard", "section"]


def section(title: str) -> widgets.HTML:
    """A numbered section heading ("1. Data")."""
    return widgets.HTML(f"<h3 style='margin:14px 0 4px 0'>{html.escape(title)}</h3>")


class Dashboard(widgets.VBox):
    """The frame of a dashboard: device badge, data chooser, result folder and download settings.

    Subclasses lay out their children (starting with :meth:`header`) and implement :meth:`wait`;
    :meth:`_wait_readers` waits for whatever still reads a replaced dataset before it is closed.

    Parameters
    ----------
    data_dirs, upload_dir : optional
        See :class:`~speckle.ui.common.data_chooser.DataChooser`.
    results_dir : path-like, optional
        Parent of the result folders (default ``SPECKLE_RESULTS_DIR`` or
        ``~/speckle-results``).
    base_url : str, optional
        The user server's base URL (default from ``JUPYTERHUB_SERVICE_PREFIX``).
    server_root : path-like, optional
        The Jupyter server's root folder, for download links (default home).
    demos : sequence of str, optional
        Demo datasets offered (names of :data:`speckle.demo.DEMOS`; default all).
    saved_results : bool
        Whether the data chooser opens saved imaging results (``result.h5``).

    Attributes
    ----------
    chooser : DataChooser
    device : DeviceBadge
    """

    def __init__(self, *, data_dirs=None, upload_dir=None, results_dir=None,
                 base_url: str | None = None, server_root=None, demos=None,
                 saved_results: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-dashboard")
        self.base_url = base_url or default_base_url()
        self.results_dir = results_dir
        self.server_root = server_root
        self.device = DeviceBadge()
        self.chooser = DataChooser(data_dirs=data_dirs, upload_dir=upload_dir,
                                   base_url=self.base_url, demos=demos,
                                   saved_results=saved_results)
        self.chooser.release = self._release

    def header(self, title: str) -> widgets.HBox:
        """The title, with the device badge at the right."""
        return widgets.HBox([widgets.HTML(f"<h2 style='margin:4px 0'>{html.escape(title)}</h2>"),
                             self.device],
                            layout=widgets.Layout(justify_content="space-between",
                                                  align_items="center", width="100%"))

    def _release(self, old) -> None:
        """Close a replaced dataset once nothing reads it any more."""
        def close():
            self._wait_readers()
            old.close()

        threading.Thread(target=close, name="speckle-release", daemon=True).start()

    def _wait_readers(self) -> None:
        """Wait until nothing reads the dataset (default: until :meth:`wait` says so)."""
        self.wait(None)

    def wait(self, timeout: float | None = 120) -> bool:
        """Wait until nothing runs in the background; True when nothing is left."""
        raise NotImplementedError
