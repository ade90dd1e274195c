"""Result folders of the dashboards, in the results folder of the user's server.

The folders themselves (layout, atomic writing) are :mod:`speckle.io.result_folder`'s; this
module only supplies the dashboards' default place, :func:`speckle.ui.common.server.results_root`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ...io import result_folder as _folder
from ...io.result_folder import ResultFiles, result_folder_name, save_twotime_png, twotime_png_name
from .server import results_root

__all__ = ["ResultFiles", "new_result_folder", "result_folder_name", "save_twotime_png",
           "twotime_png_name", "write_result_folder"]


@contextlib.contextmanager
def new_result_folder(label: str, root=None) -> Iterator[tuple[Path, Path]]:
    """:func:`speckle.io.result_folder.new_result_folder` in ``root`` (default: the results
    folder of the user's server)."""
    with _folder.new_result_folder(label, results_root() if root is None else root) as pair:
        yield pair


def write_result_folder(result, label: str, *, root=None, pngs: dict | None = None,
                        step: Callable | None = None) -> ResultFiles:
    """:func:`speckle.io.result_folder.write_result_folder` in ``root`` (default: the results
    folder of the user's server)."""
    return _folder.write_result_folder(result, label, root=results_root() if root is None else root,
                                       pngs=pngs, step=step)
