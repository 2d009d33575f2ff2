"""The gate's threshold and band come from its head's json: a head swapped in through
WHALES_MODELS_DIR brings its own; WHALES_GATE_THRESHOLD and WHALES_GATE_CONFIG only override."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from svc_fakes import FakeEmbedder, fake_settings, wait_ready

from whales_be_service.main import create_app
from whales_be_service.settings import Settings
from whales_identify.gate.head import DEFAULT_HEAD, fit_head
from whales_identify.records.store import InMemoryStore


def _swapped_head(models_dir: Path, threshold: float, band: list[float]) -> str:
    rng = np.random.default_rng(0)
    x = np.abs(np.concatenate([rng.normal(1, 0.3, (30, 16)), rng.normal(0.2, 0.1, (30, 16))]))
    head = fit_head(x, np.array([1] * 30 + [0] * 30), FakeEmbedder.model_id, 1.0, hidden=0)
    head.meta = {"threshold": threshold, "borderline": band}
    head.save(models_dir, DEFAULT_HEAD)
    return head.version


def _gate_entry(settings: Settings) -> dict:
    app = create_app(settings, store=InMemoryStore(), embedder=FakeEmbedder())
    with TestClient(app) as client:
        wait_ready(client)
        return next(m for m in client.get("/v1/models").json()["models"] if m["role"] == "gate")


def test_a_head_swapped_in_through_the_models_dir_brings_its_own_threshold(tmp_path, monkeypatch):
    version = _swapped_head(tmp_path, 0.123, [0.05, 0.4])
    monkeypatch.setenv("WHALES_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("WHALES_GATE_THRESHOLD", raising=False)
    monkeypatch.delenv("WHALES_GATE_CONFIG", raising=False)
    gate = _gate_entry(fake_settings(gate="embedded"))
    assert gate["version"] == version and gate["threshold"] == 0.123


def test_the_threshold_setting_and_an_operators_yaml_override_the_head(tmp_path, monkeypatch):
    _swapped_head(tmp_path, 0.123, [0.05, 0.4])
    monkeypatch.setenv("WHALES_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("WHALES_GATE_THRESHOLD", "0.7")
    assert _gate_entry(fake_settings(gate="embedded"))["threshold"] == 0.7
    monkeypatch.delenv("WHALES_GATE_THRESHOLD")
    yaml = tmp_path / "overrides.yaml"
    yaml.write_text("embedded:\n  threshold: 0.3\n")
    assert _gate_entry(fake_settings(gate="embedded", gate_config=str(yaml)))["threshold"] == 0.3
