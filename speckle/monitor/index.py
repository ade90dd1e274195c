"""``<results>/index.jsonl``: one JSON object per analysed or refused file, appended atomically.

Each line is a whole JSON object, written with one ``write`` on a file opened for appending and
synced to disk, so a reader (a script, ``tail -f | jq``) never sees half a line; a line cut by a
power failure is skipped by :func:`read_index` and the next entry starts on a line of its own. Keys: ``path``, ``kind``, ``verdict``
(good/marginal/bad), ``summary``, ``conclusion``, ``action``, or ``error``; ``result`` (the
result folder), ``completed_at`` (when the file was judged complete), ``finished_at``; times are
ISO 8601 with the time zone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

__all__ = ["append_index", "iso_time", "read_index"]


def iso_time(t: float | None) -> str | None:
    """A UNIX time as ISO 8601 in the local time zone (milliseconds), or None."""
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def append_index(path, entry: dict) -> None:
    """Append ``entry`` as one line of JSON to the index file ``path`` (created if missing)."""
    line = (json.dumps(entry, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))
            + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # the last line was cut (a crash): start a new one
        written = os.write(fd, line)
        if written != len(line):  # a full disk: never leave half a line behind
            os.ftruncate(fd, os.fstat(fd).st_size - written)
            raise OSError(f"could not append to {path}: the disk may be full")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_index(path) -> list[dict]:
    """The entries of an index file, skipping lines that are not whole JSON objects."""
    out = []
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    out.append(entry)
    except FileNotFoundError:
        pass
    return out
