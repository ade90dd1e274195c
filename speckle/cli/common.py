"""Helpers the ``speckle`` subcommands share: quantities with units, pairs, frame lists, outputs."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path

from ..errors import InvalidInputError
from ..units import NUMBER_WITH_UNIT, parse_frames, parse_pair, parse_quantity

__all__ = ["NUMBER_WITH_UNIT", "check_outputs", "emit_summary", "finite_or_none", "parse_frames",
           "parse_pair", "parse_quantity", "write_image_outputs"]


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
        import tempfile  # noqa: PLC0415 - 4 ms of every command's start otherwise

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
