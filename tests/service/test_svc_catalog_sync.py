"""Two workers on one database: an enrolment or deletion through one reaches the other's catalog."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from svc_fakes import API_KEY, FakeEmbedder, FakeGate, fake_settings, wait_ready
from svc_helpers import image_bytes

from integrations import open_store
from whales_be_service.main import create_app
from whales_identify.catalog import Catalog


def _worker(db_url: str, refresh_s: float) -> TestClient:
    # Each "worker" has its own store connection and in-memory catalog, as separate processes would.
    app = create_app(fake_settings(catalog_refresh_s=refresh_s), store=open_store(db_url),
                     embedder=FakeEmbedder(), gate=FakeGate(), catalog_factory=Catalog)
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    wait_ready(client)
    return client


def _ids(client: TestClient) -> set[str]:
    body = client.get("/v1/individuals").json()
    return {item["individual_id"] for item in body["items"]}


def test_enrolment_and_deletion_reach_the_other_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = _worker(url, 0.05), _worker(url, 0.05)
    try:
        assert _ids(a) == _ids(b) == set()
        files = [("files", ("fin.jpg", image_bytes((40, 90, 160)), "image/jpeg"))]
        r = a.post("/v1/individuals/bnd_sync_1/images", files=files, data={"species": "bottlenose_dolphin"},
                   headers={"X-API-Key": API_KEY})
        assert r.status_code in (200, 201), r.text
        time.sleep(0.1)
        assert "bnd_sync_1" in _ids(b)  # b reloaded from the database
        assert "bnd_sync_1" in _ids(a)  # a knew already (its own write)
        assert b.delete("/v1/individuals/bnd_sync_1", headers={"X-API-Key": API_KEY}).status_code == 200
        time.sleep(0.1)
        assert "bnd_sync_1" not in _ids(a)
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


def test_refresh_zero_keeps_the_loaded_catalog(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = _worker(url, 0.05), _worker(url, 0.0)
    try:
        files = [("files", ("fin.jpg", image_bytes((40, 90, 160)), "image/jpeg"))]
        assert a.post("/v1/individuals/bnd_sync_2/images", files=files,
                      headers={"X-API-Key": API_KEY}).status_code in (200, 201)
        time.sleep(0.1)
        assert "bnd_sync_2" not in _ids(b)  # refresh disabled: only a restart would show it
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)
