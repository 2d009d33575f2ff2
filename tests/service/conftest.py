"""Service fixtures: an app on fakes (TestClient, lifespan running) for fast tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from svc_fakes import API_KEY, FakeCatalog, FakeEmbedder, FakeGate, fake_settings, wait_ready

from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """`make_client(**settings)` -> a started TestClient on fakes (closed at teardown)."""
    opened: list[TestClient] = []

    def make(ready: bool = True, store: Any = None, **overrides: Any) -> TestClient:
        app = create_app(fake_settings(**overrides), store=store or InMemoryStore(), embedder=FakeEmbedder(),
                         gate=FakeGate(), catalog_factory=FakeCatalog)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        if ready:
            wait_ready(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture(params=["memory", "sqlite"])
def store_client(request: Any, make_client: Callable[..., TestClient], tmp_path: Any) -> Iterator[TestClient]:
    """The app on the in-memory store and on a SQLite file (PostgreSQL: the store tests in
    tests/integrations and the live two-worker tests)."""
    if request.param == "memory":
        yield make_client()
        return
    from integrations.base import open_store

    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield make_client(store=store)
    store.close()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"X-API-Key": API_KEY}


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The real `whales_be_service.main:app` under uvicorn with the embedded models and SQLite."""
    from svc_server import start_live_server, stop_live_server

    server = start_live_server(tmp_path_factory.mktemp("live"), API_KEY)
    yield server
    stop_live_server(server)


@pytest.fixture(scope="session")
def real_photos(data_dir, manifest):
    """Three photos of one individual and one non-cetacean photo from the real data set."""
    by_individual: dict[str, list[Any]] = {}
    for row in manifest:
        if row.is_cetacean and row.individual_id:
            by_individual.setdefault(row.individual_id, []).append(row)
    rows = next(v for k, v in sorted(by_individual.items()) if len(v) >= 3)[:3]
    negatives = [r for r in manifest if not r.is_cetacean][:3]
    return {"individual": rows[0].individual_id, "species": rows[0].species,
            "photos": [(data_dir / r.relpath).read_bytes() for r in rows],
            "negatives": [(data_dir / r.relpath).read_bytes() for r in negatives]}
