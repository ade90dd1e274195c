"""Small pieces shared by the components: messages in the page, errors in words, threads."""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable

import ipywidgets as widgets

from ..errors import SpeckleError
from ..errors import Cancelled

__all__ = ["MessageBox", "Tasks", "describe_error", "styled"]

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
