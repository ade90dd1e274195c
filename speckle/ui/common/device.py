"""What computes: the GPU this server was given, or the CPU."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ... import backend
from ...site import site
from ._common import Tasks

__all__ = ["DeviceBadge", "device_text"]


def device_text(environ=None) -> str:
    """Describe where analyses run, e.g. ``"NVIDIA H100"`` or ``"CPU: this server has no GPU"``.

    The GPU the hub assigned (:mod:`speckle.site`) names the GPU when the library can use one;
    when it cannot (no cupy, no driver) the text says so.
    """
    assigned = site(environ).gpu_name
    if backend.gpu_available():
        return assigned or backend.device_description()
    if assigned:
        return f"CPU: the GPU {assigned} is assigned but not usable here (no CUDA/cupy)"
    return backend.device_description()


class DeviceBadge(widgets.HTML):
    """A small badge "computing on: …" (CSS class ``speckle-device``).

    The GPU probe may take a moment on a GPU machine, so it runs in the background; the
    badge shows the hub's ``SPECKLE_GPU_NAME`` (or "checking…") until it answers.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-device")
        self.text = ""
        self._tasks = Tasks("device")
        self._show(site().gpu_name or "checking…")
        self._tasks.start(device_text, self._show, lambda exc: self._show(
            f"CPU (the GPU check failed: {type(exc).__name__})"))

    def _show(self, text: str) -> None:
        self.text = text
        gpu = not text.startswith("CPU") and text != "checking…"
        colour = "#0b6e4f" if gpu else "#555"
        self.value = (f"<span style='border:1px solid {colour};color:{colour};border-radius:10px;"
                      f"padding:2px 10px;font-size:12px' title='where the analysis computes'>"
                      f"computing on: <b>{html.escape(text)}</b></span>")

    def wait(self, timeout: float | None = 30) -> bool:
        """Wait for the GPU probe (for tests)."""
        return self._tasks.wait(timeout)
