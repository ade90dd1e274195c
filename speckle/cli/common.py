"""Helpers every ``speckle`` subcommand shares: quantities with units, pairs, frame lists."""

from __future__ import annotations

import math
import re

from ..errors import InvalidInputError

__all__ = ["NUMBER_WITH_UNIT", "parse_frames", "parse_pair", "parse_quantity"]

#: A decimal number (exponent allowed) and the unit right after it: "778eV" is 778 eV, not 778e.
NUMBER_WITH_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*")

_UNITS = {
    "length": {"": 1.0, "m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "nm": 1e-9},
    "time": {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
    "energy": {"": 1.0, "ev": 1.0, "kev": 1e3},
    "q": {"": 1e10, "/a": 1e10, "1/a": 1e10, "/å": 1e10, "1/å": 1e10, "/nm": 1e9, "1/nm": 1e9,
          "/m": 1.0, "1/m": 1.0},
}


def parse_quantity(text: str, kind: str) -> float:
    """Parse ``"2230mm"``-style text into SI units (q into 1/m).

    Parameters
    ----------
    text : str
    kind : {"length", "time", "energy", "q"}

    Returns
    -------
    float
    """
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


def parse_pair(text: str, kind: str | None) -> tuple[float, float]:
    """Parse ``"a"`` or ``"a,b"`` into two values (a quantity of ``kind``, or pixels when None)."""
    parts = str(text).split(",")
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


def parse_frames(text: str) -> list[int]:
    """Parse ``"3,10-20,55"`` into frame numbers."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InvalidInputError(
                f"cannot read the frame list {text!r}: write it like 3,10-20,55")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        out.extend(range(a, b + 1))
    return out
