"""Running the XPCS analysis without freezing the page.

:class:`AnalysisRunner` runs :func:`speckle.xpcs.analysis.analyze` with the dashboards' shared
:class:`~speckle.ui.common._common.RunPanel`: the widget thread only starts it and returns, the
progress bar follows the analysis' progress callback, Cancel sets an event that the analysis
polls between chunks, and any failure becomes a red message in the page. With "re-analyse when
the regions change" ticked, a change of regions cancels a running analysis and starts a new one.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import ipywidgets as widgets
import traitlets

from ...errors import InvalidInputError
from ...units import parse_frames
from ...xpcs.analysis import XpcsOptions, analyze
from ...xpcs.outliers import format_frames
from ..common._common import RUN_STATES, RunPanel, RunPanelOwner, styled, sub_progress

__all__ = ["AnalysisRunner", "Job", "RUN_STATES"]


@dataclass
class Job:
    """What one analysis needs: the dataset, the partition, the options, and the acquisition
    values typed in the page (SI units; they apply to this run only, the dataset keeps the
    file's)."""

    dataset: object
    partition: object
    options: XpcsOptions
    metadata: dict = field(default_factory=dict)

    def frames(self):
        """The dataset as this run sees it: with the typed metadata, if any."""
        return self.dataset.with_metadata(**(self.metadata or {}))


class AnalysisRunner(RunPanelOwner, widgets.VBox):
    """Analyze button, progress bar, Cancel button and the analysis options.

    Parameters
    ----------
    make_job : callable, optional
        Called on the widget thread when a run starts; returns a :class:`Job` or raises
        :class:`~speckle.errors.InvalidInputError` with what the user must do first. The
        options come from :meth:`options` (the dashboard passes them on).
    after : callable, optional
        ``after(result, job, step)`` runs in the worker once the analysis succeeded (plots,
        files); ``step(fraction, stage)`` reports progress and raises ``Cancelled`` when the
        user cancelled.

    Attributes
    ----------
    state : str
        One of :data:`RUN_STATES` (a trait).
    result : XpcsResult or None
        The last successful result.
    error : str
        The last failure, in words ("" when none).
    run_panel : RunPanel
        The buttons, bar, stage and message.

    Notes
    -----
    CSS classes: ``speckle-runner``, ``speckle-analyze`` (the button), ``speckle-cancel``,
    ``speckle-auto`` (the re-analyse checkbox), ``speckle-progress`` (the bar),
    ``speckle-stage`` (the text beside it), ``speckle-error``; and the run panel's
    (``speckle-run-panel``...).
    """

    state = traitlets.Unicode("idle")

    def __init__(self, make_job: Callable | None = None, after: Callable | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-runner")
        self.make_job = make_job
        self.after = after
        self.result = None
        self._own(RunPanel(label="Analyze", what="The analysis", prefix="speckle",
                           run_class="speckle-analyze", name="analysis"))
        self.analyze_button = self.run_button
        self.message = self.run_panel.message
        self.auto = styled(widgets.Checkbox(value=False, indent=False,
                                            description="re-analyse when the regions change"),
                           "speckle-auto")
        self.model = widgets.Dropdown(options=[("single exponential", "single"),
                                               ("stretched exponential", "stretched"),
                                               ("double exponential", "double")],
                                      value="single", description="fit model",
                                      layout=widgets.Layout(width="300px"))
        self.normalize = widgets.Checkbox(value=False, indent=False,
                                          description="normalise each frame by its mean")
        self.twotime = widgets.Checkbox(value=True, indent=False,
                                        description="two-time maps")
        self.frame_time_ms = styled(widgets.FloatText(
            value=0.0, description="frame time (ms)", style={"description_width": "110px"},
            layout=widgets.Layout(width="230px")), "speckle-frame-time")
        self.frame_time_note = styled(widgets.HTML(), "speckle-frame-time-note")
        self.exclude = styled(widgets.Text(
            value="", placeholder="e.g. 3,10-20", description="exclude frames",
            style={"description_width": "110px"}, layout=widgets.Layout(width="300px")),
            "speckle-exclude-frames")
        self.children = [
            self.run_panel,
            widgets.HBox([self.auto, self.model],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
            widgets.HBox([self.frame_time_ms, self.frame_time_note],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
            widgets.HBox([self.exclude, self.normalize, self.twotime],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
        ]
        self.show_file_frame_time(None)
        self.analyze_button.on_click(lambda _b: self.run())

    # ---------------------------------------------------------------- options
    def options(self) -> XpcsOptions:
        """The analysis options chosen in the page.

        Raises
        ------
        InvalidInputError
            When the excluded frames cannot be read.
        """
        return XpcsOptions(fit_model=self.model.value, normalize_frames=self.normalize.value,
                           twotime=self.twotime.value,
                           exclude_frames=tuple(parse_frames(self.exclude.value)))

    def show_file_frame_time(self, seconds: float | None) -> None:
        """Say beside the frame-time field what the file gives, and what 0 means."""
        given = (f"{seconds * 1e3:.5g} ms" if seconds else
                 "the file gives none, lags are in frames")
        self.frame_time_note.value = (f"<span style='color:#555'>0 = as in the file: "
                                      f"{html.escape(given)}</span>")

    def exclude_more(self, frames) -> None:
        """Add frames to the excluded ones (the verdict's "exclude and analyse again")."""
        self.exclude.value = format_frames(set(parse_frames(self.exclude.value)) | set(frames))

    def metadata_overrides(self) -> dict:
        """Metadata the user typed (SI units): the frame time when one was given."""
        ms = self.frame_time_ms.value
        if ms is None or ms == 0:
            return {}
        if not ms > 0:
            raise InvalidInputError(f"the frame time must be positive, got {ms} ms")
        return {"frame_time": ms * 1e-3}

    # ---------------------------------------------------------------- running
    def run(self) -> threading.Thread | None:
        """Start an analysis in a worker thread and return at once (the Analyze button).

        A run already going on is cancelled first and replaced by the new one.
        """
        return self.run_panel.run(self._prepare, replace=True)

    def regions_changed(self) -> None:
        """Re-run when automatic re-analysis is on (called by the dashboard)."""
        if self.auto.value:
            self.run()

    def wait(self, timeout: float | None = 120) -> bool:
        """Wait for the running analysis (and a queued re-run); True when none is left."""
        return self.run_panel.wait(timeout)

    def _prepare(self) -> Callable:
        if self.make_job is None:
            raise InvalidInputError("nothing to analyse: choose a dataset first")
        job = self.make_job()
        return lambda progress, cancel: self._work(job, progress, cancel)

    def _work(self, job: Job, progress: Callable, cancel: Callable) -> None:
        result = analyze(job.frames(), job.partition, job.options,
                         progress=sub_progress(progress, 0.0, 0.85), cancel=cancel)
        step = sub_progress(progress, 0.85, 1.0, cancel, "the analysis was cancelled")
        step(0.0, "plotting")
        if self.after is not None:
            self.after(result, job, step)
        self.result = result  # once the files are written a late Cancel changes nothing
