"""Throughput of `whales batch` on this machine: photos/s with 1 and 2 Dask worker processes, and the
same chunks run in this one process without the engine (what the engine costs or gives).

    python scripts/benchmark_batch.py --data ../shared/data/cetaceans --out reports/batch_benchmark.json

A catalog of `--catalog` real right-whale photos is enrolled into a temporary SQLite store; the job
is `--queries` other real photos (cetaceans and non-cetaceans), a fresh results folder per run.
`photos_per_s` counts from the first task submitted (the cluster's start excluded, the workers'
loading of models and catalog with their first chunk included; `wall_s` includes both).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from whales_identify.data import read_manifest

WHALES = [sys.executable, "-c", "from whales_cli import app; app(prog_name='whales')"]


def _split(manifest, n_catalog: int, n_queries: int):
    by_ind: dict[str, list] = defaultdict(list)
    for row in manifest:
        if row.is_cetacean and row.individual_id.startswith("rw_"):
            by_ind[row.individual_id].append(row)
    catalog, queries = [], []
    for _, rows in sorted(by_ind.items()):
        if len(catalog) < n_catalog:
            catalog += rows[:2]
        queries += rows[2:]
    negatives = [r for r in manifest if not r.is_cetacean]
    queries = queries[: n_queries - n_queries // 5] + negatives[: n_queries // 5]
    return catalog[:n_catalog], queries


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _engine_run(queries_csv: Path, data: Path, db: str, out: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([*WHALES, "batch", str(queries_csv), "--root", str(data), "--out", str(out),
                           "--db", db, "--workers", str(workers), "--json"],
                          capture_output=True, text=True, check=True)
    summary = json.loads(proc.stdout)
    return {"workers": workers, "photos": summary["processed"], "photos_per_s": summary["photos_per_s"],
            "wall_s": round(time.perf_counter() - t0, 2), "summary": summary["summary"], **_load()}


def _load() -> dict:
    """The machine's 1-minute load average after a run (other processes share the cores)."""
    return {"load_avg_1m_after": round(os.getloadavg()[0], 2)}


def _in_process(queries_csv: Path, data: Path, db: str, chunk: int) -> dict:
    """The same chunks through the same worker code, in this process, without Dask."""
    from whales_be_service.settings import Settings
    from whales_cli._batch_worker import load_state, process_chunk
    from whales_identify.batch import hash_photo, list_photos

    settings = Settings(database_url=db).model_dump(mode="json", exclude={"api_keys"})
    refs = list_photos([queries_csv], data).photos
    items = [(r, hash_photo(r, 1 << 26) or "") for r in refs]
    load_state(settings)
    t0 = time.perf_counter()
    for start in range(0, len(items), chunk):
        process_chunk(items[start:start + chunk], settings, "bench-in-process", 5)
    seconds = time.perf_counter() - t0
    return {"workers": "in-process (no engine)", "photos": len(items),
            "photos_per_s": round(len(items) / seconds, 3), "wall_s": round(seconds, 2), **_load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/cetaceans"))
    ap.add_argument("--catalog", type=int, default=300)
    ap.add_argument("--queries", type=int, default=120)
    ap.add_argument("--out", type=Path, default=Path("reports/batch_benchmark.json"))
    args = ap.parse_args()
    data = args.data.resolve()
    catalog, queries = _split(read_manifest(data / "manifest.csv"), args.catalog, args.queries)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db = f"sqlite:///{tmp / 'whales.db'}"
        catalog_csv = _csv(tmp / "catalog.csv", ["filename", "individual_id", "species"],
                           [[r.relpath, r.individual_id, r.species] for r in catalog])
        t0 = time.perf_counter()
        subprocess.run([*WHALES, "catalog", "import", str(catalog_csv), "--root", str(data), "--db", db],
                       check=True, capture_output=True)
        enrol_s = time.perf_counter() - t0
        queries_csv = _csv(tmp / "queries.csv", ["relpath"], [[r.relpath] for r in queries])
        runs = [_engine_run(queries_csv, data, db, tmp / f"out{w}", w) for w in (1, 2)]
        runs.append(_in_process(queries_csv, data, db, 16))
    report = {"engine": "dask distributed LocalCluster (processes, 1 thread each)",
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_avg_1m_before": round(os.getloadavg()[0], 2)},
              "catalog_photos": len(catalog), "catalog_enrol_s": round(enrol_s, 2),
              "queries": len(queries), "runs": runs,
              "speedup_2_vs_1": round(runs[1]["photos_per_s"] / runs[0]["photos_per_s"], 2),
              "command": "python scripts/benchmark_batch.py " + " ".join(sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
