"""Small pieces shared by the components: messages in the page, errors in words, threads, and
the run panel (Run / Cancel, progress, stage, message) every dashboard runs its work with."""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable

import ipywidgets as widgets
import traitlets

from ...errors import Cancelled, SpeckleError

__all__ = ["RUN_STATES", "MessageBox", "RunPanel", "RunPanelOwner", "Tasks", "delegated",
           "describe_error", "note_html", "styled", "sub_progress"]

#: Values of :attr:`RunPanel.state`.
RUN_STATES = ("idle", "running", "done", "cancelled", "failed")

log = logging.getLogger("speckle.ui")

_COLOURS = {
    "error": ("#b00020", "#fdecee"),
    "info": ("#1f3a5f", "#eef3fa"),
    "warning": ("#7a4b00", "#fff6e0"),
}


def styled(widget, *classes: str):
    """Add CSS classes to a widget and return it (``widget.add_class`` for several)."""
    for name in classes:
        widget.add_class(name)
    return widget


def delegated(holder: str, name: str) -> property:
    """A read-only property that gives ``self.<holder>.<name>`` (a widget's controller's state,
    a view's editor's controls)."""
    return property(lambda self: getattr(getattr(self, holder), name),
                    doc=f"``{holder}.{name}``.")


def describe_error(exc: BaseException) -> str:
    """Turn an exception into one paragraph a beamline user can act on.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
        The message of speckle's own errors (they say what to do); plain words for file
        system errors and lack of memory; for anything else the exception type and message
        with a request to report it (the traceback goes to the server log).
    """
    if isinstance(exc, Cancelled):
        return "Cancelled."
    if isinstance(exc, SpeckleError):
        return " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        return ("Not enough memory for this: choose fewer frames or smaller regions, or ask "
                "for a server with more memory.")
    if isinstance(exc, PermissionError):
        where = f": {exc.filename}" if exc.filename else ""
        return (f"Permission denied{where} — you may not read this; ask the beamline staff, "
                "or copy the file somewhere you can read it.")
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc) or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        return (f"The file system refused: {what}{where} — check that the file still exists, "
                "that the disk is mounted and not full, and try again.")
    log.error("unexpected error in a speckle dashboard", exc_info=exc)
    text = " ".join(str(exc).split()) or "(no message)"
    return (f"Unexpected error ({type(exc).__name__}: {text}). This is a bug in speckle, not "
            "in your data: please report it with the dataset name and the time "
            f"({time.strftime('%Y-%m-%d %H:%M:%S')}); the details are in the server log.")


def note_html(text: str) -> str:
    """A quiet grey note (plain text, escaped) for a section of the page."""
    return f"<div style='color:#555'>{html.escape(text)}</div>"


