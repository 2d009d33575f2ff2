"""Two workers on one database: an enrolment or deletion through one reaches the other's catalog."""

from __future__ import annotations

from fastapi.testclient import TestClient
from svc_fakes import API_KEY, FakeEmbedder, FakeGate, fake_settings, wait_ready
from svc_helpers import image_bytes

from integrations import open_store
from whales_be_service.main import create_app
from whales_identify.reid.catalog import Catalog


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


def test_enrolment_and_deletion_reach_the_other_worker_at_the_next_request(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = _worker(url, 0.0), _worker(url, 0.0)  # 0 (default): the generation is checked every request
    try:
        assert _ids(a) == _ids(b) == set()
        files = [("files", ("fin.jpg", image_bytes((40, 90, 160)), "image/jpeg"))]
        r = a.post("/v1/individuals/bnd_sync_1/images", files=files, data={"species": "bottlenose_dolphin"},
                   headers={"X-API-Key": API_KEY})
        assert r.status_code in (200, 201), r.text
        assert "bnd_sync_1" in _ids(b)  # b reloaded from the database, no waiting
        assert "bnd_sync_1" in _ids(a)  # a knew already (its own write)
        assert b.delete("/v1/individuals/bnd_sync_1", headers={"X-API-Key": API_KEY}).status_code == 200
        assert "bnd_sync_1" not in _ids(a)
        assert a.get("/v1/individuals/bnd_sync_1").status_code == 404
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


def test_own_write_after_another_workers_write_still_reloads(tmp_path):
    """The bug of issue 19 #3: after its own write a worker took the database's state as loaded,
    and missed what another worker had written just before."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = _worker(url, 0.0), _worker(url, 0.0)
    try:
        files = [("files", ("fin.jpg", image_bytes((40, 90, 160)), "image/jpeg"))]
        key = {"X-API-Key": API_KEY}
        assert b.post("/v1/individuals/from_b/images", files=files, headers=key).status_code == 200
        other = [("files", ("fin2.jpg", image_bytes((160, 150, 40)), "image/jpeg"))]
        assert a.post("/v1/individuals/from_a/images", files=other, headers=key).status_code == 200
        assert {"from_a", "from_b"} <= _ids(a) and {"from_a", "from_b"} <= _ids(b)
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


def test_a_refresh_interval_trades_freshness_for_fewer_checks(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = _worker(url, 0.0), _worker(url, 3600.0)
    try:
        _ids(b)  # b looked just now; it will not look again for an hour
        files = [("files", ("fin.jpg", image_bytes((40, 90, 160)), "image/jpeg"))]
        assert a.post("/v1/individuals/bnd_sync_2/images", files=files,
                      headers={"X-API-Key": API_KEY}).status_code in (200, 201)
        assert "bnd_sync_2" not in _ids(b)  # stale, as configured
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


def test_enrolment_extracts_local_features_outside_the_catalog_write(tmp_path, monkeypatch):
    """Local features of an enrolment are extracted before the worker's write lock (and so the
    database transaction) is taken: other writers never wait for SIFT."""
    import threading

    from whales_identify import enroll
    from whales_identify.reid import catalog as catalog_module

    app = create_app(fake_settings(), store=open_store(f"sqlite:///{tmp_path / 'w.db'}"),
                     embedder=FakeEmbedder(), gate=FakeGate(), catalog_factory=Catalog)
    held_during_extraction: list[bool] = []
    real_extract = enroll.extract

    def watched(image, cfg=None):
        got: list[bool] = []

        def try_lock() -> None:  # from another thread: the lock is reentrant for its holder
            lock = app.state.whales.write_lock
            got.append(lock.acquire(blocking=False))
            if got[0]:
                lock.release()

        probe = threading.Thread(target=try_lock)
        probe.start()
        probe.join()
        held_during_extraction.append(not got[0])
        return real_extract(image, cfg)

    monkeypatch.setattr(enroll, "extract", watched)
    monkeypatch.setattr(catalog_module, "extract", watched)  # were the catalog to extract, it is seen too
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        files = [("files", (f"fin{i}.jpg", image_bytes((40 + 30 * i, 90, 160)), "image/jpeg"))
                 for i in range(3)]
        r = client.post("/v1/individuals/bnd_lock_1/images", files=files,
                        data={"species": "bottlenose_dolphin"}, headers={"X-API-Key": API_KEY})
        assert r.status_code in (200, 201), r.text
        assert len(r.json()["enrolled"]) == 3
    assert held_during_extraction == [False, False, False]


def test_a_request_during_another_threads_reload_waits_for_it(tmp_path, monkeypatch):
    """With a refresh interval, the request that finds the generation changed reloads; one arriving
    on another thread meanwhile must wait for that reload, not answer from the catalog it replaces
    (the check was marked done when the reload began: a stale answer after an acknowledged
    enrolment, seen in the stack test with two workers)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from whales_be_service import state as state_module

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = _worker(url, 0.0), _worker(url, 0.2)
    try:
        _ids(b)
        files = [("files", ("fin.jpg", image_bytes((40, 90, 160)), "image/jpeg"))]
        assert a.post("/v1/individuals/slow_reload/images", files=files,
                      headers={"X-API-Key": API_KEY}).status_code in (200, 201)
        real_load, reloading = state_module._load_catalog, threading.Event()

        def slow_load(factory, state):
            reloading.set()
            time.sleep(0.8)  # a reload at scale takes seconds
            return real_load(factory, state)

        monkeypatch.setattr(state_module, "_load_catalog", slow_load)
        time.sleep(0.3)  # past b's refresh interval
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(_ids, b)
            assert reloading.wait(10)
            second = pool.submit(_ids, b)  # arrives while the first is reloading
            assert "slow_reload" in first.result(timeout=30)
            assert "slow_reload" in second.result(timeout=30)
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)
