"""Issue 19 settings and failure paths, on the app with fakes: reads behind a key, withheld
positions, rate-limit charging, retention, an atomic review under a database failure, and 503s
that say nothing internal."""

from __future__ import annotations

import socket
import sqlite3
import time

from svc_fakes import API_KEY, FakeCatalog, FakeEmbedder, FakeGate, fake_settings
from svc_helpers import gps_photo, image_bytes, make_zip
from svc_server import ThreadedServer

from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore

KEY = {"X-API-Key": API_KEY}
BLUE = (30, 60, 160)


def _enrol(client, individual: str, data: bytes):
    return client.post(f"/v1/individuals/{individual}/images", headers=KEY,
                       files=[("files", ("a.jpg", data, "image/jpeg"))])


def _predict(client, data: bytes, **kw):
    return client.post("/v1/predict", files={"file": ("q.jpg", data, "image/jpeg")}, **kw)


def test_every_read_needs_a_key_when_configured(make_client):
    client = make_client(require_key_for_reads=True)
    assert _enrol(client, "hw_1", gps_photo(BLUE, 41.5, -69.5)).status_code == 200
    thumb = client.get("/v1/individuals/hw_1", headers=KEY).json()["images"][0]["thumbnail_url"]
    for path in ("/v1/individuals", "/v1/individuals/hw_1", "/v1/species", thumb):
        r = client.get(path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", path
        assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 403, path
        assert client.get(path, headers=KEY).status_code == 200, path
    assert client.get(thumb, headers=KEY).headers["cache-control"].startswith("private")
    for path in ("/health", "/ready", "/metrics"):  # probes stay open
        assert client.get(path).status_code == 200, path
    assert _predict(client, image_bytes(BLUE)).status_code == 200  # identifying a photo is not a read


def test_withheld_positions_and_public_details(make_client):
    withheld = make_client(public_location_precision="withheld")
    assert _enrol(withheld, "hw_1", gps_photo(BLUE, 41.5, -69.5)).status_code == 200
    seen = withheld.get("/v1/individuals/hw_1").json()["images"][0]["sighting"]
    assert seen["latitude"] is None and seen["longitude"] is None and seen["precision"] == "withheld"
    assert withheld.get("/v1/individuals/hw_1", headers=KEY).json()["images"][0]["sighting"]["latitude"]
    coarse = make_client(public_location_precision="1")
    assert _enrol(coarse, "hw_1", gps_photo(BLUE, 41.5, -69.5)).status_code == 200
    seen = coarse.get("/v1/individuals/hw_1").json()["images"][0]["sighting"]
    assert (seen["latitude"], seen["longitude"], seen["precision"]) == (41.5, -69.5, "1")


def test_a_refused_batch_leaves_the_budget_and_a_batch_over_the_whole_budget_is_413(make_client):
    client = make_client(rate_limit="5/minute")
    archive = make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i) for i in range(3)})
    assert client.post("/v1/predict-batch", files={"archive": ("a.zip", archive)}).status_code == 200
    too_many = make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i) for i in range(4)})
    r = client.post("/v1/predict-batch", files={"archive": ("b.zip", too_many)})
    assert r.status_code == 429 and r.headers["Retry-After"]
    # the refused batch cost its one request, not its four images: one hit is left
    assert _predict(client, image_bytes(BLUE)).status_code == 200
    assert _predict(client, image_bytes(BLUE)).status_code == 429
    fresh = make_client(rate_limit="5/minute")
    huge = make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i) for i in range(6)})
    r = fresh.post("/v1/predict-batch", files={"archive": ("c.zip", huge)})
    assert r.status_code == 413 and "at most 5 images" in r.json()["error"]["message"]


def test_defaults_let_the_largest_batch_through_one_window():
    from limits import parse

    from whales_be_service.settings import Settings

    s = Settings(frontend_dir=None)
    assert parse(s.rate_limit).amount >= s.max_batch_images


