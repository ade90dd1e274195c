"""The monitor's settings, in one place: what to watch, where results go, how and on what."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInputError
from .cluster import ClusterSpec
from .templates import Template, load_template

__all__ = ["MonitorConfig", "WATCH_MODES"]

#: How folders are watched: ``auto`` chooses per folder (inotify on local disks, polling on
#: network file systems, where inotify sees nothing of other machines' writes).
WATCH_MODES = ("auto", "inotify", "polling")


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of a :class:`~speckle.monitor.watcher.Monitor`.

    Attributes
    ----------
    folders : tuple of str
        The watched folders (absolute; sub-folders are watched too).
    results : str
        The results folder (state, index, templates, result folders).
    template : Template
        How files are analysed where no per-folder template says otherwise.
    settle_seconds : float
        A file is complete once it has not changed for this long (and opens cleanly).
    watch : {"auto", "inotify", "polling"}
    poll_interval : float
        Seconds between looks at a folder in polling mode.
    rescan_seconds : float
        Every so often every folder is listed again, in case an event was missed.
    give_up_seconds : float
        A file that stays unreadable this long after its last change is refused.
    writer_timeout_seconds : float
        A file still marked as being written this long after its last change is refused (its
        writer probably crashed).
    max_seconds : float
        Longest one analysis may run before it is stopped.
    cluster : ClusterSpec
        Where the analyses run (Dask).
    """

    folders: tuple = ()
    results: str = ""
    template: Template = field(default_factory=Template)
    settle_seconds: float = 2.0
    watch: str = "auto"
    poll_interval: float = 1.0
    rescan_seconds: float = 60.0
    give_up_seconds: float = 60.0
    writer_timeout_seconds: float = 900.0
    max_seconds: float = 1800.0
    cluster: ClusterSpec = field(default_factory=ClusterSpec)

    def __post_init__(self):
        if not self.results:
            raise InvalidInputError("say where the results go (--results DIR)")
        folders = []
        for f in self.folders:
            p = Path(f).expanduser()
            if not p.is_dir():
                raise InvalidInputError(f"{f}: no such folder to watch")
            folders.append(os.path.normpath(os.path.abspath(p)))
        if not folders:
            raise InvalidInputError("give at least one folder to watch")
        object.__setattr__(self, "folders", tuple(dict.fromkeys(folders)))
        object.__setattr__(self, "results", os.path.abspath(Path(self.results).expanduser()))
        if self.watch not in WATCH_MODES:
            raise InvalidInputError(f"watch must be one of {', '.join(WATCH_MODES)}, not {self.watch!r}")
        for name in ("settle_seconds", "poll_interval", "rescan_seconds", "give_up_seconds",
                     "writer_timeout_seconds", "max_seconds"):
            value = float(getattr(self, name))
            if not value > 0 and not (name == "settle_seconds" and value == 0):
                raise InvalidInputError(f"{name} must be positive, got {value}")
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, d: Mapping) -> "MonitorConfig":
        """Settings as plain values (the hub's ``monitor:`` section); ``template`` may be a
        mapping or the path of a template file, ``cluster`` a mapping."""
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - names)
        if extra:
            raise InvalidInputError(f"monitor: unknown key {extra[0]!r}; known: {', '.join(sorted(names))}")
        t = d.get("template")
        if isinstance(t, (str, os.PathLike)):
            d["template"] = load_template(t)
        elif t is None or isinstance(t, Mapping):
            d["template"] = Template.from_dict(t)
        d["cluster"] = ClusterSpec.from_dict(d.get("cluster"))
        d["folders"] = tuple(d.get("folders") or ())
        return cls(**d)
