"""Quantities with units at the edges of the library (command line, templates, dashboards).

Inside the library every quantity is SI (m, s, eV; q in 1/m). People type and read other units:
``2230mm``, ``108um``, ``1.3ms``, ``8keV``, ``0.0016/A``. :func:`parse_quantity` turns such text
(or a plain number, which is SI except q, which is 1/Å as in the field) into SI;
:func:`format_quantity` writes an SI value back in the unit a person expects, in a form
:func:`parse_quantity` reads again.
"""

from __future__ import annotations

import math
import re

from .errors import InvalidInputError

__all__ = ["NUMBER_WITH_UNIT", "format_quantity", "parse_frames", "parse_pair", "parse_quantity"]

#: A decimal number (exponent allowed) and the unit right after it: "778eV" is 778 eV, not 778e.
NUMBER_WITH_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*")

_UNITS = {
    "length": {"": 1.0, "m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "nm": 1e-9},
    "time": {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
    "energy": {"": 1.0, "ev": 1.0, "kev": 1e3},
    "q": {"": 1e10, "/a": 1e10, "1/a": 1e10, "/å": 1e10, "1/å": 1e10, "/nm": 1e9, "1/nm": 1e9,
          "/m": 1.0, "1/m": 1.0},
}

#: The unit :func:`format_quantity` writes, by kind: (unit text, its size in SI), largest first.
_DISPLAY = {
    "length": (("m", 1.0), ("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9)),
    "time": (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)),
    "energy": (("eV", 1.0),),
    "q": (("/A", 1e10),),
}


def parse_quantity(text, kind: str) -> float:
    """Parse ``"2230mm"``-style text (or a number) into SI units (q into 1/m).

    Parameters
    ----------
    text : str or float
        A number with an optional unit. Without a unit the value is SI, except q (1/Å).
    kind : {"length", "time", "energy", "q"}

    Returns
    -------
    float
        The positive value in SI units.

    Raises
    ------
    InvalidInputError
        For text that is no number, a unit that does not fit ``kind``, or a value that is not
        positive and finite.
    """
    if isinstance(text, bool):
        raise InvalidInputError(f"cannot read {text!r} as a {kind}")
    m = NUMBER_WITH_UNIT.fullmatch(str(text))
    units = _UNITS[kind]
    if not m or m.group(2).lower() not in units:
        raise InvalidInputError(
            f"cannot read {text!r} as a {kind}: give a number with one of the units "
            f"{', '.join(u for u in units if u) or 'none'}")
    try:
        value = float(m.group(1)) * units[m.group(2).lower()]
    except ValueError:
        raise InvalidInputError(f"cannot read {text!r} as a number") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{kind} {text!r} must be positive")
    return value


def format_quantity(value: float, kind: str) -> str:
    """Write an SI value in the unit a person reads best (``1.3e-3`` s -> ``"1.3ms"``).

    The text has 6 significant digits and :func:`parse_quantity` reads it back to within
    that precision.
    """
    for unit, size in _DISPLAY[kind]:
        if abs(value) >= size or size == _DISPLAY[kind][-1][1]:
            return f"{value / size:.6g}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def parse_pair(text, kind: str | None) -> tuple[float, float]:
    """Parse ``"a"`` or ``"a,b"`` (or a sequence of one or two values) into two values.

    Each is a quantity of ``kind`` (see :func:`parse_quantity`), or a plain number of pixels
    when ``kind`` is None.
    """
    parts = [str(v) for v in text] if isinstance(text, (list, tuple)) else str(text).split(",")
    if len(parts) not in (1, 2):
        raise InvalidInputError(f"cannot read {text!r}: give one value or two separated by a comma")
    if kind is None:
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise InvalidInputError(f"cannot read {text!r}: give ROW,COL in pixels") from None
    else:
        vals = [parse_quantity(p, kind) for p in parts]
    return (vals[0], vals[-1])


def parse_frames(text) -> list[int]:
    """Parse ``"3,10-20,55"`` (or a list of numbers) into frame numbers."""
    if isinstance(text, (list, tuple)):
        text = ",".join(str(v) for v in text)
    out = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InvalidInputError(
                f"cannot read the frame list {text!r}: write it like 3,10-20,55")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        out.extend(range(a, b + 1))
    return out
