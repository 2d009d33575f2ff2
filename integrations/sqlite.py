"""SQLite backend: one file, WAL journal, a busy timeout, one transaction per write.

WAL lets readers run while a writer commits and lets several processes (uvicorn workers) share the
file; `BEGIN IMMEDIATE` takes the write lock up front, so concurrent writers queue on the busy
timeout instead of failing half-way through. `synchronous=FULL` makes every commit durable.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from integrations._migrations import apply_migrations
from integrations._rows import SQLITE, Cursor
from integrations._sql import SqlStore

DEFAULT_BUSY_TIMEOUT_S = 30.0


class SQLiteStore(SqlStore):
    """A `Store` on a SQLite file (or `:memory:`), safe to share between threads.

    Args:
        path: database file (its folder is created) or `":memory:"`.
        busy_timeout_s: how long a write waits for another process's write lock.
    """

    dialect = SQLITE

    def __init__(self, path: str | Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection behind a lock: sqlite3 objects are not thread-safe, and writes are serialised
        # by SQLite anyway. isolation_level=None: transactions are opened explicitly below.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            with self._begin() as cur:  # BEGIN IMMEDIATE: a second process starting now waits here
                apply_migrations(cur, self.dialect)
        except BaseException:
            self.close()
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the store is closed")
        return self._conn

    @contextmanager
    def _begin(self) -> Iterator[Cursor]:
        with self._lock:
            cur = self._connection().cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    if self._connection().in_transaction:
                        cur.execute("ROLLBACK")
                    raise
            finally:
                cur.close()

    @contextmanager
    def _open_read(self) -> Iterator[Cursor]:
        with self._lock:
            cur = self._connection().cursor()
            try:
                yield cur
            finally:
                cur.close()

    def ping(self) -> None:
        """The file is still there and answers (a deleted or moved file is a down database)."""
        if self.path != ":memory:" and not Path(self.path).exists():
            raise sqlite3.OperationalError("the database file is missing")
        super().ping()

    def integrity_check(self) -> str:
        """`PRAGMA integrity_check`: "ok" for a healthy file."""
        with self._read() as cur:
            cur.execute("PRAGMA integrity_check")
            return "; ".join(str(r[0]) for r in cur.fetchall())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
