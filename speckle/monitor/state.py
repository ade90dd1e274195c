"""The monitor's memory: one row per file it has seen, in a small SQLite database.

The database (``<results>/state.sqlite``) lets a restarted monitor know what it has done: a file
whose size and modification time match a finished row is not analysed again; one that is new or
changed, or was waiting or running when the monitor stopped, is (nothing lost, nothing twice).

One process writes (the monitor's loop); any number read (the live page), each with its own
connection (WAL mode: readers never block the writer). Every change bumps the row's ``seq``, a
counter over the whole table, so a reader asks "what changed since seq N?".

States of a row:

``waiting``   seen, not yet complete (still being written, or settling)
``queued``    complete and handed to the cluster
``running``   a worker is analysing it
``done``      analysed: ``kind``, ``verdict``, ``summary``, ``conclusion``, ``action``, ``result``
``failed``    refused or failed: ``error`` says why
``ignored``   not a dataset (a log, a text file): never shown
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["COLUMNS", "STATES", "StateDB"]

STATES = ("waiting", "queued", "running", "done", "failed", "ignored")

#: The columns of a row, in order.
COLUMNS = ("path", "folder", "size", "mtime_ns", "state", "kind", "verdict", "summary",
           "conclusion", "action", "error", "result", "template", "first_seen", "completed_at",
           "started_at", "finished_at", "attempts", "note", "seq")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    state TEXT NOT NULL,
    kind TEXT,
    verdict TEXT,
    summary TEXT,
    conclusion TEXT,
    action TEXT,
    error TEXT,
    result TEXT,
    template TEXT,
    first_seen REAL,
    completed_at REAL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    note TEXT,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_seq ON files (seq);
CREATE INDEX IF NOT EXISTS files_state ON files (state);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
SCHEMA_VERSION = "1"


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10,
                              check_same_thread=False)
    else:
        con = sqlite3.connect(path, timeout=30, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
    con.row_factory = sqlite3.Row
    return con


class StateDB:
    """The state database of one results folder.

    Parameters
    ----------
    path : path-like
        The SQLite file (created with its tables when missing, unless ``readonly``).
    readonly : bool
        Open for reading only (the live page).
    """

    def __init__(self, path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._con = _connect(self.path, readonly)
        if not readonly:
            with self._con:
                self._con.executescript(_SCHEMA)
                self._con.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                  (SCHEMA_VERSION,))
        self._seq = self.last_seq()

    def close(self) -> None:
        self._con.close()

    # ---------------------------------------------------------------- reading
    def last_seq(self) -> int:
        """The highest ``seq`` so far (0 for an empty table)."""
        with self._lock:
            row = self._con.execute("SELECT MAX(seq) FROM files").fetchone()
        return int(row[0] or 0)

    def get(self, path: str) -> dict | None:
        """The row of ``path``, or None."""
        with self._lock:
            row = self._con.execute("SELECT * FROM files WHERE path = ?", (str(path),)).fetchone()
        return dict(row) if row else None

    def rows(self, *, states=None, since: int = 0, limit: int | None = None,
             newest_first: bool = False) -> list[dict]:
        """Rows changed after ``since`` (optionally only in ``states``), in ``seq`` order."""
        sql = "SELECT * FROM files WHERE seq > ?"
        args: list = [since]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            return [dict(r) for r in self._con.execute(sql, args)]

    def stamps(self) -> dict[str, tuple]:
        """``(size, mtime_ns, state, template)`` of every row, by path (for listing folders)."""
        with self._lock:
            return {r[0]: tuple(r[1:]) for r in self._con.execute(
                "SELECT path, size, mtime_ns, state, template FROM files")}

    def counts(self) -> dict[str, int]:
        """Number of rows in each state (every state present, 0 when none)."""
        with self._lock:
            found = dict(self._con.execute("SELECT state, COUNT(*) FROM files GROUP BY state"))
        return {s: int(found.get(s, 0)) for s in STATES}

    # ---------------------------------------------------------------- writing
    def put(self, path: str, **values) -> dict:
        """Insert or update the row of ``path`` with ``values``; returns the row as stored."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown columns {sorted(unknown)}")
        with self._lock, self._con:
            self._seq += 1
            values["seq"] = self._seq
            exists = self._con.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone()
            if exists:
                sets = ", ".join(f"{k} = ?" for k in values)
                self._con.execute(f"UPDATE files SET {sets} WHERE path = ?",
                                  [*values.values(), path])
            else:
                values.setdefault("first_seen", time.time())
                values.setdefault("state", "waiting")
                cols = ["path", *values]
                self._con.execute(
                    f"INSERT INTO files ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [path, *values.values()])
            row = self._con.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return dict(row)
