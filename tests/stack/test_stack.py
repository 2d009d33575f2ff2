"""What scripts/verify_containers.sh checks on the compose stack, on every CI run without containers:
the page and the API through nginx (frontend/nginx.conf), /ready, Prometheus (deploy/prometheus.yml)
scraping the whales_* metrics, and a catalog enrolment seen by both uvicorn workers and after a
restart of the API, on PostgreSQL with the real default models."""

from __future__ import annotations

import io
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from stack_procs import API_KEY, Stack, known_by_worker, prom_query, wait_until

pytestmark = pytest.mark.stack
INDIVIDUAL = "stack_whale_1"


@pytest.fixture(scope="module")
def photos(data_dir, manifest) -> list[bytes]:
    """Two photos of cetaceans (the gate passes them with the real models)."""
    rows = [r for r in manifest if r.is_cetacean and r.relpath.startswith("positives/happywhale/")][:2]
    assert len(rows) == 2
    return [(data_dir / r.relpath).read_bytes() for r in rows]


def _predict(url: str, photo: bytes) -> dict:
    # a new connection each time (nginx opens one per request to the upstream as well), so the
    # kernel spreads the requests over both workers
    r = httpx.post(f"{url}/v1/predict", files={"file": ("q.jpg", photo, "image/jpeg")},
                   headers={"Connection": "close"}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_page_via_nginx(stack: Stack):
    page = httpx.get(f"{stack.web_url}/")
    assert page.status_code == 200 and "<title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{stack.web_url}/app.js").status_code == 200
    assert httpx.get(f"{stack.web_url}/nginx.conf").status_code == 404
    # the API answers through nginx, the page itself does not reach the API
    assert httpx.get(f"{stack.web_url}/health").json()["status"] == "ok"


def test_ready_on_the_api(stack: Stack):
    r = httpx.get(f"{stack.api_url}/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_predict_and_batch_via_nginx(stack: Stack, photos):
    result = _predict(stack.web_url, photos[0])
    assert result["is_cetacean"] is True and result["gate_backend"] == "embedded"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, photo in enumerate(photos):
            z.writestr(f"p{i}.jpg", photo)
    r = httpx.post(f"{stack.web_url}/v1/predict-batch", files={"archive": ("b.zip", buf.getvalue())},
                   timeout=180)
    assert r.status_code == 200, r.text
    assert [x["image_ind"] for x in r.json()["results"]] == ["p0.jpg", "p1.jpg"]


def test_prometheus_scrapes_the_whales_metrics(stack: Stack, photos):
    _predict(stack.web_url, photos[1])

    def scraped() -> list[dict]:
        up = prom_query(stack.prom_url, 'up{job="whales-api"}')
        if not (up and up[0]["value"][1] == "1"):
            return []
        return prom_query(stack.prom_url, 'sum(whales_predictions_total{job="whales-api"})')

    result = wait_until("Prometheus scraping whales_predictions_total", scraped, 60)
    assert float(result[0]["value"][1]) >= 1  # type: ignore[index]
    names = prom_query(stack.prom_url, 'count by (__name__) ({__name__=~"whales_.+", job="whales-api"})')
    assert {"whales_ready", "whales_http_requests_total", "whales_model_info"} <= \
        {s["metric"]["__name__"] for s in names}


def test_enrolment_is_seen_by_both_workers_and_after_a_restart(stack: Stack, photos):
    r = httpx.post(f"{stack.web_url}/v1/individuals/{INDIVIDUAL}/images", headers={"X-API-Key": API_KEY},
                   files=[("files", ("e.jpg", photos[0], "image/jpeg"))], data={"species": "humpback_whale"},
                   timeout=120)
    assert r.status_code == 200 and len(r.json()["enrolled"]) == 1, r.text
    # Both workers must answer with the new individual: the one that did not enrol reloads the
    # catalog from PostgreSQL (WHALES_CATALOG_REFRESH_S=1). Which worker answered is read from
    # each worker's own metrics file.
    time.sleep(1.5)
    named, total, per_worker = 0, 0, {}
    with ThreadPoolExecutor(4) as pool:
        for _ in range(6):
            answers = list(pool.map(lambda _: _predict(stack.web_url, photos[0]), range(4)))
            named += sum(a["individual_id"] == INDIVIDUAL for a in answers)
            total += len(answers)
            per_worker = known_by_worker(stack.prom_dir)
            if sum(v > 0 for v in per_worker.values()) >= 2:
                break
    assert named == total, f"{named}/{total} predictions named {INDIVIDUAL}"
    assert sum(v > 0 for v in per_worker.values()) >= 2, f"known answers per worker pid: {per_worker}"

    stack.restart_api()
    assert httpx.get(f"{stack.web_url}/v1/individuals/{INDIVIDUAL}").status_code == 200
    assert all(_predict(stack.web_url, photos[0])["individual_id"] == INDIVIDUAL for _ in range(4))


def test_catalog_import_and_reference_batch_via_nginx(stack: Stack, photos):
    """The page's import (NDJSON progress through nginx) and a reference-API client's batch call."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("season/p1.jpg", photos[1])  # photos[0] is the enrolment test's individual
        z.writestr("broken.jpg", photos[0][:300])
    sheet = ("filename,individual_id,species\n"
             "p1.jpg,stack_import_1,humpback_whale\nmissing.jpg,stack_import_2,beluga\n")
    with httpx.stream("POST", f"{stack.web_url}/v1/catalog/import", timeout=180,
                      headers={"X-API-Key": API_KEY, "Accept": "application/x-ndjson"},
                      files={"archive": ("c.zip", buf.getvalue()),
                             "manifest": ("c.csv", sheet.encode())}) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.strip()]
    parsed = [json.loads(e) for e in events]
    assert [e["event"] for e in parsed] == ["progress", "progress", "result"]
    assert parsed[-1]["summary"]["enrolled"] == 1
    assert [(p["line"], p["code"]) for p in parsed[-1]["problems"]] == [(3, "file_not_found")]
    time.sleep(1.5)  # the other worker reloads the catalog within WHALES_CATALOG_REFRESH_S=1
    r = httpx.post(f"{stack.web_url}/reference/v1/predict-batch", timeout=180,
                   files={"archive": ("b.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert [(d["image_ind"], d["rejection_reason"]) for d in r.json()] == [
        ("season/p1.jpg", None), ("broken.jpg", "corrupted_image")]
    assert r.json()[0]["class_animal"] == "stack_import_1"
