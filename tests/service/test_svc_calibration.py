"""WHALES_CALIBRATION: the service loads a calibration fitted on the user's own catalog, and refuses
(not ready, naming the setting and the fix) one fitted for another model or unreadable."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from svc_fakes import API_KEY, FakeEmbedder, FakeGate, fake_settings, wait_ready

from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore
from whales_identify.reid.calibrate import Calibration


def _client(**settings) -> TestClient:
    # the real Catalog (no catalog_factory override), so the setting's path is the one exercised
    app = create_app(fake_settings(**settings), store=InMemoryStore(), embedder=FakeEmbedder(),
                     gate=FakeGate())
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    return client


def _write(path, model_id: str) -> str:
    cal = Calibration(model_id=model_id, new_individual_threshold=0.42, fitted=True)
    path.write_text(json.dumps(cal.to_dict()))
    return str(path)


def test_a_calibration_fitted_for_the_model_is_loaded(tmp_path):
    default = _client()
    try:
        wait_ready(default)
        assert default.get("/v1/models").json()["catalog"]["calibrated"] is False
    finally:
        default.__exit__(None, None, None)
    client = _client(calibration=_write(tmp_path / "mine.json", FakeEmbedder.model_id))
    try:
        wait_ready(client)
        assert client.get("/v1/models").json()["catalog"]["calibrated"] is True
    finally:
        client.__exit__(None, None, None)


def test_a_calibration_for_another_model_or_unreadable_keeps_the_service_not_ready(tmp_path):
    for path, expected in ((_write(tmp_path / "other.json", "efficientnet_lite2.imagenet"),
                            "was fitted for efficientnet_lite2.imagenet"),
                           (str(tmp_path / "missing.json"), "cannot read the calibration")):
        client = _client(calibration=path)
        try:
            for _ in range(200):
                body = client.get("/ready", headers={"X-API-Key": API_KEY}).json()
                if body.get("error", {}).get("details", {}).get("components", {}).get("catalog") not in (
                        None, "pending"):
                    break
            r = client.get("/ready", headers={"X-API-Key": API_KEY})
            assert r.status_code == 503
            message = r.json()["error"]["details"]["components"]["catalog"]
            assert "WHALES_CALIBRATION" in message and expected in message, message
            assert "whales evaluate" in message or "cannot read" in message
        finally:
            client.__exit__(None, None, None)
