"""The served half of `scripts/benchmark.py`: the real service started as a subprocess on loopback,
its catalog imported once, then latency, throughput, batch ZIP and memory measured over HTTP.

Imported by `benchmark.py` (run that one); kept apart so that each file stays readable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vm(pid: int, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0  # kB -> MiB
    except OSError:
        return None
    return None


def _upload_field(openapi: dict, path: str, prefer: str = "file") -> str:
    """The multipart field that carries the file(s) of `path`, read from the OpenAPI schema."""
    try:
        content = openapi["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        schema = content["schema"]
        if "$ref" in schema:
            schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        names = [str(name) for name, prop in schema.get("properties", {}).items()
                 if "binary" in json.dumps(prop) or "octet-stream" in json.dumps(prop)]
        if names:
            return prefer if prefer in names else names[0]
    except (KeyError, IndexError):
        pass
    return prefer


def prediction_outcome(answer: dict) -> str:
    """`rejected`, `new_individual` or `matched`: what one /v1/predict answer decided."""
    return ("rejected" if answer["rejected"] else
            "new_individual" if answer["is_new_individual"] else "matched")


def _stage_totals(text: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of whales_inference_stage_seconds per stage, from the /metrics text."""
    sums, counts = {}, {}
    pattern = r'^whales_inference_stage_seconds_(sum|count)\{stage="([^"]+)"\} (\S+)$'
    for m in re.finditer(pattern, text, re.M):
        (sums if m.group(1) == "sum" else counts)[m.group(2)] = float(m.group(3))
    return {k: (sums[k], counts.get(k, 0.0)) for k in sums}


def import_floor_mb() -> dict[str, float | None]:
    """RSS of a fresh interpreter after `import torch`, and after importing the app (no model)."""
    out: dict[str, float | None] = {}
    for name, code in (("import_torch", "import torch"), ("import_app", "import whales_be_service.main")):
        probe = (f"{code}\nfor ln in open('/proc/self/status'):\n"
                 f"    ln.startswith(('VmRSS', 'RssAnon')) and print(ln.split()[1])")
        proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
        values = proc.stdout.split()
        out[f"{name}_rss_mb"] = int(values[0]) / 1024 if len(values) == 2 else None
        out[f"{name}_anon_mb"] = int(values[1]) / 1024 if len(values) == 2 else None
    return out


def sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database, write-ahead log included."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def import_catalog(data: Path, rows: list[dict], columns: list[str], model_id: str, cache: Path) -> dict:
    """`whales catalog import` of `rows` into a SQLite file kept under `cache` (keyed by the rows and
    the model) so that later runs reuse it: importing ~2,000 photos takes minutes on 2 cores."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    key = hashlib.sha256((model_id + "\n" + text.getvalue()).encode()).hexdigest()[:16]
    db, meta = cache / f"catalog-{key}.db", cache / f"catalog-{key}.json"
    if db.is_file() and meta.is_file():
        return {**json.loads(meta.read_text()), "db": str(db), "reused_from_cache": True}
    cache.mkdir(parents=True, exist_ok=True)
    manifest = cache / f"catalog-{key}.csv"
    manifest.write_text(text.getvalue(), encoding="utf-8")
    partial = db.with_suffix(".partial.db")
    partial.unlink(missing_ok=True)
    # `whales catalog import ...` from the project root, one torch thread: a setup step, made as
    # fast as this shared machine allows (see levers.threads)
    cmd = [sys.executable, "-c", "from whales_cli import app; app()", "catalog", "import",
           str(manifest), "--root", str(data), "--db", f"sqlite:///{partial}", "--model", model_id]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - t0
    info = {"command": "whales catalog import <manifest> --root <data> --db <sqlite> (OMP_NUM_THREADS=1)",
            "photos": len(rows), "seconds": seconds, "photos_per_s": len(rows) / seconds,
            "returncode": proc.returncode, "output": proc.stdout.strip().splitlines()[-1:]}
    if proc.returncode != 0:
        info["error"] = (proc.stderr or proc.stdout)[-1500:]
        return info
    sqlite_copy(partial, db)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    meta.write_text(json.dumps(info, indent=2))
    return {**info, "db": str(db), "reused_from_cache": False}


class Server:
    """uvicorn serving whales_be_service.main:app on a free loopback port, as `make run` does."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, client, timeout_s: float = 180.0) -> float | None:  # type: ignore[no-untyped-def]
        while time.perf_counter() - self.t0 < timeout_s and self.proc.poll() is None:
            try:
                if client.get(self.url + "/ready", timeout=2).status_code == 200:
                    return time.perf_counter() - self.t0
            except Exception:  # not listening yet
                pass
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _post(client, url: str, field: str, name: str, payload: bytes, retries: int = 400):  # type: ignore[no-untyped-def]
    """POST one upload; a 503 (queue full, by design) is retried after a short pause and counted."""
    refused = 0
    for _ in range(retries):
        r = client.post(url, files={field: (name, payload)}, timeout=120)
        if r.status_code != 503:
            return r, refused
        refused += 1
        time.sleep(0.25)
    return r, refused


