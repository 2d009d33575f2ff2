"""Liveness, readiness (including a broken component), models, metrics, OpenAPI."""

from __future__ import annotations

from svc_fakes import API_KEY, FakeEmbedder

from whales_identify.records.store import InMemoryStore


class BrokenStore(InMemoryStore):
    def ping(self) -> None:
        raise ConnectionError("database at db:5432 refused the connection")


def test_health_and_ready(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = client.get("/ready")
    assert r.status_code == 200
    assert set(r.json()["components"]) >= {"store", "embedder", "gate", "catalog", "warmup"}


def test_ready_names_the_broken_component_and_predict_is_503(make_client):
    client = make_client(ready=False, store=BrokenStore())
    for _ in range(200):
        body = client.get("/ready").json()
        if body["error"]["details"]["components"]["store"] != "pending":
            break
    r = client.get("/ready")
    assert r.status_code == 503
    err = r.json()["error"]
    # the public answer names the component; the driver's message (hosts, paths) stays in the log
    assert err["code"] == "not_ready" and "store" in err["message"] and "ConnectionError" in err["message"]
    assert "db:5432" not in r.text and "refused" not in r.text
    assert r.headers["Retry-After"]
    detailed = client.get("/ready", headers={"X-API-Key": API_KEY}).json()["error"]
    assert "refused" in detailed["message"]  # an operator with a key sees the reason
    assert client.get("/health").status_code == 200
    r = client.post("/v1/predict", files={"file": ("a.jpg", b"xx", "image/jpeg")})
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_models(client):
    body = client.get("/v1/models").json()
    roles = {m["role"]: m for m in body["models"]}
    assert roles["embedding"]["model_id"] == FakeEmbedder.model_id
    assert roles["gate"]["backend"] == "fake" and roles["gate"]["loaded"]
    assert body["catalog"]["images"] == 0
    # the configured (default) embedding's model card: what it is for, from the registry entry
    card = roles["embedding"]["card"]
    assert "right whale" in card["intended_use"] and "local features" in card["limits"]
    happywhale = next(r for r in card["results"] if r["key"].endswith("happywhale.mean_se.top1.mean"))
    assert happywhale["value"] < 0.1 and happywhale["report"] == "reports/metrics_crossfit_full.json"


def test_metrics_exposes_required_families(client):
    client.get("/health")
    text = client.get("/metrics").text
    for name in ("whales_http_requests_total", "whales_http_request_duration_seconds",
                 "whales_inference_stage_seconds", "whales_predictions_total",
                 "whales_inference_queue_depth", "whales_catalog_images", "whales_model_info"):
        assert name in text
    assert 'route="/health"' in text


def test_openapi_documents_every_route_with_examples(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/health", "/ready", "/v1/models", "/v1/predict", "/v1/predict-batch", "/v1/individuals",
                 "/v1/individuals/{individual_id}", "/v1/individuals/{individual_id}/images",
                 "/v1/images/{image_id}/thumbnail", "/v1/predictions/{prediction_id}/review",
                 "/predict", "/predict-single", "/predict-batch"):
        assert path in paths, path
    assert "example" in spec["components"]["schemas"]["PredictionOut"]
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]


def test_unknown_path_uses_the_error_shape(client):
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