def test_an_upload_over_the_limit_is_refused_before_its_body_is_read():
    app = create_app(fake_settings(rate_limit="1/minute"), store=InMemoryStore(), embedder=FakeEmbedder(),
                     gate=FakeGate(), catalog_factory=FakeCatalog)
    with ThreadedServer(app) as server:
        import httpx

        assert httpx.post(f"{server.url}/v1/predict",
                          files={"file": ("q.jpg", image_bytes(BLUE), "image/jpeg")}).status_code == 200
        # headers announce 100 MB; not one byte of the body is sent, yet the answer comes at once
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                         b"boundary=b\r\nContent-Length: 100000000\r\n\r\n")
            started = time.monotonic()
            head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 429"), head[:200]
        assert time.monotonic() - started < 2 and b"retry-after" in head.lower()


def test_retention_deletes_old_unreviewed_photos_and_records(make_client):
    client = make_client(query_image_retention_days=0.5 / 86400, prediction_retention_days=1.5 / 86400,
                         retention_check_s=0.01)
    first = _predict(client, image_bytes(BLUE)).json()["prediction_id"]
    kept = _predict(client, image_bytes(BLUE, seed=1)).json()["prediction_id"]
    assert client.post(f"/v1/predictions/{kept}/review", headers=KEY,
                       json={"decision": "new_individual"}).status_code == 200
    time.sleep(0.7)
    _predict(client, image_bytes(BLUE, seed=2))  # a prediction triggers the purge
    assert client.get(f"/v1/predictions/{first}/image", headers=KEY).status_code == 404  # photo gone
    assert client.get(f"/v1/predictions/{kept}/image", headers=KEY).status_code == 200  # reviewed: kept
    time.sleep(1.0)
    _predict(client, image_bytes(BLUE, seed=3))
    r = client.post(f"/v1/predictions/{first}/review", headers=KEY, json={"decision": "not_cetacean"})
    assert r.status_code == 404  # the unreviewed record is gone too
    assert client.get(f"/v1/predictions/{kept}/image").status_code == 200


