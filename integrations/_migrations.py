"""Versioned SQL migrations (`integrations/migrations/NNNN_name.sql`), applied when a store opens.

The caller holds the schema lock (SQLite `BEGIN IMMEDIATE`, PostgreSQL advisory lock) and the
transaction, so each file is applied exactly once, together with its `schema_migrations` row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from integrations._rows import Cursor, Dialect
from whales_identify.records.store import utcnow

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer version of this code."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str = field(repr=False)

    def statements(self, dialect: Dialect) -> list[str]:
        """The file's statements for one dialect: comments removed, type names substituted."""
        text = re.sub(r"--[^\n]*", "", self.sql)
        text = Template(text).substitute(dialect.types)
        return [s.strip() for s in text.split(";") if s.strip()]


def load_migrations() -> list[Migration]:
    """`integrations/migrations/NNNN_name.sql`, in version order."""
    found = []
    for entry in MIGRATIONS_DIR.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


_BOOTSTRAP = Template(
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at $timestamp NOT NULL)"
)


_RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"


def apply_migrations(cursor: Cursor, dialect: Dialect) -> list[int]:
    """Apply what is missing inside the caller's (locked) transaction; return the new versions."""
    # Look before creating: an up-to-date database then needs no CREATE privilege.
    cursor.execute(dialect.has_migrations_table)
    if cursor.fetchone() is None:
        cursor.execute(_BOOTSTRAP.substitute(dialect.types))
    cursor.execute("SELECT version FROM schema_migrations")
    applied = {int(row[0]) for row in cursor.fetchall()}
    migrations = load_migrations()
    known = {m.version for m in migrations}
    if applied - known:
        raise SchemaTooNewError(
            f"database schema has version(s) {sorted(applied - known)} that this code does not know; "
            "upgrade EcoMarineAI before opening it"
        )
    new = []
    for migration in migrations:
        if migration.version in applied:
            continue
        for statement in migration.statements(dialect):
            cursor.execute(statement)
        cursor.execute(_RECORD_MIGRATION.replace("?", dialect.placeholder),
                       (migration.version, migration.name, dialect.to_db_time(utcnow())))
        new.append(migration.version)
    return new
