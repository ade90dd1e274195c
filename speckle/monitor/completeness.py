"""Is a file in a watched folder a complete dataset yet?

The watcher asks two questions, in this order:

1. Has the file stopped changing? :class:`Settling` follows a file's size and modification time:
   it has *settled* when neither changed for ``settle`` seconds (measured on this machine's clock,
   so a file server's clock does not matter), or, for a file found already old, when two looks
   a moment apart agree.
2. Does it open cleanly? :func:`probe` says ``"writing"`` while a writer still holds the file
   (a lock, or HDF5's open-for-writing marks: see :mod:`speckle.io.writing`; a SWMR file is read
   once its writer closes it), ``"not-data"`` for files that are no dataset (a log, a text file
   without a data file's name), ``"unreadable"`` when it cannot be opened or its last frame not
   read (perhaps still arriving: the watcher asks again until the file has been quiet for a while,
   then records the reason), ``"refused"`` for a data file's name on content that is no data
   format (a log called ``scan.h5``: recorded at once), and ``"complete"`` otherwise.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpeckleError, UnsupportedFormatError

__all__ = ["DATA_SUFFIXES", "Probe", "Settling", "ignored_name", "probe"]

#: Names that say "a data file": a file with one is reported when it cannot be read.
DATA_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi", ".tif", ".tiff", ".fits",
                 ".fit", ".fts", ".npy", ".npz", ".zip")
#: Temporary names of files being written or copied (never datasets in their own right).
_TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", ".lock",
                       ".filepart", "~")


def ignored_name(name: str) -> bool:
    """Names the watcher never looks at: hidden and temporary files."""
    lower = name.lower()
    return name.startswith((".", "~$")) or lower.endswith(_TEMPORARY_SUFFIXES)


@dataclass
class Settling:
    """The watcher's view of one file that is not yet known to be complete.

    Attributes
    ----------
    size, mtime_ns : int
        As last seen.
    changed_at : float
        ``time.monotonic()`` when :attr:`size`/:attr:`mtime_ns` were first seen as they are.
    looked_at : float
        ``time.monotonic()`` of the last look.
    """

    size: int
    mtime_ns: int
    changed_at: float
    looked_at: float
    first_look: bool = True

    @classmethod
    def first(cls, st: os.stat_result, now: float | None = None) -> "Settling":
        now = time.monotonic() if now is None else now
        return cls(st.st_size, st.st_mtime_ns, now, now)

    def look(self, st: os.stat_result, now: float | None = None) -> bool:
        """Record a new look; True when the file changed since the last one."""
        now = time.monotonic() if now is None else now
        changed = (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns)
        if changed:
            self.size, self.mtime_ns, self.changed_at = st.st_size, st.st_mtime_ns, now
            self.first_look = False
        elif now - self.looked_at > 0.2:
            self.first_look = False
        self.looked_at = now
        return changed

    def settled(self, settle: float, now: float | None = None) -> bool:
        """True when the file has not changed for ``settle`` seconds."""
        now = time.monotonic() if now is None else now
        if now - self.changed_at >= settle:
            return True
        # found old (a catch-up scan): two agreeing looks a moment apart are enough
        age = time.time() - self.mtime_ns / 1e9
        return not self.first_look and age >= settle

    def quiet_for(self, now: float | None = None) -> float:
        """Seconds since the file last changed: since this process saw it change, or since its
        modification time when that is longer (a file found old)."""
        seen = (time.monotonic() if now is None else now) - self.changed_at
        return max(seen, time.time() - self.mtime_ns / 1e9)


@dataclass(frozen=True)
class Probe:
    """What :func:`probe` found: ``state`` is ``"complete"``, ``"writing"``, ``"not-data"``,
    ``"unreadable"`` (perhaps not yet: asked again) or ``"refused"`` (never: a data file's name
    on other content); ``reason`` says why in words (or describes the dataset when complete)."""

    state: str
    reason: str = ""


def probe(path, *, dataset: str | None = None) -> Probe:
    """Check that ``path`` is a whole dataset that opens cleanly (see the module docstring)."""
    from ..io.open import open_dataset
    from ..io.writing import writer_still_active

    path = Path(path)
    reason = writer_still_active(path)
    if reason:
        return Probe("writing", reason)
    try:
        with open_dataset(path, dataset=dataset) as ds:
            n = ds.n_frames
            if n < 1:
                return Probe("unreadable", "the file holds no frames")
            ds.read_frames(n - 1, n)  # the last frame: a file cut short fails here
            return Probe("complete", f"{n} frame{'s' * (n != 1)} of "
                                     f"{ds.frame_shape[0]}×{ds.frame_shape[1]}")
    except UnsupportedFormatError as exc:
        if path.suffix.lower() not in DATA_SUFFIXES:
            return Probe("not-data", _one_line(exc))
        # content that is no data format now will not become one as more bytes arrive (the
        # signatures are at the start), unless nothing has arrived yet
        empty = path.stat().st_size == 0
        return Probe("unreadable" if empty else "refused", _one_line(exc))
    except (SpeckleError, OSError, MemoryError) as exc:
        return Probe("unreadable", _one_line(exc))
    except Exception as exc:  # noqa: BLE001 - a library's own error on a broken file
        return Probe("unreadable", f"cannot read it ({type(exc).__name__}: {_one_line(exc)})")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
