"""Time docs/QUICKSTART.md for real: from "photos with ids in a spreadsheet" to "new photos are matched".

Builds, outside the repository, a catalog ZIP + CSV from the shared right-whale head crops (read in
place), starts the service on a fresh SQLite database (or uses --url), imports the catalog through
`POST /v1/catalog/import`, then identifies held-out photos of the same whales with
`POST /v1/predict-batch` and counts how many are matched. Optionally times the CLI twin
(`whales catalog import`) on the same CSV. Writes a JSON report.

    python scripts/quickstart_timing.py --photos 300 --queries 50 --out reports/quickstart.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

from whales_identify.data import DATA_ENV, read_manifest, resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "positives/noaa_right_whale_headcrops/"
KEY = "quickstart-key"


def select(data_dir: Path, n_photos: int, n_queries: int, per_individual: int
           ) -> tuple[list[tuple[Path, str, str]], list[tuple[Path, str]]]:
    """Catalog rows (path, individual, species) and held-out queries (path, individual).

    Every whale with two or more photos keeps its last photo out of the catalog as a query; the
    catalog takes up to `per_individual` of the others until it holds `n_photos`.
    """
    by_id: dict[str, list] = {}
    for row in read_manifest(data_dir / "manifest.csv"):
        if row.relpath.startswith(FOLDER) and row.individual_id and (data_dir / row.relpath).is_file():
            by_id.setdefault(row.individual_id, []).append(row)
    catalog: list[tuple[Path, str, str]] = []
    queries: list[tuple[Path, str]] = []
    for ind, rows in sorted(by_id.items()):
        if len(rows) < 2 or len(catalog) >= n_photos:
            continue
        rows = sorted(rows, key=lambda r: r.relpath)
        for r in rows[:-1][:per_individual][: n_photos - len(catalog)]:
            catalog.append((data_dir / r.relpath, ind, r.species))
        queries.append((data_dir / rows[-1].relpath, ind))
    return catalog, queries[:n_queries]


def write_inputs(work: Path, catalog: list[tuple[Path, str, str]], queries: list[tuple[Path, str]]) -> None:
    with open(work / "catalog.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "individual_id", "species"])
        for path, ind, species in catalog:
            w.writerow([path.name, ind, species])
    with zipfile.ZipFile(work / "catalog.zip", "w") as zf:
        for path, _, _ in catalog:
            zf.write(path, f"photos/{path.name}")
    with zipfile.ZipFile(work / "new_photos.zip", "w") as zf:
        for path, _ in queries:
            zf.write(path, path.name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(work: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    env = {**os.environ, "WHALES_DATABASE_URL": f"sqlite:///{work / 'whales.db'}", "WHALES_API_KEYS": KEY}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=open(work / "uvicorn.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited: {(work / 'uvicorn.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.terminate()
    raise SystemExit("the service was not ready after 300 s")


def run_import(url: str, work: Path, key: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    with open(work / "catalog.zip", "rb") as archive, open(work / "catalog.csv", "rb") as sheet:
        r = httpx.post(f"{url}/v1/catalog/import", headers={"X-API-Key": key}, timeout=3600,
                       files={"archive": ("catalog.zip", archive, "application/zip"),
                              "manifest": ("catalog.csv", sheet, "text/csv")})
    r.raise_for_status()
    return r.json(), time.perf_counter() - t0


def run_queries(url: str, work: Path, queries: list[tuple[Path, str]]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    with open(work / "new_photos.zip", "rb") as archive:
        r = httpx.post(f"{url}/v1/predict-batch", timeout=3600,
                       files={"archive": ("new_photos.zip", archive, "application/zip")})
    r.raise_for_status()
    seconds = time.perf_counter() - t0
    truth = {p.name: ind for p, ind in queries}
    results = r.json()["results"]
    top1 = sum(1 for p in results if p["individual_id"] == truth[p["image_ind"]])
    first = sum(1 for p in results if p["candidates"] and p["candidates"][0]["individual_id"]
                == truth[p["image_ind"]])
    top5 = sum(1 for p in results if truth[p["image_ind"]] in [c["individual_id"] for c in p["candidates"]])
    species = sum(1 for p in results if p["species"] == "north_atlantic_right_whale")
    # matched: named as the individual (above the open-set threshold); first_candidate: the right whale
    # ranked first whether or not it passed the threshold (a reviewer confirms it in one click)
    return {"queries": len(queries), "answered": len(results), "matched": top1,
            "first_candidate_right": first, "in_top5": top5,
            "new_individual": sum(1 for p in results if p["is_new_individual"]),
            "species_right": species, "rejected": sum(1 for p in results if p["rejected"])}, seconds


def run_cli(work: Path, root: Path) -> float:
    t0 = time.perf_counter()
    whales = str(Path(sys.executable).parent / "whales")  # the CLI installed beside this Python
    subprocess.run([whales, "catalog", "import", str(work / "catalog.csv"),
                    "--root", str(root), "--db", f"sqlite:///{work / 'cli.db'}"], cwd=ROOT, check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="Shared data folder (default $WHALES_DATA_DIR or "
                                                 "../shared/data/cetaceans).")
    ap.add_argument("--photos", type=int, default=300, help="Catalog photos.")
    ap.add_argument("--per-individual", type=int, default=4, help="Most catalog photos per whale.")
    ap.add_argument("--queries", type=int, default=50, help="New photos to identify (<= the rate limit).")
    ap.add_argument("--url", default=None, help="Use a running service (API key $WHALES_API_KEY) "
                                                "instead of starting one.")
    ap.add_argument("--cli", action="store_true", help="Also time `whales catalog import` on the CSV.")
    ap.add_argument("--out", default=None, help="JSON report path.")
    args = ap.parse_args()
    data_dir = resolve_data_dir(args.data or os.environ.get(DATA_ENV))
    if not (data_dir / "manifest.csv").is_file():
        raise SystemExit(f"no shared data at {data_dir}")
    catalog, queries = select(data_dir, args.photos, args.queries, args.per_individual)
    report: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "load_avg_at_start": os.getloadavg()},
                    "catalog_photos": len(catalog), "catalog_individuals": len({c[1] for c in catalog})}
    with tempfile.TemporaryDirectory(prefix="whales-quickstart-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        write_inputs(work, catalog, queries)
        report["prepare_s"] = round(time.perf_counter() - t0, 2)
        report["zip_mb"] = round((work / "catalog.zip").stat().st_size / 1e6, 1)
        proc = None
        key = KEY
        if args.url:
            url = args.url.rstrip("/")
            key = os.environ.get("WHALES_API_KEY", KEY)
        else:
            proc, url, ready_s = start_service(work)
            report["start_to_ready_s"] = round(ready_s, 1)
        try:
            answer, import_s = run_import(url, work, key)
            report["import_s"] = round(import_s, 1)
            report["import_summary"] = answer["summary"]
            report["import_problems"] = answer["problems"][:10]
            matched, query_s = run_queries(url, work, queries)
            report["identify_s"] = round(query_s, 1)
            report["identify"] = matched
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        if args.cli:
            report["cli_import_s"] = round(run_cli(work, data_dir / FOLDER), 1)
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
