"""Running the XPCS analysis without freezing the page.

:class:`AnalysisRunner` runs :func:`speckle.xpcs.analysis.analyze` in a worker thread. The
widget thread only starts it and returns: the progress bar follows the analysis' progress
callback, Cancel sets a :class:`threading.Event` that the analysis polls between chunks, and any
failure becomes a red message in the page. With "re-analyse when the regions change" ticked, a
change of regions cancels a running analysis and starts a new one.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as widgets
import traitlets

from ..errors import InvalidInputError
from ..xpcs.analysis import XpcsOptions, analyze
from ..errors import Cancelled
from ._common import MessageBox, describe_error, log, styled

__all__ = ["AnalysisRunner", "Job", "RUN_STATES"]

#: Values of :attr:`AnalysisRunner.state`.
RUN_STATES = ("idle", "running", "done", "cancelled", "failed")


@dataclass
class Job:
    """What one analysis needs: the dataset, the partition and the options."""

    dataset: object
    partition: object
    options: XpcsOptions


class AnalysisRunner(widgets.VBox):
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

    Notes
    -----
    CSS classes: ``speckle-runner``, ``speckle-analyze`` (the button), ``speckle-cancel``,
    ``speckle-auto`` (the re-analyse checkbox), ``speckle-progress`` (the bar),
    ``speckle-stage`` (the text beside it), ``speckle-error``.
    """

    state = traitlets.Unicode("idle")

    def __init__(self, make_job: Callable | None = None, after: Callable | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-runner")
        self.make_job = make_job
        self.after = after
        self.result = None
        self.error = ""
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rerun = False
        self._last_report = 0.0

        self.analyze_button = styled(widgets.Button(description="Analyze", icon="play",
                                                    button_style="success"),
                                     "speckle-analyze")
        self.cancel_button = styled(widgets.Button(description="Cancel", icon="stop",
                                                   button_style="warning", disabled=True),
                                    "speckle-cancel")
        self.auto = styled(widgets.Checkbox(value=False, indent=False,
                                            description="re-analyse when the regions change"),
                           "speckle-auto")
        self.progress = styled(widgets.FloatProgress(value=0.0, min=0.0, max=1.0,
                                                     layout=widgets.Layout(width="320px")),
                               "speckle-progress")
        self.stage = styled(widgets.HTML(""), "speckle-stage")
        self.model = widgets.Dropdown(options=[("single exponential", "single"),
                                               ("stretched exponential", "stretched"),
                                               ("double exponential", "double")],
                                      value="single", description="fit model",
                                      layout=widgets.Layout(width="300px"))
        self.normalize = widgets.Checkbox(value=False, indent=False,
                                          description="normalise each frame by its mean")
        self.twotime = widgets.Checkbox(value=True, indent=False,
                                        description="two-time maps")
        self.frame_time_ms = widgets.FloatText(
            value=0.0, description="frame time (ms)", style={"description_width": "110px"},
            tooltip="0 = as in the file (unknown: lags are shown in frames)",
            layout=widgets.Layout(width="230px"))
        self.message = MessageBox()
        self.children = [
            widgets.HBox([self.analyze_button, self.cancel_button, self.progress, self.stage],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
            widgets.HBox([self.auto, self.model, self.frame_time_ms],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
            widgets.HBox([self.normalize, self.twotime]),
            self.message,
        ]
        self.analyze_button.on_click(lambda _b: self.run())
        self.cancel_button.on_click(lambda _b: self.cancel())

    # ---------------------------------------------------------------- options
    def options(self) -> XpcsOptions:
        """The analysis options chosen in the page."""
        return XpcsOptions(fit_model=self.model.value, normalize_frames=self.normalize.value,
                           twotime=self.twotime.value)

    def metadata_overrides(self) -> dict:
        """Metadata the user typed (SI units): the frame time when one was given."""
        ms = self.frame_time_ms.value
        if ms is None or ms == 0:
            return {}
        if not ms > 0:
            raise InvalidInputError(f"the frame time must be positive, got {ms} ms")
        return {"frame_time": ms * 1e-3}

    # ---------------------------------------------------------------- running
    @property
    def running(self) -> bool:
        """True while an analysis thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def run(self) -> threading.Thread | None:
        """Start an analysis in a worker thread and return at once (the Analyze button).

        A run already going on is cancelled first and replaced by the new one.
        """
        with self._lock:
            if self.running:
                self._rerun = True
                self._cancel.set()
                return self._thread
        try:
            if self.make_job is None:
                raise InvalidInputError("nothing to analyse: choose a dataset first")
            job = self.make_job()
        except Exception as exc:  # noqa: BLE001 - shown in the page
            self._fail(describe_error(exc), started=False)
            return None
        return self._start(job)

    def regions_changed(self) -> None:
        """Re-run when automatic re-analysis is on (called by the dashboard)."""
        if self.auto.value:
            self.run()

    def cancel(self) -> None:
        """Ask the running analysis to stop (it stops at its next chunk of frames)."""
        with self._lock:
            self._rerun = False
            if self.running:
                self._cancel.set()
                self.stage.value = "cancelling…"

    def wait(self, timeout: float | None = 120) -> bool:
        """Wait for the running analysis (and a queued re-run); True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            thread = self._thread
            if thread is None or not thread.is_alive():
                if self._thread is thread:
                    return True
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            thread.join(remaining)

    def _start(self, job: Job) -> threading.Thread:
        with self._lock:
            self._cancel = threading.Event()
            self._rerun = False
            cancel = self._cancel
            self.message.clear()
            self.error = ""
            self.progress.value = 0.0
            self.progress.bar_style = "info"
            self.stage.value = "starting…"
            self.analyze_button.disabled = True
            self.cancel_button.disabled = False
            self.state = "running"
            thread = threading.Thread(target=self._work, args=(job, cancel),
                                      name="speckle-analysis", daemon=True)
            self._thread = thread
        thread.start()
        return thread

    def _report(self, fraction: float, stage: str, force: bool = False,
                percent: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < 0.1:
            return  # at most ten updates a second reach the browser
        self._last_report = now
        self.progress.value = max(0.0, min(1.0, float(fraction)))
        self.stage.value = html.escape(stage) + (f" {100 * fraction:.0f}%" if percent else "")

    def _work(self, job: Job, cancel: threading.Event) -> None:
        t0 = time.perf_counter()
        try:
            result = analyze(job.dataset, job.partition, job.options,
                             progress=lambda f, s: self._report(0.85 * f, s),
                             cancel=cancel.is_set)

            def step(fraction, stage):
                if cancel.is_set():
                    raise Cancelled("the analysis was cancelled")
                self._report(0.85 + 0.15 * fraction, stage, force=True)

            step(0.0, "plotting")
            if self.after is not None:
                self.after(result, job, step)
            step(1.0, "done")
        except Cancelled:
            self._finish_cancelled()
        except BaseException as exc:  # noqa: BLE001 - every failure is shown in the page
            if cancel.is_set():
                self._finish_cancelled()  # e.g. the dataset was closed under a cancelled run
            else:
                self._fail(describe_error(exc), started=True)
        else:
            self.result = result
            self._report(1.0, f"done in {time.perf_counter() - t0:.1f} s", force=True,
                         percent=False)
            self.progress.bar_style = "success"
            self._idle("done")

    def _idle(self, state: str) -> None:
        self.analyze_button.disabled = False
        self.cancel_button.disabled = True
        with self._lock:
            rerun = self._rerun and self.make_job is not None
            self._rerun = False
        if rerun:
            try:
                job = self.make_job()
            except Exception as exc:  # noqa: BLE001
                self.state = state
                self._fail(describe_error(exc), started=False)
                return
            self._start(job)
            return
        self.state = state

    def _finish_cancelled(self) -> None:
        self.progress.bar_style = "warning"
        self.stage.value = "cancelled"
        self._idle("cancelled")

    def _fail(self, text: str, *, started: bool) -> None:
        self.error = text
        log.info("analysis failed: %s", text)
        self.message.show(text + (" Fix this and press Analyze again." if not started else ""),
                          "error", title="The analysis did not run:" if not started
                          else "The analysis failed:")
        if started:
            self.progress.bar_style = "danger"
            self.stage.value = "failed"
            self._idle("failed")
        else:
            self.state = "failed"
