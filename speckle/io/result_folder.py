"""The XPCS result folder: HDF5, CSV and PNG files a person downloads, whole or not at all.

Each analysis gets its own folder ``<root>/<dataset>-<YYYYmmdd-HHMMSS>/`` (or a name the caller
gives), written under a hidden temporary name and renamed when complete: a folder that is
visible is whole, and a cancelled or failed export leaves nothing behind. The dashboards and
the beamtime monitor write the same layout.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .aps_result import write_aps_result
from .atomic import atomic_path
from .tables import write_fits_csv, write_g2_csv

__all__ = ["ResultFiles", "new_result_folder", "result_folder_name", "save_twotime_png",
           "twotime_png_name", "write_result_folder"]


@dataclass
class ResultFiles:
    """The files of one exported result.

    Attributes
    ----------
    folder : pathlib.Path
    files : dict of str to pathlib.Path
        Keys ``"hdf5"``, ``"g2_csv"``, ``"fits_csv"``, ``"csv_zip"`` (both tables),
        ``"g2_png"``, ``"intensity_png"`` and ``"image_png"``.
    twotime : dict of int to pathlib.Path
        PNG of the two-time map of the bins rendered so far (see :func:`save_twotime_png`).
    """

    folder: Path
    files: dict = field(default_factory=dict)
    twotime: dict = field(default_factory=dict)


def result_folder_name(label: str, when: float | None = None) -> str:
    """``<label>-<YYYYmmdd-HHMMSS>`` with the label reduced to safe characters."""
    stem = label
    for suffix in (".zip", ".npy", ".npz", ".h5", ".hdf5", ".hdf", ".nxs", ".tif", ".tiff",
                   ".fits", ".fit"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60] or "dataset"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def twotime_png_name(bin: int) -> str:
    """File name of the two-time map PNG of a (1-based) bin."""
    return f"twotime_{int(bin):03d}.png"


def save_twotime_png(files: ResultFiles, bin: int, png: bytes) -> Path:
    """Add the PNG of a bin's two-time map to an exported folder (atomically)."""
    path = files.folder / twotime_png_name(bin)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png)
    files.twotime[int(bin)] = path
    return path


@contextlib.contextmanager
def new_result_folder(label: str, root, *, name: str | None = None, replace: bool = False
                      ) -> Iterator[tuple[Path, Path]]:
    """A new result folder, written under a hidden name and renamed when complete.

    Parameters
    ----------
    label : str
        The dataset's short name (see :func:`result_folder_name`).
    root : path-like
        Parent folder, created if needed.
    name : str, optional
        The folder's name instead of :func:`result_folder_name` ``(label)``.
    replace : bool
        When a folder of that name exists: False (default) leaves it alone and adds ``-2``,
        ``-3``... to the new one's name; True replaces it once the new one is complete (the old
        one stays whole until then).

    Yields
    ------
    (tmp, final) : (pathlib.Path, pathlib.Path)
        Write the files into ``tmp``; it becomes ``final`` when the block ends without an
        exception, and is removed when it raises (a cancelled or failed export leaves nothing).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = name or result_folder_name(label)
    final = root / name
    n = 2
    while final.exists() and not replace:
        final = root / f"{name}-{n}"
        n += 1
    tmp = root / f".{final.name}.partial-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        yield tmp, final
        if final.exists():
            old = root / f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_result_folder(result, label: str, *, root, pngs: dict | None = None,
                        step: Callable | None = None, name: str | None = None,
                        replace: bool = False, extra: Callable | None = None) -> ResultFiles:
    """Write the result HDF5 (APS layout, pyXpcsViewer opens it), CSV tables and PNG plots.

    Parameters
    ----------
    result : XpcsResult
    label : str
        The dataset's short name, used in the folder name.
    root : path-like
        Parent folder, created if needed.
    pngs : dict of str to bytes, optional
        Already rendered PNG files by name (``"g2.png"``, ``"intensity.png"``,
        ``"mean_image.png"``, ``"twotime_001.png"``...), written as they are; the first three
        are rendered when not given. The two-time maps are large to render one by one
        (the HDF5 file holds them all), so only the given ones are written.
    step : callable, optional
        ``step(fraction, stage)`` between files; it may raise to abandon the export (the
        partial folder is then removed).
    name, replace : optional
        The folder's name and what happens to an existing one (see :func:`new_result_folder`).
    extra : callable, optional
        ``extra(folder)`` writes more files into the folder before it becomes visible.

    Returns
    -------
    ResultFiles
    """
    from .. import plots

    report = step or (lambda fraction, stage: None)
    given = dict(pngs or {})
    makers = {
        "g2.png": lambda: plots.plot_g2(result),
        "intensity.png": lambda: plots.plot_intensity(result),
        "mean_image.png": lambda: plots.plot_image(result.mean_image, "log", result.partition),
    }
    twotime = {}
    with new_result_folder(label, root, name=name, replace=replace) as (tmp, final):
        report(0.1, "writing the HDF5 result")
        write_aps_result(result, tmp / "result.h5")
        report(0.4, "writing CSV tables")
        write_g2_csv(result, tmp / "g2.csv")
        write_fits_csv(result, tmp / "fits.csv")
        with zipfile.ZipFile(tmp / "tables.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(tmp / "g2.csv", "g2.csv")
            zf.write(tmp / "fits.csv", "fits.csv")
        report(0.6, "writing PNG plots")
        for png_name, make in makers.items():
            if png_name in given:
                (tmp / png_name).write_bytes(given[png_name])
            else:
                plots.save_png(make(), tmp / png_name)
        for b in sorted(result.twotime or {}):
            png_name = twotime_png_name(b)
            if png_name in given:
                (tmp / png_name).write_bytes(given[png_name])
                twotime[int(b)] = final / png_name
        if extra is not None:
            extra(tmp)
        report(0.95, "finishing")
    files = {"hdf5": "result.h5", "g2_csv": "g2.csv", "fits_csv": "fits.csv",
             "csv_zip": "tables.zip", "g2_png": "g2.png", "intensity_png": "intensity.png",
             "image_png": "mean_image.png"}
    return ResultFiles(final, {key: final / value for key, value in files.items()}, twotime)
