"""The XPCS quick check, composed: data, image and regions, Analyze, results."""

from __future__ import annotations

from ...errors import Cancelled, InvalidInputError
from ..common._common import describe_error, sub_progress
from ..common.base import Dashboard, section
from ..common.beamtime import (FolderTemplatePanel, PageQuery, apply_xpcs_recipe, dataset_folder,
                               read_monitor_result, rings_hint, xpcs_recipe_of)
from ..common.export import write_result_folder
from .image_view import ImageView
from .results import ResultsView
from .runner import AnalysisRunner, Job

__all__ = ["CANCELLED_NOTE", "XpcsDashboard", "xpcs_dashboard"]

#: Shown in place of the verdict when Cancel stopped an analysis whose plots were drawn.
CANCELLED_NOTE = ("The analysis was cancelled before its result files were written: nothing "
                  "was kept. Press Analyze to run it again.")


class XpcsDashboard(Dashboard):
    """The XPCS quick check as one widget.

    Parameters
    ----------
    data_dirs, upload_dir, results_dir, base_url, server_root : optional
        See :class:`~speckle.ui.common.base.Dashboard`.

    Attributes
    ----------
    chooser : DataChooser
    image : ImageView
    runner : AnalysisRunner
    results : ResultsView
    device : DeviceBadge
    folder_template : FolderTemplatePanel
        "Use for new files in this folder" (shown when the hub runs the beamtime monitor).
    page_query : PageQuery
        The page's query string: ``?result=`` opens a Beamtime result with its template.
    """

    def __init__(self, *, data_dirs=None, upload_dir=None, results_dir=None,
                 base_url: str | None = None, server_root=None, **kwargs):
        super().__init__(data_dirs=data_dirs, upload_dir=upload_dir, results_dir=results_dir,
                         base_url=base_url, server_root=server_root, demos=("xpcs",), **kwargs)
        self.add_class("speckle-xpcs")
        self.image = ImageView()
        self.results = ResultsView(base_url=self.base_url, server_root=server_root)
        self.runner = AnalysisRunner(make_job=self._make_job, after=self._after)
        self.folder_template = FolderTemplatePanel(self._folder_template)
        self.page_query = PageQuery()
        self._pending_recipe = None
        self.children = [
            self.header("XPCS quick check"),
            section("1. Data"), self.chooser,
            section("2. Image and regions"), self.image,
            section("3. Analysis"), self.runner, self.folder_template,
            section("4. Results"), self.results, self.page_query,
        ]
        self.page_query.observe(self._on_query, "query")
        self.results.on_exclude = self._exclude_and_analyse
        self.chooser.observe(self._on_dataset, "dataset")
        self.image.observe(lambda _c: self.runner.regions_changed(), "regions_version")

    # ---------------------------------------------------------------- wiring
    def _on_dataset(self, change) -> None:
        self.runner.cancel()
        self.results.clear()
        ds = change["new"]
        self.runner.exclude.value = ""  # frame numbers of another run
        self.runner.show_file_frame_time(ds.metadata.frame_time if ds is not None else None)
        self.image.set_dataset(ds, rings=self.chooser.hints.get("rings"))
        recipe, self._pending_recipe = self._pending_recipe, None
        if recipe is not None and ds is not None:
            try:
                apply_xpcs_recipe(recipe, self.image, self.runner, ds.frame_shape)
            except InvalidInputError as exc:
                self.chooser.message.error(exc, title="The folder's template:")
                return
            self.runner.run()

    # ---------------------------------------------------------------- the beamtime monitor
    def _on_query(self, change) -> None:
        """Opened from the Beamtime page (``?result=...``): its dataset, with the template's
        regions and options, analysed at once."""
        result = self.page_query.param("result")
        if not result:
            return
        try:
            path, template = read_monitor_result(result, data_roots=self.chooser.roots)
        except InvalidInputError as exc:
            self.chooser.message.error(exc, title="Cannot open the Beamtime result:")
            return
        self.open_with_recipe(path, template.xpcs)

    def open_with_recipe(self, path, recipe) -> None:
        """Open ``path`` and analyse it with ``recipe``'s regions and options."""
        self._pending_recipe = recipe
        self.chooser.open_path(path, metadata=recipe.metadata or None,
                               hints={"rings": rings_hint(recipe)} if rings_hint(recipe) else None)

    def _folder_template(self) -> tuple[str, dict]:
        """The folder of the current dataset and this page's settings as its template."""
        from ...monitor.templates import Template

        folder = dataset_folder(self.chooser)
        template = Template(kind="xpcs", xpcs=xpcs_recipe_of(self.image, self.runner))
        return folder, template.to_dict()

    def _exclude_and_analyse(self, frames) -> None:
        """The verdict's button: leave these frames out too, and analyse again."""
        self.runner.exclude_more(frames)
        self.runner.run()

    def _make_job(self) -> Job:
        ds = self.chooser.dataset
        if ds is None:
            raise InvalidInputError(
                "choose a dataset first: a beamline file, an upload or the demo data")
        return Job(ds, self.image.partition(), self.runner.options(),
                   self.runner.metadata_overrides())

    def _after(self, result, job, step) -> None:
        """Worker thread: show the result, then write its files and offer them."""
        if job.dataset is not self.chooser.dataset:
            raise Cancelled("another dataset was chosen meanwhile")
        try:
            pngs = self.results.show(result)
            self.image.set_mean_image(result.mean_image, "all frames")
            step(0.3, "writing files")
            try:
                files = write_result_folder(result, self.chooser.label or "dataset",
                                            root=self.results_dir, pngs=pngs,
                                            step=sub_progress(step, 0.3, 0.95))
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - the analysis itself succeeded
                self.results.show_error(describe_error(exc))
                return
            self.results.show_files(files)
        except BaseException as exc:
            # stopped with the plots drawn: they must not look like a finished analysis (and
            # after a change of data they belong to the previous dataset)
            same = job.dataset is self.chooser.dataset
            self.results.clear(CANCELLED_NOTE if same and isinstance(exc, Cancelled) else None)
            raise

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
