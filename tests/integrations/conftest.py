"""Store fixtures: every sink test runs on SQLite (a temp file) and on PostgreSQL (a fresh schema).

PostgreSQL comes from WHALES_TEST_POSTGRES_URL (`.ci/run` starts one); without it the postgres cases
skip locally and fail in CI (`skip_or_fail`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.base import open_store
from whales_identify.records.store import InMemoryStore

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def skip_or_fail(request: pytest.FixtureRequest, reason: str) -> None:
    # The root conftest's helper, fetched from pytest itself: several conftest.py files share the
    # module name "conftest", so `from conftest import ...` could pick the wrong one.
    root = request.config.pluginmanager.get_plugin(str(ROOT_CONFTEST))
    root.skip_or_fail(reason)


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new, empty schema (dropped afterwards)."""
    base = os.environ.get("WHALES_TEST_POSTGRES_URL")
    if not base:
        skip_or_fail(request, "WHALES_TEST_POSTGRES_URL is not set (see .ci/run)")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend; nothing exists there yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'whales.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """The same test on the library's in-memory store, SQLite and PostgreSQL (the store tests that
    must hold for every `Store`, including the one the tests and demos use)."""
    if request.param == "memory":
        yield InMemoryStore()
        return
    url = (f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    opened = open_store(url)
    yield opened
    opened.close()

