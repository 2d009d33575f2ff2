"""Benchmark: what a match explanation costs, recomputed per request versus stored per prediction.

Starts `uvicorn whales_be_service.main:app` (real embedded models, SQLite in a temp folder), enrols
one photo each of the first right whales and Happywhale individuals with two or more photos in the
shared data, identifies a second photo of each, then times
`GET /v1/predictions/{id}/matches/{individual_id}` for every candidate (the client's wall time on
loopback). For the alternative (keep what verification found with each prediction) it counts the
bytes a compact encoding would take: per pair 2 x 2 uint16 coordinates + one uint8 score, plus a
float32 2x3 transform per candidate. Writes reports/explain_benchmark.json.

    python scripts/benchmark_explain.py [--whales 20] [--happywhale 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WHALES_DATA_DIR") or ROOT.parent / "shared" / "data" / "cetaceans")
KEY = "bench-key"
BYTES_PER_PAIR = 2 * 2 * 2 + 1
BYTES_PER_TRANSFORM = 6 * 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pairs_of(folder: str, n: int) -> list[tuple[str, list[Path]]]:
    """(individual, photos) of the first `n` individuals with two or more photos under `folder`."""
    by_id: dict[str, list[Path]] = {}
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["relpath"].startswith(folder) and row["individual_id"]:
                by_id.setdefault(row["individual_id"], []).append(DATA / row["relpath"])
    return [(k, v) for k, v in sorted(by_id.items()) if len(v) >= 2][:n]


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda p: round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)  # noqa: E731
    return {"n": len(values), "p50": pick(50), "p95": pick(95), "max": round(ordered[-1], 1),
            "mean": round(statistics.fmean(values), 1)}


def measure(url: str, subjects: list[tuple[str, list[Path]]], repeats: int) -> dict:
    key = {"X-API-Key": KEY}
    latency, stored_bytes, agreement, query_bytes = [], [], [], []
    with httpx.Client(base_url=url, timeout=120) as client:
        for individual, photos in subjects:
            files = {"files": (photos[1].name, photos[1].read_bytes(), "image/jpeg")}
            client.post(f"/v1/individuals/{individual}/images", files=files, headers=key).raise_for_status()
        for individual, photos in subjects:
            answer = client.post("/v1/predict", files={"file": (photos[0].name, photos[0].read_bytes())})
            answer.raise_for_status()
            prediction = answer.json()
            if prediction["rejected"]:
                continue
            pid = prediction["prediction_id"]
            query_bytes.append(len(client.get(f"/v1/predictions/{pid}/image", headers=key).content))
            total = 0
            for cand in prediction["candidates"]:
                path = f"/v1/predictions/{pid}/matches/{cand['individual_id']}"
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    r = client.get(path, headers=key)
                    latency.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                body = r.json()
                kept = min(body["verified_inliers"] or 0, 100)  # what storing would have kept
                total += kept * BYTES_PER_PAIR + (BYTES_PER_TRANSFORM if kept else 0)
                if cand["individual_id"] == individual and body["verified_inliers"]:
                    agreement.append((body["verified_inliers"], body["inliers"]))
            stored_bytes.append(total)
    return {"latency_ms": stats(latency), "stored_bytes_per_prediction": stats(stored_bytes),
            "query_jpeg_bytes": stats(query_bytes),
            "true_match_inliers_verified_vs_recomputed": agreement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whales", type=int, default=20)
    parser.add_argument("--happywhale", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "explain_benchmark.json")
    args = parser.parse_args()
    if not (DATA / "manifest.csv").is_file():
        raise SystemExit(f"no data at {DATA} (set WHALES_DATA_DIR)")
    subjects = (pairs_of("positives/noaa_right_whale_headcrops/", args.whales)
                + pairs_of("positives/happywhale/", args.happywhale))
    tmp = Path(tempfile.mkdtemp(prefix="whales-explain-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WHALES_DATABASE_URL": f"sqlite:///{tmp / 'w.db'}", "WHALES_API_KEYS": KEY,
           "WHALES_RATE_LIMIT_ENABLED": "false"}
    with open(tmp / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--host",
                                   "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"server not ready; see {tmp / 'server.log'}")
            time.sleep(0.5)
        report = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
                  "cpus": os.cpu_count(), "subjects": len(subjects), "repeats": args.repeats,
                  **measure(url, subjects, args.repeats)}
    finally:
        server.terminate()
        server.wait(timeout=30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "true_match_inliers_verified_vs_recomputed"},
                     indent=2))


if __name__ == "__main__":
    main()
