"""PostgreSQL backend: psycopg 3 with a connection pool; one transaction per write.

Migrations run once per process start on a dedicated connection under a transaction-level advisory
lock, so several workers starting at once apply each migration exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from integrations._migrations import apply_migrations
from integrations._rows import POSTGRES, Cursor
from integrations._sql import SqlStore

# pg_advisory_xact_lock key for schema changes ("WHALES" in ASCII).
MIGRATION_LOCK_KEY = 0x574841_4C4553
DEFAULT_POOL_SIZE = 8
PING_TIMEOUT_S = 2.0  # readiness must answer quickly when the server is gone


class PostgresStore(SqlStore):
    """A `Store` on PostgreSQL.

    Args:
        conninfo: a libpq URL (`postgresql://user:pass@host:5432/db`, `postgres://...`); libpq options
            such as `?options=-csearch_path%3Dmyschema` or `?sslmode=require` pass through.
        min_size: connections kept open.
        max_size: connections at most (per process).
        timeout: seconds to wait for a connection before failing.
    """

    dialect = POSTGRES

    def __init__(self, conninfo: str, min_size: int = 1, max_size: int = DEFAULT_POOL_SIZE,
                 timeout: float = 30.0) -> None:
        self._pool: ConnectionPool | None = None
        # A plain connection first: its error (wrong password, no server) is clearer than a pool timeout.
        with psycopg.connect(conninfo, connect_timeout=max(1, int(timeout))) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                apply_migrations(cur, self.dialect)
        self._pool = ConnectionPool(conninfo, min_size=min_size, max_size=max_size, timeout=timeout,
                                    open=False, name="whales", check=ConnectionPool.check_connection,
                                    kwargs={"connect_timeout": max(1, int(PING_TIMEOUT_S))})
        self._pool.open(wait=True, timeout=timeout)

    def _get_pool(self) -> ConnectionPool:
        if self._pool is None:
            raise psycopg.InterfaceError("the store is closed")
        return self._pool

    @contextmanager
    def _begin(self) -> Iterator[Cursor]:
        # The pool's context manager commits on normal exit and rolls back on an exception.
        with self._get_pool().connection() as conn, conn.cursor() as cur:
            yield cur

    _open_read = _begin

    def ping(self) -> None:
        with self._get_pool().connection(timeout=PING_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")

    def _lock_individual(self, cur: Cursor, individual_id: str) -> None:
        # READ COMMITTED would let two transactions both see "no such individual"; this lock, held
        # to the end of the transaction, makes them take turns.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"individual:{individual_id}",))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
