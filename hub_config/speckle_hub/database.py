"""The hub's SQLite database in write-ahead-log mode, committing without waiting for the disk.

JupyterHub commits to its database from its event loop, several times per request. With
SQLite's defaults (a rollback journal, ``synchronous=FULL``) every commit waits for fsync:
while ten servers started at once on a busy disk, the hub spent 5 s of a minute in commits
(py-spy), and ``/hub/health`` stalled up to 1.9 s. In WAL mode with ``synchronous=NORMAL`` a
commit only appends to the log; the log is synced at checkpoints. The database stays consistent
through a crash of the hub or of the machine; a power cut may lose the last commits before it
(a server's state, found again from the running servers at the next start), never corrupt it.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["PRAGMAS", "use_wal"]

#: Set on every new SQLite connection the hub opens.
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def _on_connect(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        for pragma in PRAGMAS:
            cursor.execute(pragma)
        cursor.close()


def use_wal() -> None:
    """Put every SQLite connection this process opens through SQLAlchemy into WAL mode with
    ``synchronous=NORMAL`` (idempotent; other databases are left alone)."""
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)
