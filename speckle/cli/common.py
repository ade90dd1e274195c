"""Helpers the ``speckle`` subcommands share: quantities with units, pairs, frame lists, outputs."""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
import tempfile
from pathlib import Path

from ..errors import InvalidInputError

__all__ = ["NUMBER_WITH_UNIT", "check_outputs", "emit_summary", "finite_or_none", "parse_frames",
           "parse_pair", "parse_quantity", "write_image_outputs"]

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


def _missing_folders(folder: Path) -> list[Path]:
    """The folders of ``folder`` (itself and its parents) that do not exist yet, deepest last."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _remove_folders(folders) -> None:
    """Remove ``folders`` (deepest first) if they are empty; never raises."""
    for folder in reversed(list(folders)):
        try:
            folder.rmdir()
        except OSError:
            pass


def check_outputs(args) -> tuple[Path, Path | None]:
    """Check ``args.out`` and ``args.png_dir`` before any work (nothing is written on bad input).

    The PNG folder is created and a file written in it to prove it writable; both are removed
    again, so a run refused later leaves nothing.

    Returns
    -------
    out : Path
    png_dir : Path or None
    """
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InvalidInputError(f"the output folder {out.parent} does not exist; create it or "
                                "choose another --out")
    if out.is_dir():
        raise InvalidInputError(f"--out {out} is a folder; give a file name")
    png = Path(args.png_dir) if args.png_dir else None
    if png is not None:
        if png.exists() and not png.is_dir():
            raise InvalidInputError(f"--png-dir {png} exists and is not a folder")
        created = _missing_folders(png)
        try:
            png.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=png):
                pass
        except OSError as exc:
            raise InvalidInputError(f"cannot write pictures into --png-dir {png} "
                                    f"({exc.strerror or exc}); choose a writable folder"
                                    ) from None
        finally:
            _remove_folders(created)
    return out, png


def write_image_outputs(out: Path, arrays, attrs, png: Path | None, figures: dict) -> list[str]:
    """Write the figures as PNG (each atomically), then the HDF5 image result; return the PNGs.

    The HDF5 file comes last, so that its presence means the whole result is there; on any
    failure the PNGs and folders this call wrote are removed and the error propagates.
    """
    from ..io.images import write_image_result
    from ..plots import save_png

    written: list[Path] = []
    created = _missing_folders(png) if png is not None else []
    try:
        if png is not None:
            png.mkdir(parents=True, exist_ok=True)
            for name, fig in figures.items():
                path = png / f"{name}.png"
                save_png(fig, path)
                written.append(path)
        write_image_result(out, arrays, attrs)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        _remove_folders(created)
        raise
    return [str(p) for p in written]


def emit_summary(summary: dict, as_json: bool, human) -> None:
    """Print ``summary`` as one JSON document, or the ``human`` lines."""
    if as_json:
        json.dump(summary, sys.stdout, indent=2, allow_nan=False)
        print()
    else:
        for line in human:
            print(line)


def finite_or_none(value):
    """``value`` when it is a finite number, else None (strict JSON has no NaN)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
