"""Helpers of the dashboard tests (tests/test_ui_*.py): file signatures, folders, the mouse."""

from __future__ import annotations

from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"
HDF5 = b"\x89HDF\r\n\x1a\n"


def visible(root: Path) -> list[Path]:
    """What a folder holds (hidden partial folders included), sorted; [] when it is missing."""
    return sorted(root.iterdir()) if root.exists() else []


def mouse(canvas, ax, kind: str, x: float, y: float, buttons: int) -> None:
    """A mouse event at data coordinates (x, y) of ``ax``, as the browser sends it to ipympl.

    ``kind`` is "button_press", "motion_notify" or "button_release"; ``buttons`` the pressed
    buttons' bit mask (1: the left one).
    """
    px, py = ax.transData.transform((x, y))
    height = canvas.get_renderer().height
    canvas._handle_message(canvas, {"type": kind, "x": px, "y": height - py, "button": 0,
                                    "buttons": buttons, "modifiers": []}, [])


def drag(canvas, ax, start: tuple[float, float], end: tuple[float, float],
         via: tuple[float, float] | None = None) -> None:
    """Press the left button at ``start``, move (through ``via``) to ``end`` and release."""
    mouse(canvas, ax, "button_press", *start, 1)
    for point in ([via] if via is not None else []) + [end]:
        mouse(canvas, ax, "motion_notify", *point, 1)
    mouse(canvas, ax, "button_release", *end, 0)
