"""The bounded pool: a full queue answers 503 with Retry-After at once; /health stays fast."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from svc_fakes import FakeCatalog, FakeEmbedder, FakeGate, fake_settings, wait_ready
from svc_helpers import image_bytes

from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore


class SlowEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        self.gate = threading.Event()

    def features(self, images):
        self.gate.wait(10)
        return super().features(images)


def test_full_queue_is_503_and_health_stays_fast():
    embedder = SlowEmbedder()
    embedder.gate.set()  # let the warm-up through
    app = create_app(fake_settings(inference_workers=1, queue_size=1, retry_after_s=7), store=InMemoryStore(),
                     embedder=embedder, gate=FakeGate(), catalog_factory=FakeCatalog)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        embedder.gate.clear()
        data = image_bytes((30, 60, 120))

        def post():
            return client.post("/v1/predict", files={"file": ("a.jpg", data, "image/jpeg")})

        with ThreadPoolExecutor(4) as ex:
            futures = [ex.submit(post) for _ in range(2)]
            deadline = time.monotonic() + 5
            while app.state.whales.pool.pending < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert app.state.whales.pool.pending == 2  # one running, one queued
            refused = post()
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "7"
            assert refused.json()["error"]["code"] == "overloaded"
            t0 = time.perf_counter()
            assert client.get("/health").status_code == 200
            assert time.perf_counter() - t0 < 0.5
            assert "whales_inference_queue_depth 2.0" in client.get("/metrics").text
            embedder.gate.set()
            assert [f.result().status_code for f in futures] == [200, 200]
        assert app.state.whales.pool.pending == 0


def test_unset_concurrency_uses_each_core_once(monkeypatch):
    """Unset WHALES_INFERENCE_WORKERS / _THREADS: one single-threaded worker per core of this process
    (its share among WEB_CONCURRENCY processes); a value set is kept, and the other follows it."""
    from whales_be_service import settings as settings_module
    from whales_be_service.settings import Settings

    monkeypatch.delenv("WHALES_INFERENCE_WORKERS", raising=False)
    monkeypatch.delenv("WHALES_INFERENCE_THREADS", raising=False)
    monkeypatch.delenv("WHALES_TORCH_THREADS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: set(range(4)))
    s = Settings()
    assert (s.inference_workers, s.inference_threads) == (4, 1)
    assert Settings(inference_workers=1).inference_threads == 4
    assert Settings(inference_workers=3).inference_threads == 1
    assert Settings(inference_threads=2).inference_workers == 2  # threads set by hand: workers follow
    assert Settings(inference_threads=8).inference_workers == 1
    assert (Settings(inference_workers=3, inference_threads=3).inference_workers,
            Settings(inference_workers=3, inference_threads=3).inference_threads) == (3, 3)  # kept
    monkeypatch.setenv("WEB_CONCURRENCY", "2")  # two uvicorn processes share the 4 cores
    assert (Settings().inference_workers, Settings().inference_threads) == (2, 1)
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: {0})
    assert (Settings().inference_workers, Settings().inference_threads) == (1, 1)


def test_the_service_limits_the_process_wide_thread_pools():
    """WHALES_INFERENCE_THREADS reaches every pthreads BLAS library (idle OpenBLAS threads spin: 40 %
    of a request's CPU on 2 cores) and OpenCV once the app has started; OpenMP (faiss's vote search)
    keeps its own count. In a child process: the limits outlive the app."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import sys
sys.path.insert(0, 'tests/service')
import cv2, faiss, threadpoolctl
from fastapi.testclient import TestClient
from svc_fakes import FakeCatalog, FakeEmbedder, FakeGate, fake_settings, wait_ready
from whales_be_service.main import create_app
from whales_identify.records.store import InMemoryStore

def threads():
    info = threadpoolctl.threadpool_info()
    blas = {i["num_threads"] for i in info if i.get("threading_layer") == "pthreads"}
    return blas, cv2.getNumThreads(), faiss.omp_get_max_threads()

assert 1 not in threads()[0] and threads()[2] == 3, threads()  # the child's environment, below
app = create_app(fake_settings(inference_threads=1), store=InMemoryStore(), embedder=FakeEmbedder(),
                 gate=FakeGate(), catalog_factory=FakeCatalog)
with TestClient(app) as client:
    wait_ready(client)
    assert threads() == ({1}, 1, 3), threads()
    in_worker = app.state.whales.pool._executor.submit(threads).result()
    assert in_worker[:2] == ({1}, 1), in_worker
print("ok")
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}  # not 1 before the app
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
