"""The monitor's results folder: where each thing it writes lives.

::

    <results>/
        state.sqlite                 what the monitor has seen and done (speckle.monitor.state)
        index.jsonl                  one line per analysed or refused file (speckle.monitor.index)
        templates/<folder>-<hash>.yaml   per-folder analysis templates (speckle.monitor.templates)
        <watched folder's name>/<sub/folders>/<file name>/    one result folder per dataset:
            result.h5, g2.csv, fits.csv, tables.zip, *.png   (as the dashboards write them)
            summary.json, template.yaml, thumb.png, g2_small.png

The result folders mirror the watched folders, so a person finds ``scan_0012.h5``'s result
under the same sub-folders. Nothing is ever written into a watched folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..errors import InvalidInputError

__all__ = ["ResultsLayout", "safe_name"]


def safe_name(name: str) -> str:
    """A file or folder name reduced to safe characters (``scan 7.h5`` -> ``scan_7_h5``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:100] or "dataset"


class ResultsLayout:
    """Paths inside a results folder for a set of watched folders.

    Parameters
    ----------
    root : path-like
        The results folder.
    folders : sequence of path-like
        The watched folders (absolute). Their names label their results; two folders of the same
        name are told apart by a short hash of their path.

    Raises
    ------
    InvalidInputError
        When the results folder lies inside a watched folder or the other way round (the monitor
        never writes into the data folders, and would otherwise watch its own results).
    """

    def __init__(self, root, folders=()):
        self.root = Path(os.path.abspath(root))
        self.folders = [os.path.normpath(os.path.abspath(f)) for f in folders]
        for folder in self.folders:
            if _inside(str(self.root), folder) or _inside(folder, str(self.root)):
                raise InvalidInputError(
                    f"the results folder {self.root} and the watched folder {folder} must not "
                    "contain one another: the monitor never writes into the data folders")
        names = [safe_name(Path(f).name) for f in self.folders]
        self.labels = {}
        for folder, name in zip(self.folders, names):
            if names.count(name) > 1 or name in ("templates",):
                name = f"{name}-{hashlib.sha256(folder.encode()).hexdigest()[:6]}"
            self.labels[folder] = name

    @property
    def state(self) -> Path:
        return self.root / "state.sqlite"

    @property
    def index(self) -> Path:
        return self.root / "index.jsonl"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    def folder_of(self, path) -> str | None:
        """The watched folder that holds ``path`` (the innermost), or None."""
        path = os.path.normpath(os.path.abspath(path))
        found = [f for f in self.folders if _inside(path, f)]
        return max(found, key=len) if found else None

    def result_folder(self, path) -> Path:
        """Where the result of the dataset ``path`` goes."""
        folder = self.folder_of(path)
        if folder is None:
            # reprocessing a folder that is not watched: label it by its own name
            parent = Path(os.path.abspath(path)).parent
            return self.root / safe_name(parent.name) / safe_name(Path(path).name)
        rel = Path(os.path.relpath(os.path.abspath(path), folder))
        parts = [safe_name(p) for p in rel.parent.parts]
        return self.root.joinpath(self.labels[folder], *parts, safe_name(rel.name))


def _inside(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")
