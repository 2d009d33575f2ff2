"""/metrics labels the embedding model with the runtime that actually serves it (it once said
"torch" whatever ran, so an ONNX deployment looked like a PyTorch one)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from svc_fakes import FakeEmbedder, FakeGate, fake_settings, wait_ready

from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore


class OnnxServedEmbedder(FakeEmbedder):
    model_id = "fake.onnx_served"  # a label set no other test records
    backend = "onnx"


def test_metrics_report_the_onnx_backend_that_serves():
    app = create_app(fake_settings(), store=InMemoryStore(), embedder=OnnxServedEmbedder(),
                     gate=FakeGate())
    with TestClient(app) as client:
        wait_ready(client)
        text = client.get("/metrics").text
    info = [line for line in text.splitlines()
            if line.startswith("whales_model_info{") and 'model_id="fake.onnx_served"' in line]
    assert len(info) == 1, info
    assert re.search(r'backend="onnx"', info[0]) and 'role="embedding"' in info[0], info[0]
