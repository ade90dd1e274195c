"""The XPCS quick check, composed: data, image and regions, Analyze, results."""

from __future__ import annotations

import threading

import ipywidgets as widgets

from ..errors import InvalidInputError
from ..errors import Cancelled
from ._common import describe_error
from .data_chooser import DataChooser
from .device import DeviceBadge
from .export import write_result_folder
from .image_view import ImageView
from .results import ResultsView
from .runner import AnalysisRunner, Job
from .server import base_url as default_base_url

__all__ = ["XpcsDashboard", "xpcs_dashboard"]


def _section(title: str) -> widgets.HTML:
    return widgets.HTML(f"<h3 style='margin:14px 0 4px 0'>{title}</h3>")


class XpcsDashboard(widgets.VBox):
    """The XPCS quick check as one widget.

    Parameters
    ----------
    data_dirs, upload_dir : optional
        See :class:`~speckle.ui.data_chooser.DataChooser`.
    results_dir : path-like, optional
        Parent of the result folders (default ``SPECKLE_RESULTS_DIR`` or
        ``~/speckle-results``).
    base_url : str, optional
        The user server's base URL (default from ``JUPYTERHUB_SERVICE_PREFIX``).
    server_root : path-like, optional
        The Jupyter server's root folder, for download links (default home).

    Attributes
    ----------
    chooser : DataChooser
    image : ImageView
    runner : AnalysisRunner
    results : ResultsView
    device : DeviceBadge
    """

    def __init__(self, *, data_dirs=None, upload_dir=None, results_dir=None,
                 base_url: str | None = None, server_root=None, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-dashboard")
        self.add_class("speckle-xpcs")
        prefix = base_url or default_base_url()
        self.results_dir = results_dir
        self.device = DeviceBadge()
        self.chooser = DataChooser(data_dirs=data_dirs, upload_dir=upload_dir, base_url=prefix)
        self.image = ImageView()
        self.results = ResultsView(base_url=prefix, server_root=server_root)
        self.runner = AnalysisRunner(make_job=self._make_job, after=self._after)
        self.chooser.release = self._release
        title = widgets.HTML("<h2 style='margin:4px 0'>XPCS quick check</h2>")
        self.children = [
            widgets.HBox([title, self.device], layout=widgets.Layout(
                justify_content="space-between", align_items="center", width="100%")),
            _section("1. Data"), self.chooser,
            _section("2. Image and regions"), self.image,
            _section("3. Analysis"), self.runner,
            _section("4. Results"), self.results,
        ]
        self.chooser.observe(self._on_dataset, "dataset")
        self.image.observe(lambda _c: self.runner.regions_changed(), "regions_version")

    # ---------------------------------------------------------------- wiring
    def _on_dataset(self, change) -> None:
        self.runner.cancel()
        self.results.clear()
        self.image.set_dataset(change["new"], rings=self.chooser.hints.get("rings"))

    def _release(self, old) -> None:
        """Close a replaced dataset once nothing reads it any more."""
        def close():
            self.runner.wait(None)
            self.image.wait(None)
            old.close()

        threading.Thread(target=close, name="speckle-release", daemon=True).start()

    def _make_job(self) -> Job:
        ds = self.chooser.dataset
        if ds is None:
            raise InvalidInputError(
                "choose a dataset first: a beamline file, an upload or the demo data")
        overrides = self.runner.metadata_overrides()
        if overrides:
            ds.metadata = ds.metadata.updated(**overrides)
        return Job(ds, self.image.partition(), self.runner.options())

    def _after(self, result, job, step) -> None:
        if job.dataset is not self.chooser.dataset:
            raise Cancelled("another dataset was chosen meanwhile")
        pngs = self.results.show(result)
        self.image.set_mean_image(result.mean_image, "all frames")
        step(0.3, "writing files")
        try:
            files = write_result_folder(
                result, self.chooser.label or "dataset", root=self.results_dir, pngs=pngs,
                step=lambda fraction, stage: step(0.3 + 0.65 * fraction, stage))
        except Cancelled:
            self.results.downloads.value = ("<div style='color:#555'>Cancelled: no result files "
                                            "were written.</div>")
            raise
        except Exception as exc:  # noqa: BLE001 - the analysis itself succeeded
            self.results.show_error(describe_error(exc))
            return
        self.results.show_files(files)

    # ---------------------------------------------------------------- for scripts and tests
    def wait(self, timeout: float | None = 120) -> bool:
        """Wait until nothing runs in the background (opening, image, analysis)."""
        return (self.chooser.wait(timeout) and self.image.wait(timeout)
                and self.runner.wait(timeout))


def xpcs_dashboard(**kwargs) -> XpcsDashboard:
    """Return the XPCS quick-check dashboard (display it as a notebook cell's last value).

    Parameters
    ----------
    **kwargs
        Passed to :class:`XpcsDashboard`.

    Examples
    --------
    >>> from speckle.ui import xpcs_dashboard
    >>> xpcs_dashboard()  # doctest: +SKIP
    """
    return XpcsDashboard(**kwargs)
