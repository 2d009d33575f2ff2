"""An app on fake models over a real shared database, for `uvicorn --workers N` tests:
`WHALES_TEST_DB_URL=sqlite:///... uvicorn svc_shared_app:create --factory --workers 2`.

The store is the real one the URL names (SQLite file or PostgreSQL) and the catalog is the real
`whales_identify.reid.catalog.Catalog`; only the embedder and the gate are fakes. Every answer carries
`X-Test-Pid`, so a test can tell which worker answered.
"""

from __future__ import annotations

import os
from pathlib import Path

from svc_fakes import FakeEmbedder, FakeGate, fake_settings

from whales_be_service.main import create_app
from whales_identify.reid.catalog import Catalog

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


def create():
    rate = os.environ.get("WHALES_TEST_RATE_LIMIT", "100000/minute")
    settings = fake_settings(database_url=os.environ["WHALES_TEST_DB_URL"], rate_limit=rate,
                             read_rate_limit="100000/minute", max_batch_images=100,
                             frontend_dir=str(FRONTEND),
                             require_key_for_reads=os.environ.get("WHALES_TEST_REQUIRE_KEY") == "1")
    app = create_app(settings, embedder=FakeEmbedder(), gate=FakeGate(), catalog_factory=Catalog)

    @app.middleware("http")
    async def worker_pid(request, call_next):
        response = await call_next(request)
        response.headers["X-Test-Pid"] = str(os.getpid())
        return response

    return app
