"""Storage backends (SQLite, PostgreSQL) and exports (CSV, JSON lines, Darwin Core).

`open_store(url)` picks the backend by URL scheme; drivers load only when their scheme is used.
"""

from integrations.base import open_store

__all__ = ["open_store"]
