"""An invisible widget that tells the kernel whenever a browser displays it.

A Voila page may be built long before anyone looks at it (a preheated kernel executes the
dashboard when the user server starts); what it computed then, such as a folder listing, can be
stale by the time the page is shown. :class:`ShownSignal` lets a component refresh at that moment.
"""

from __future__ import annotations

from collections.abc import Callable

import anywidget

__all__ = ["ShownSignal"]

_ESM = """
export default {
  render({ model, el }) {
    el.style.display = "none";
    model.send({ event: "shown" });
  },
};
"""


class ShownSignal(anywidget.AnyWidget):
    """Calls its callbacks (with no argument) each time a page renders it."""

    _esm = _ESM

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._callbacks: list[Callable[[], None]] = []
        self.on_msg(self._on_message)

    def on_shown(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever a browser displays this widget."""
        self._callbacks.append(callback)

    def _on_message(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("event") == "shown":
            for callback in self._callbacks:
                callback()
