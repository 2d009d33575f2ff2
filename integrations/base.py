"""Choose a storage backend by URL: `open_store("sqlite:///path.db")`, `open_store("postgresql://...")`.

Every backend implements `whales_identify.records.store.Store` (predictions, review state and catalog on one
database) and brings its schema up to date by migrations when it is opened.
"""

from __future__ import annotations

from whales_identify.records.store import Store

# The one statement of the default database; the service's WHALES_DATABASE_URL setting and the
# CLI's --db (the same variable) default to it. This module reads no environment.
DEFAULT_DATABASE_URL = "sqlite:///data/whales.db"


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path` -> `rel/path`, `sqlite:////abs/path` -> `/abs/path`, `sqlite://` -> `:memory:`."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest in ("", "/"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ValueError(f"SQLite URL {url!r} needs three slashes: sqlite:///relative.db or sqlite:////abs.db")
    return rest[1:]


def open_store(url: str | None = None) -> Store:
    """Open (creating or upgrading the schema) the store that a database URL names.

    Args:
        url: `sqlite:///path/to.db` (relative to the working directory; four slashes for an absolute
            path; `sqlite:///:memory:` for a private in-memory database) or
            `postgresql://user:pass@host:5432/db` (also `postgres://`, `postgresql+psycopg://`).
            None: `DEFAULT_DATABASE_URL` (sqlite:///data/whales.db).

    Returns:
        A `Store`; call `.close()` when done.

    Raises:
        ValueError: unknown scheme or malformed URL.
    """
    url = url or DEFAULT_DATABASE_URL
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from integrations.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from integrations.postgres import PostgresStore

        return PostgresStore("postgresql://" + url.split("://", 1)[1])
    shown = url.split("@")[-1] if "@" in url else url  # never echo a password
    raise ValueError(
        f"unsupported database URL {shown!r}: use sqlite:///path/to/whales.db or "
        "postgresql://user:password@host:5432/whales"
    )