def bench_http(data: Path, queries: list[dict], catalog_info: dict, env: dict[str, str], tmp: Path,
               n_latency: int, zip_images: int) -> dict:
    import httpx

    payloads = [((data / q["relpath"]).name, (data / q["relpath"]).read_bytes()) for q in queries]
    server = Server(env, tmp / "server.log")
    out: dict = {"catalog": catalog_info, "env": {k: v for k, v in env.items() if "DATABASE" not in k}}
    try:
        with httpx.Client() as client:
            ready = server.wait_ready(client)
            out["start_to_ready_s"] = ready
            if ready is None:
                out["error"] = "the service did not become ready: " + (tmp / "server.log").read_text()[-2000:]
                return out
            out["ready_body"] = client.get(server.url + "/ready").json()
            out["served_catalog"] = client.get(server.url + "/v1/models").json().get("catalog")
            out["rss_after_ready_mb"] = _vm(server.proc.pid, "VmRSS")
            openapi = client.get(server.url + "/openapi.json").json()
            single = _upload_field(openapi, "/v1/predict")
            batch = _upload_field(openapi, "/v1/predict-batch", prefer="archive")
            url = server.url + "/v1/predict"
            _post(client, url, single, *payloads[0])  # warm-up
            lat, statuses, outcomes = [], defaultdict(int), defaultdict(int)
            before = _stage_totals(client.get(server.url + "/metrics").text)
            for i in range(n_latency):
                name, body = payloads[i % len(payloads)]
                t0 = time.perf_counter()
                r, _ = _post(client, url, single, name, body)
                lat.append(time.perf_counter() - t0)
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    outcomes[prediction_outcome(r.json())] += 1
            after = _stage_totals(client.get(server.url + "/metrics").text)
            out["latency_c1_s"] = percentiles(lat)
            out["latency_c1_statuses"] = dict(statuses)
            out["latency_c1_outcomes"] = dict(outcomes)
            out["server_stage_mean_s"] = {
                k: (after[k][0] - before.get(k, (0, 0))[0]) / (after[k][1] - before.get(k, (0, 0))[1])
                for k in after if after[k][1] > before.get(k, (0, 0))[1]}
        out["throughput"] = {str(c): _throughput(server.url + "/v1/predict", single, payloads, c)
                             for c in (1, 4, 16)}
        out["batch_zip"] = _batch(server.url + "/v1/predict-batch", batch, payloads, zip_images)
        out["peak_rss_mb"] = _vm(server.proc.pid, "VmHWM")
        out["rss_at_end_mb"] = {k: _vm(server.proc.pid, k) for k in ("VmRSS", "RssAnon", "RssFile")}
    finally:
        server.stop()
    return out


def _throughput(url: str, field: str, payloads: list, concurrency: int, requests: int = 32) -> dict:
    import httpx

    n = max(requests, 2 * concurrency)
    refused = [0]

    def work(i: int) -> int:
        r, ref = _post(client, url, field, *payloads[i % len(payloads)])
        refused[0] += ref
        return r.status_code

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as client, ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        codes = list(pool.map(work, range(n)))
        seconds = time.perf_counter() - t0
    ok = sum(c == 200 for c in codes)
    return {"requests": n, "ok": ok, "seconds": seconds, "requests_per_s": ok / seconds,
            "refused_503_then_retried": refused[0]}


def _batch(url: str, field: str, payloads: list, n: int) -> dict:
    import httpx

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            name, body = payloads[i % len(payloads)]
            zf.writestr(f"{i:03d}_{name}", body)
    with httpx.Client() as client:
        t0 = time.perf_counter()
        r = client.post(url, files={field: ("batch.zip", buf.getvalue(), "application/zip")}, timeout=600)
        seconds = time.perf_counter() - t0
    summary = r.json().get("summary") if r.status_code == 200 else r.text[:500]
    return {"images": n, "status": r.status_code, "seconds": seconds, "images_per_s": n / seconds,
            "zip_mb": len(buf.getvalue()) / 2**20, "server_summary": summary}
