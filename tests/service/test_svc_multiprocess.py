"""/metrics with two uvicorn workers (PROMETHEUS_MULTIPROC_DIR): every scrape shows the total."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from svc_server import free_port, wait_http_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _health_count(text: str) -> float:
    pattern = r'whales_http_requests_total\{method="GET",route="/health",status="200"\} ([0-9.e+]+)'
    m = re.search(pattern, text)
    return float(m.group(1)) if m else 0.0


def test_metrics_aggregate_across_workers(tmp_path):
    port = free_port()
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom), "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
    log = open(tmp_path / "log", "wb")
    cmd = [sys.executable, "-m", "uvicorn", "svc_live_app:create", "--factory", "--workers", "2",
           "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ready(url, 90, alive=lambda: proc.poll() is None)
        for _ in range(40):
            assert httpx.get(f"{url}/health", headers={"Connection": "close"}).status_code == 200
        counts = [_health_count(httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text)
                  for _ in range(6)]
        assert all(c >= 40 for c in counts), counts
        assert len({p.name.split("_")[-1] for p in prom.glob("*.db")}) >= 2  # files from both workers
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
