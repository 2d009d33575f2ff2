"""Storage backends (SQLite, PostgreSQL) and exports (CSV, JSON lines, Darwin Core)."""