class MessageBox(widgets.HTML):
    """A coloured message in the page, hidden while empty.

    Errors carry the CSS class ``speckle-error``; other kinds ``speckle-message``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.layout.display = "none"
        self.text = ""
        self.kind = ""

    def show(self, text: str, kind: str = "error", *, title: str | None = None) -> None:
        """Show ``text`` (plain text, escaped) as ``kind`` ("error", "warning" or "info")."""
        fg, bg = _COLOURS[kind]
        self.text, self.kind = text, kind
        for name in ("speckle-error", "speckle-message"):
            self.remove_class(name)
        self.add_class("speckle-error" if kind == "error" else "speckle-message")
        head = f"<b>{html.escape(title)}</b> " if title else ""
        self.value = (f'<div style="color:{fg};background:{bg};border-left:4px solid {fg};'
                      f'padding:6px 10px;margin:4px 0;white-space:normal">'
                      f"{head}{html.escape(text)}</div>")
        self.layout.display = None

    def error(self, exc_or_text, *, title: str | None = None) -> None:
        """Show an exception (described with :func:`describe_error`) or a text as an error."""
        text = exc_or_text if isinstance(exc_or_text, str) else describe_error(exc_or_text)
        self.show(text, "error", title=title)

    def clear(self) -> None:
        """Hide the message."""
        self.text, self.kind = "", ""
        self.value = ""
        for name in ("speckle-error", "speckle-message"):
            self.remove_class(name)
        self.layout.display = "none"


class Tasks:
    """Run functions in background threads; a newer task makes older ones stale.

    ``start(fn, on_done, on_error)`` runs ``fn()`` in a daemon thread, then ``on_done(value)``
    or ``on_error(exc)`` in that thread, but only while no newer task was started (a stale
    task's value is passed to ``on_stale`` instead, to release it). Errors raised by the
    callbacks themselves are logged and passed to ``on_error``.
    """

    def __init__(self, name: str):
        self._name = name
        self._lock = threading.Lock()
        self._generation = 0
        self._threads: list[threading.Thread] = []

    def start(self, fn: Callable, on_done: Callable, on_error: Callable,
              on_stale: Callable | None = None) -> threading.Thread:
        """Start ``fn`` in a new thread and return the thread."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._threads = [t for t in self._threads if t.is_alive()]

        def current() -> bool:
            with self._lock:
                return generation == self._generation

        def body():
            try:
                value = fn()
            except BaseException as exc:  # noqa: BLE001 - reported in the page
                if current():
                    self._safe(on_error, exc, on_error)
                return
            if current():
                self._safe(on_done, value, on_error)
            elif on_stale is not None:
                self._safe(on_stale, value, None)

        thread = threading.Thread(target=body, name=f"speckle-{self._name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    @staticmethod
    def _safe(callback, value, on_error) -> None:
        try:
            callback(value)
        except BaseException as exc:  # noqa: BLE001
            log.exception("error in a speckle dashboard callback")
            if on_error is not None:
                try:
                    on_error(exc)
                except BaseException:  # noqa: BLE001
                    log.exception("error while reporting an error")

    def invalidate(self) -> None:
        """Make every running task stale."""
        with self._lock:
            self._generation += 1

    @property
    def busy(self) -> bool:
        """True while a task's thread is alive."""
        with self._lock:
            return any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every started task; return True when none is left running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            alive[0].join(remaining)


def sub_progress(progress: Callable, start: float, stop: float, cancel: Callable | None = None,
                 message: str = "cancelled") -> Callable:
    """``progress(fraction, stage)`` of one part of a run, mapped to ``start..stop`` of the whole.

    Parameters
    ----------
    progress : callable
        The whole run's ``progress(fraction, stage)``.
    start, stop : float
        The part's share of the whole (0..1).
    cancel : callable, optional
        With it, each report first raises :class:`~speckle.errors.Cancelled` (``message``)
        when ``cancel()`` is true: the steps after a cancellable computation (plots, files)
        stop there.

    Returns
    -------
    callable
        ``report(fraction, stage)`` with ``fraction`` in 0..1 of the part.
    """
    def report(fraction: float, stage: str) -> None:
        if cancel is not None and cancel():
            raise Cancelled(message)
        progress(start + (stop - start) * float(fraction), stage)

    return report


class RunPanel(widgets.VBox):
    """Run and Cancel buttons, a progress bar with the stage beside it, and a message under them.

    The one way the dashboards run long work without freezing the page. :meth:`run` (the Run
    button's action, wired by the owner) calls ``prepare()`` on the widget thread: it checks
    the page and returns ``work``, or raises with what the user must do first (a red message,
    "did not run"). :meth:`start` runs ``work(progress, cancel)`` in a worker thread and returns
    at once: ``progress(fraction, stage)`` moves the bar (a new stage shows at once, the same
    stage's per cent at most ten times a second), ``cancel()`` is true once Cancel was pressed
    (the work stops and raises :class:`~speckle.errors.Cancelled`). The outcome is shown in the
    page: "done in … s", "cancelled", or a red message with what to do ("failed").

    Parameters
    ----------
    label : str
        The Run button's text ("Analyze", "Refocus", "Run"); messages refer to it.
    what : str
        What runs, for messages ("The analysis" failed / did not run).
    prefix : str
        The owner's CSS prefix: the parts carry ``{prefix}-run``, ``{prefix}-cancel``,
        ``{prefix}-progress`` and ``{prefix}-stage``.
    run_class : str, optional
        The Run button's class instead of ``{prefix}-run``.
    retry_hint : str
        Added to the message of a failure during the run (what to change before trying again).
    describe : callable, optional
        ``describe(exc) -> str``, the failure in words (default :func:`describe_error`).
    name : str
        Name of the worker threads (``speckle-<name>``).
    progress_width : str
        CSS width of the progress bar.

    Attributes
    ----------
    state : str
        One of :data:`RUN_STATES` (a trait).
    error : str
        The last failure in words ("" when none).

    Notes
    -----
    CSS classes: ``speckle-run-panel`` (the whole), ``speckle-run-button``,
    ``speckle-run-cancel``, ``speckle-run-progress``, ``speckle-run-stage`` (the same on every
    dashboard), plus the owner's (see ``prefix``); the message carries ``speckle-error`` or
    ``speckle-message``.
    """

    state = traitlets.Unicode("idle")

    def __init__(self, *, label: str = "Run", what: str = "The run", prefix: str = "speckle",
                 run_class: str | None = None, retry_hint: str = "",
                 describe: Callable[[BaseException], str] | None = None, name: str = "run",
                 progress_width: str = "320px", **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-run-panel")
        self.label, self.what, self.retry_hint = label, what, retry_hint
        self.describe = describe or describe_error
        self.error = ""
        self._name = name
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._next: Callable | None = None
        self._last = (0.0, "")

        self.run_button = styled(widgets.Button(description=label, icon="play",
                                                button_style="success"),
                                 "speckle-run-button", run_class or f"{prefix}-run")
        self.cancel_button = styled(widgets.Button(description="Cancel", icon="stop",
                                                   button_style="warning", disabled=True),
                                    "speckle-run-cancel", f"{prefix}-cancel")
        self.progress = styled(widgets.FloatProgress(value=0.0, min=0.0, max=1.0,
                                                     layout=widgets.Layout(width=progress_width)),
                               "speckle-run-progress", f"{prefix}-progress")
        self.stage = styled(widgets.HTML(""), "speckle-run-stage", f"{prefix}-stage")
        self.message = MessageBox()
        self.children = [
            widgets.HBox([self.run_button, self.cancel_button, self.progress, self.stage],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
            self.message,
        ]
        self.cancel_button.on_click(lambda _b: self.cancel())

    # ---------------------------------------------------------------- running
    @property
    def running(self) -> bool:
        """True while a worker thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def run(self, prepare: Callable[[], Callable], *, replace: bool = False
            ) -> threading.Thread | None:
        """Prepare a run on this thread and start it; return its thread (None if refused).

        Parameters
        ----------
        prepare : callable
            ``prepare() -> work``; raises with what the user must do first.
        replace : bool
            While a run goes on: False leaves it alone (and returns its thread); True cancels
            it and prepares and starts this one as soon as it has stopped.
        """
        with self._lock:
            if self.running:
                if replace:
                    self._next = prepare
                    self._cancel.set()
                    self.stage.value = "cancelling…"
                return self._thread
        try:
            work = prepare()
        except Exception as exc:  # noqa: BLE001 - shown in the page
            self.fail(exc, started=False)
            return None
        return self.start(work)

    def start(self, work: Callable[[Callable, Callable], object]) -> threading.Thread:
        """Run ``work(progress, cancel)`` in a worker thread and return at once."""
        with self._lock:
            cancel = threading.Event()
            self._cancel, self._next = cancel, None
            self._last = (0.0, "")
            self.message.clear()
            self.error = ""
            self.progress.value = 0.0
            self.progress.bar_style = "info"
            self.stage.value = "starting…"
            self.run_button.disabled = True
            self.cancel_button.disabled = False
            self.state = "running"
            thread = threading.Thread(target=self._body, args=(work, cancel),
                                      name=f"speckle-{self._name}", daemon=True)
            self._thread = thread
        thread.start()
        return thread

    def cancel(self) -> None:
        """Ask the running work to stop (it stops at its next check); a queued run is dropped."""
        with self._lock:
            self._next = None
            if self.running and not self._cancel.is_set():
                self._cancel.set()
                self.cancel_button.disabled = True
                self.stage.value = "cancelling…"

    def wait(self, timeout: float | None = 120) -> bool:
        """Wait for the running work (and a queued run); True when nothing is left running."""
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

    def fail(self, exc_or_text, *, started: bool) -> None:
        """Show a failure in red with what to do.

        Parameters
        ----------
        exc_or_text : BaseException or str
        started : bool
            False: the run was refused before it started (state "failed", the bar untouched).
        """
        text = exc_or_text if isinstance(exc_or_text, str) else self.describe(exc_or_text)
        text = text.strip()
        if not text.endswith((".", "!", "?")):
            text += "."
        self.error = text
        log.info("%s failed: %s", self.what, text)
        hint = self.retry_hint if started else f"Fix this and press {self.label} again."
        self.message.show(f"{text} {hint}".strip(), "error",
                          title=f"{self.what} failed:" if started else f"{self.what} did not run:")
        if started:
            self.progress.bar_style = "danger"
            self.stage.value = "failed"
        else:
            self.state = "failed"

    def reset(self) -> None:
        """Clear the message, and the bar and stage unless a run goes on (new data)."""
        self.message.clear()
        if not self.running:
            self.progress.value = 0.0
            self.progress.bar_style = ""
            self.stage.value = ""

    # ---------------------------------------------------------------- the worker
    def _report(self, fraction: float, stage: str, cancel: threading.Event) -> None:
        now = time.monotonic()
        last_time, last_stage = self._last
        if stage == last_stage and now - last_time < 0.1:
            return  # at most ten updates a second of one stage reach the browser
        self._last = (now, stage)
        fraction = max(0.0, min(1.0, float(fraction)))
        self.progress.value = fraction
        if not cancel.is_set():  # "cancelling…" stays until the work has stopped
            self.stage.value = f"{html.escape(stage)} {100 * fraction:.0f}%"

    def _body(self, work: Callable, cancel: threading.Event) -> None:
        t0 = time.perf_counter()
        try:
            work(lambda fraction, stage: self._report(fraction, stage, cancel), cancel.is_set)
        except BaseException as exc:  # noqa: BLE001 - every failure is shown in the page
            # after a cancel, any error (e.g. the dataset closed under the run) is the cancel
            if isinstance(exc, Cancelled) or cancel.is_set():
                self.progress.bar_style = "warning"
                self.stage.value = "cancelled"
                self._end("cancelled")
            else:
                self.fail(exc, started=True)
                self._end("failed")
        else:
            self.progress.value = 1.0
            self.progress.bar_style = "success"
            self.stage.value = f"done in {time.perf_counter() - t0:.1f} s"
            self._end("done")

    def _end(self, state: str) -> None:
        self.run_button.disabled = False
        self.cancel_button.disabled = True
        with self._lock:
            prepare, self._next = self._next, None
        if prepare is None:
            self.state = state
            return
        try:
            work = prepare()
        except Exception as exc:  # noqa: BLE001 - shown in the page
            self.state = state
            self.fail(exc, started=False)
            return
        self.start(work)


class RunPanelOwner:
    """For a widget that runs its work with a :class:`RunPanel`: the panel's parts and outcome.

    Call :meth:`_own` with the panel in ``__init__``: the owner's ``state`` trait follows the
    panel's, and ``run_button``, ``cancel_button``, ``progress`` and ``stage`` are the panel's.
    """

    def _own(self, panel: RunPanel) -> RunPanel:
        self.run_panel = panel
        traitlets.dlink((panel, "state"), (self, "state"))
        self.run_button, self.cancel_button = panel.run_button, panel.cancel_button
        self.progress, self.stage = panel.progress, panel.stage
        return panel

    @property
    def error(self) -> str:
        """The last failure in words ("" when none)."""
        return self.run_panel.error

    @property
    def running(self) -> bool:
        """True while the work's thread is alive."""
        return self.run_panel.running

    def cancel(self) -> None:
        """Ask the running work to stop at its next check (nothing is written)."""
        self.run_panel.cancel()
