"""An app factory on fakes for multi-worker uvicorn tests: `uvicorn svc_live_app:create --factory`."""

from __future__ import annotations

from svc_fakes import FakeCatalog, FakeEmbedder, FakeGate, fake_settings

from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore


def create():
    return create_app(fake_settings(), store=InMemoryStore(), embedder=FakeEmbedder(), gate=FakeGate(),
                      catalog_factory=FakeCatalog)
