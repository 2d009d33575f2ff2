"""Schemathesis fuzzing of every operation in the OpenAPI spec.

The app runs on fakes behind a real uvicorn (in a thread) so the lifespan runs once; each operation
gets a bounded number of positive and negative examples. Zero 5xx (503 `overloaded` aside, which
is documented), and the service is still ready afterwards. (Schemathesis' own pytest plugin does not
support pytest 9 yet, so operations are driven through `as_strategy()` and hypothesis directly.)
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from svc_fakes import API_KEY, FakeCatalog, FakeEmbedder, FakeGate, fake_settings
from svc_helpers import image_bytes
from svc_server import ThreadedServer

from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore

MAX_EXAMPLES = 25
STATUSES: Counter[int] = Counter()  # over the whole module; printed with `-s` for reports


def _app():
    return create_app(fake_settings(rate_limit_enabled=False, max_upload_bytes=2_000_000),
                      store=InMemoryStore(), embedder=FakeEmbedder(), gate=FakeGate(),
                      catalog_factory=FakeCatalog)


SPEC = _app().openapi()
CASES = [(method.upper(), path, mode) for path, item in SPEC["paths"].items()
         for method, op in item.items() if method in {"get", "post", "put", "delete", "patch"}
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         # negative data needs something to break: parameters or a body
         if mode is GenerationMode.POSITIVE or op.get("parameters") or op.get("requestBody")]


PHOTO = image_bytes((30, 60, 120), size=(64, 48), seed=1)


def with_real_photo(case, mode) -> None:
    """In positive mode, half the generated uploads carry a real photo, so the parameters around it
    (top_k, mask, sighting fields, species...) are fuzzed past the decoder too."""
    body = case.body
    if mode is not GenerationMode.POSITIVE or not isinstance(body, dict) or len(STATUSES) % 2:
        return
    for field in ("file", "archive"):
        if field in body:
            body[field] = PHOTO
    if isinstance(body.get("files"), list) and body["files"]:
        body["files"] = [PHOTO for _ in body["files"]]


@pytest.fixture(scope="module")
def fuzz_server():
    with ThreadedServer(_app()) as server:
        yield server
        assert httpx.get(f"{server.url}/ready").status_code == 200
    print(f"\nschemathesis status codes: {dict(sorted(STATUSES.items()))}")


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


@pytest.mark.parametrize("method,path,mode", CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_no_server_errors(fuzz_server, fuzz_schema, method, path, mode):
    operation = fuzz_schema[path][method]
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        with_real_photo(case, mode)
        headers = {**(case.headers or {}), "X-API-Key": API_KEY}
        response = case.call(base_url=fuzz_server.url, headers=headers, timeout=30)
        statuses.append(response.status_code)
        STATUSES[response.status_code] += 1
        where = f"{case.method} {case.formatted_path}: {response.status_code} {response.content[:500]!r}"
        assert response.status_code < 500, where
        ctype = response.headers.get("content-type") or ""
        is_json = "application/json" in (ctype[0] if isinstance(ctype, list) and ctype else str(ctype))
        if response.status_code >= 400 and is_json:
            assert set(response.json()) == {"error"}, where

    run()
    assert statuses


LIVE_OPERATIONS = [("POST", "/v1/predict"), ("POST", "/v1/predict-batch"), ("GET", "/v1/individuals"),
                   ("GET", "/v1/individuals/{individual_id}"), ("GET", "/v1/images/{image_id}/thumbnail")]


def _live_runner(operation, mode, url):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        with_real_photo(case, mode)
        response = case.call(base_url=url, timeout=120)
        STATUSES[response.status_code] += 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"

    return run


@pytest.mark.parametrize("method,path", LIVE_OPERATIONS, ids=[f"{m} {p}" for m, p in LIVE_OPERATIONS])
def test_live_server_fuzz(live_server, method, path):
    """A smaller run against the real models (no API key: read and predict operations only)."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operation = schema[path][method]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        _live_runner(operation, mode, live_server.url)()
    assert httpx.get(f"{live_server.url}/ready").status_code == 200
