"""Benchmark: does `/health` answer in < 50 ms while the inference pool is saturated?

Starts `uvicorn whales_be_service.main:app` (real embedded models, SQLite in a temp folder), floods
`/v1/predict` from several client threads so the worker pool and its queue stay full (the excess
gets 503 + Retry-After), and meanwhile probes `/health` every 50 ms. Writes
reports/health_under_load.json.

    python scripts/benchmark_health.py [--seconds 30] [--clients 8] [--out reports/health_under_load.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)

    return {"n": len(values), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "max_ms": round(ordered[-1], 2), "mean_ms": round(statistics.fmean(values), 2),
            "under_50ms": round(sum(v < 50 for v in values) / len(values), 4)}


def probe_health(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            client.get(f"{url}/health").raise_for_status()
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)


def flood(url: str, stop: threading.Event, statuses: Counter, seed: int) -> None:
    data = photo(seed)
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            r = client.post(f"{url}/v1/predict", files={"file": ("p.jpg", data, "image/jpeg")})
            statuses[r.status_code] += 1
            if r.status_code == 503:
                time.sleep(0.05)


def queue_depth(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    m = re.search(r"^whales_inference_queue_depth ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="WHALES_INFERENCE_WORKERS")
    parser.add_argument("--queue", type=int, default=4, help="WHALES_QUEUE_SIZE")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "health_under_load.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="whales-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gate_dir = Path(os.environ.get("WHALES_MODELS_DIR") or ROOT / "models") / "gate"
    gate = "embedded" if gate_dir.is_dir() and any(gate_dir.glob("*.npz")) else "off"
    env = {**os.environ, "WHALES_DATABASE_URL": f"sqlite:///{tmp / 'w.db'}", "WHALES_GATE": gate,
           "WHALES_RATE_LIMIT_ENABLED": "false", "WHALES_INFERENCE_WORKERS": str(args.workers),
           "WHALES_QUEUE_SIZE": str(args.queue)}
    log = open(tmp / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--host",
                               "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not _ready(url):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server not ready; see " + str(tmp / "server.log"))
            time.sleep(0.5)

        idle: list[float] = []
        stop = threading.Event()
        t = threading.Thread(target=probe_health, args=(url, stop, idle))
        t.start()
        time.sleep(3)
        stop.set()
        t.join()

        loaded: list[float] = []
        statuses: Counter = Counter()
        depths: list[float] = []
        stop = threading.Event()
        threads = [threading.Thread(target=flood, args=(url, stop, statuses, i)) for i in range(args.clients)]
        for th in threads:
            th.start()
        time.sleep(2)  # let the queue fill before measuring
        prober = threading.Thread(target=probe_health, args=(url, stop, loaded))
        prober.start()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            depths.append(queue_depth(url))
            time.sleep(0.5)
        stop.set()
        for th in [*threads, prober]:
            th.join()
    finally:
        server.terminate()
        server.wait(30)
        log.close()

    report = {
        "benchmark": "GET /health latency while POST /v1/predict saturates the inference pool",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "config": {"seconds": args.seconds, "clients": args.clients, "inference_workers": args.workers,
                   "queue_size": args.queue, "gate": gate, "image": "640x480 JPEG"},
        "health_idle": percentiles(idle),
        "health_under_load": percentiles(loaded),
        "predict_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "queue_depth": {"max": max(depths, default=0),
                        "mean": round(statistics.fmean(depths), 2) if depths else 0,
                        "capacity": args.workers + args.queue},
    }
    report["pass"] = bool(loaded) and report["health_under_load"]["p99_ms"] < 50
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