class FlakyStore(InMemoryStore):
    """Fails the next `fail` calls of `method` with a driver error that carries a path."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, int] = {}

    def _maybe_fail(self, method: str) -> None:
        if self.fail.get(method, 0) > 0:
            self.fail[method] -= 1
            raise sqlite3.OperationalError("disk I/O error at /srv/secret/whales.db")

    def save_review(self, *args, **kwargs):
        if kwargs.get("expected_state") is None:  # the second write of a review: after enrolling
            self._maybe_fail("save_review")
        return super().save_review(*args, **kwargs)

    def get_prediction(self, prediction_id):
        self._maybe_fail("get_prediction")
        return super().get_prediction(prediction_id)


def test_a_review_that_fails_half_way_enrols_nothing_and_can_be_retried(make_client):
    store = FlakyStore()
    client = make_client(store=store)
    assert _enrol(client, "hw_1", image_bytes(BLUE, seed=5)).status_code == 200
    pid = _predict(client, image_bytes(BLUE, seed=6)).json()["prediction_id"]
    store.fail["save_review"] = 1  # the database fails after the photo was enrolled
    r = client.post(f"/v1/predictions/{pid}/review", headers=KEY, json={"decision": "confirm",
                                                                        "individual_id": "hw_1"})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.json()["error"]["code"] == "store_unavailable" and "/srv" not in r.text and "disk" not in r.text
    assert client.get("/v1/individuals/hw_1").json()["n_images"] == 1  # rolled back, also in memory
    assert store.get_prediction(pid).review_state == "unreviewed"
    r = client.post(f"/v1/predictions/{pid}/review", headers=KEY, json={"decision": "confirm",
                                                                        "individual_id": "hw_1"})
    assert r.status_code == 200  # the retry enrols the photo exactly once
    assert client.get("/v1/individuals/hw_1").json()["n_images"] == 2
    again = client.post(f"/v1/predictions/{pid}/review", headers=KEY, json={"decision": "confirm"})
    assert again.status_code == 409


def test_database_errors_are_503_without_internals(make_client):
    store = FlakyStore()
    client = make_client(store=store)
    store.fail["get_prediction"] = 1
    r = client.get("/v1/predictions/abc/image", headers=KEY)
    assert r.status_code == 503 and r.json()["error"] == {
        "code": "store_unavailable", "message": "the database is unavailable; retry shortly",
        "details": {"component": "store"}}
    assert r.headers["Retry-After"]


def test_uvicorn_believes_forwarded_headers_only_from_the_trusted_proxies(tmp_path):
    """The Makefile and the Dockerfile start uvicorn with --forwarded-allow-ips set from
    WHALES_TRUSTED_PROXIES (uvicorn's default believes loopback); unset, a client on loopback cannot
    pick its rate-limit identity with X-Forwarded-For."""
    import os
    import re
    from pathlib import Path

    import httpx
    from svc_server import start_uvicorn, stop_process

    root = Path(__file__).resolve().parents[2]
    flag = '--forwarded-allow-ips "${WHALES_TRUSTED_PROXIES:-}"'
    assert flag.replace("${", "$${") in (root / "Makefile").read_text()
    assert flag.replace('"', '\\"') in (root / "Dockerfile").read_text()
    assert "--forwarded-allow-ips" in (root / "docs" / "DEPLOYMENT.md").read_text()
    expanded = re.sub(r"\$\{WHALES_TRUSTED_PROXIES:-\}", "", flag).split(" ", 1)[1].strip('"')
    here = Path(__file__).resolve().parent
    env = {**os.environ, "WHALES_TEST_DB_URL": f"sqlite:///{tmp_path / 'w.db'}",
           "WHALES_TEST_RATE_LIMIT": "2/minute", "PYTHONPATH": f"{here}{os.pathsep}{root}"}
    url, proc = start_uvicorn(["svc_shared_app:create", "--factory", "--forwarded-allow-ips", expanded], env,
                              tmp_path / "log")
    try:
        codes = [httpx.post(f"{url}/v1/predict", headers={"X-Forwarded-For": f"203.0.113.{i}"},
                            files={"file": ("q.jpg", image_bytes(BLUE), "image/jpeg")}).status_code
                 for i in range(3)]
        assert codes == [200, 200, 429]  # three "clients" were one: the header was not believed
    finally:
        stop_process(proc)


def test_planning_a_zip_listing_a_million_entries_is_bounded_in_time_and_memory():
    """The refusal comes from the end records: constant time and memory (before: 4.2 s, +225 MB)."""
    import tempfile
    import tracemalloc

    import pytest
    from svc_helpers import directory_only_zip

    from whales_be_service.errors import ServiceError
    from whales_be_service.settings import Settings
    from whales_be_service.uploads import plan_batch

    upload = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # what an UploadFile holds
    upload.write(directory_only_zip(1_000_000))  # 47 MB, zip64 end records
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ServiceError) as refused:
        plan_batch([("big.zip", upload)], Settings(frontend_dir=None))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert refused.value.status == 413 and refused.value.details["entries"] == 1_000_000
    assert elapsed < 0.5 and peak < 1_000_000, (elapsed, peak)


def test_archive_planning_waits_in_the_bounded_pool(make_client):
    """With the pool full, even reading an archive's directory is refused (503), not done beside it."""
    client = make_client(inference_workers=1, queue_size=0)
    pool = client.app.state.whales.pool
    pool._acquire()  # the one worker is busy
    try:
        r = client.post("/v1/predict-batch", files={"archive": ("bad.zip", b"PK\x03\x04 not really a zip")})
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"  # not 400: never planned
    finally:
        pool._release()
    r = client.post("/v1/predict-batch", files={"archive": ("bad.zip", b"PK\x03\x04 not really a zip")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_archive"
