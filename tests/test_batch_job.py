"""`whales batch` on a real Dask LocalCluster (2 worker processes) over real shared photos: run part
of the job, interrupt it with SIGINT, resume it, and check every answer against the service's own
/v1/predict (and the summary against /v1/predict-batch) for the same photos and catalog."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("distributed", reason="the batch extra (Dask distributed) is not installed")
pytest.importorskip("fastapi", reason="the service extra is not installed")

pytestmark = pytest.mark.slow
WHALES = [sys.executable, "-c", "from whales_cli import app; app(prog_name='whales')"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """The configured store: a SQLite file, or a fresh schema of WHALES_TEST_POSTGRES_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'whales.db'}"
        return
    base = os.environ.get("WHALES_TEST_POSTGRES_URL")
    if not base:
        root = request.config.pluginmanager.get_plugin(str(Path(__file__).with_name("conftest.py")))
        root.skip_or_fail("WHALES_TEST_POSTGRES_URL is not set (see .ci/run)")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _split(manifest):
    """Catalog: 2 photos each of 8 right whales; queries: 2 other photos of each + 8 negatives +
    6 Happywhale photos (mostly individuals not in the catalog)."""
    by_ind: dict[str, list] = defaultdict(list)
    for row in manifest:
        if row.individual_id.startswith("rw_") and "headcrops" in row.relpath:
            by_ind[row.individual_id].append(row)
    chosen = [v for _, v in sorted(by_ind.items()) if len(v) >= 4][:8]
    catalog = [r for v in chosen for r in v[:2]]
    queries = [r for v in chosen for r in v[2:4]]
    queries += [r for r in manifest if not r.is_cetacean][:8]
    queries += [r for r in manifest if "happywhale" in r.relpath][:6]
    return catalog, queries


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _extra_zip(path: Path) -> Path:
    """A synthetic photo, a broken entry and a macOS metadata entry (skipped, as the service does)."""
    buf = io.BytesIO()
    Image.new("RGB", (160, 120), (20, 60, 110)).save(buf, "JPEG")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sea.jpg", buf.getvalue())
        archive.writestr("broken.jpg", b"\xff\xd8 not really a jpeg")
        archive.writestr("__MACOSX/._sea.jpg", b"metadata")
    return path


@contextlib.contextmanager
def _existing_cluster(tmp_path: Path, env: dict[str, str]):
    """`dask scheduler` and `dask worker --nworkers 2`, started apart from the job (loopback)."""
    dask = str(Path(sys.executable).with_name("dask"))
    file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(file)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(file), "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(scheduler_file=str(file), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        yield address
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _batch(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    # Ctrl-C as in a terminal: a run of the tests started in the background (`make test &`,
    # nohup) ignores SIGINT, and the job would inherit that and never be interrupted
    return subprocess.Popen([*WHALES, "batch", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_sigint_default, **kw)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    summary = json.loads(out) if out.strip().startswith("{") else {}
    return proc.returncode, summary, err


def _part_rows(out: Path) -> list[dict[str, str]]:
    rows = []
    for part in sorted((out / "parts").glob("*.csv")):
        with open(part, newline="") as fh:
            rows.extend(csv.DictReader(fh))  # every part parses: none is half-written
    return rows


def test_batch_job_interrupted_resumed_matches_service(tmp_path, data_dir, manifest, store_url):
    from integrations import open_store
    from whales_cli import app

    catalog, queries = _split(manifest)
    db = store_url
    catalog_csv = _write_csv(tmp_path / "catalog.csv", ["filename", "individual_id", "species"],
                             [[r.relpath, r.individual_id, r.species] for r in catalog])
    res = CliRunner().invoke(app, ["catalog", "import", str(catalog_csv), "--root", str(data_dir),
                                   "--db", db])
    assert res.exit_code == 0, res.output
    queries_csv = _write_csv(tmp_path / "queries.csv", ["relpath"], [[r.relpath] for r in queries])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    archive = _extra_zip(tmp_path / "extra.zip")
    out = tmp_path / "results"
    sources = [str(queries_csv), str(bad), str(archive), "--root", str(data_dir)]
    common = ["--out", str(out), "--db", db, "--workers", "2", "--json"]
    env = {**os.environ, "WHALES_DATABASE_URL": "sqlite:///nowhere/unused.db"}  # --db wins
    total = len(queries) + 1 + 2

    # 1. part of the job (a deterministic stop)
    code, first, err = _finish(_batch([*sources, *common, "--max-photos", "8", "--chunk-size", "4"], env))
    assert code == 0, err
    assert first["processed"] == 8 and first["workers"] == 2 and first["done_before"] == 0
    assert "photo/s" in err  # the progress bar: rate and ETA

    # 2. Ctrl-C in the middle: finished chunks stay, nothing is half-written
    proc = _batch([*sources, *common, "--chunk-size", "1"], env)
    deadline = time.monotonic() + 60
    while len(_part_rows(out)) < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the job's whole process group
    code, second, err = _finish(proc)
    assert code == 130, f"the job was not interrupted (rc {code}): {err[-2000:]}"
    assert second["interrupted"] and second["done_before"] == 8
    assert "KeyboardInterrupt" not in err  # the workers leave Ctrl-C to the driver
    kept = _part_rows(out)
    assert 10 <= len(kept) < total

    # 3. resume on an existing cluster (--address): the done photos are skipped, the rest done once
    with _existing_cluster(tmp_path, env) as address:
        code, third, err = _finish(_batch([*sources, *common, "--chunk-size", "4", "--address", address],
                                          env))
    assert code == 0, err
    assert third["done_before"] == len(kept) and third["processed"] == total - len(kept)
    assert third["workers"] == 2
    rows = _part_rows(out)
    assert len(rows) == total and len({r["name"] for r in rows}) == total  # no photo twice
    with open(out / "results.csv", newline="") as fh:
        merged = {r["name"]: r for r in csv.DictReader(fh)}
    assert len(merged) == total
    errors = {Path(n.split("::")[-1]).name: r["error_code"] for n, r in merged.items()
              if r["status"] == "error"}
    assert set(errors) == {"empty.png", "broken.jpg"}, errors

    # the store holds the job's predictions, tagged with its id (errors are not predictions)
    job_id = json.loads((out / "job.json").read_text())["job_id"]
    store = open_store(db)
    try:
        stored = {p.image_sha256 for p in store.iter_predictions() if p.job_id == job_id}
    finally:
        store.close()
    assert stored == {r["sha256"] for r in merged.values() if r["status"] == "ok"}

    _check_against_service(db, merged, third["summary"], queries, data_dir, bad, archive)


def _check_against_service(db, merged, summary, queries, data_dir, bad, archive):
    """/v1/predict gives the same gate decision and top candidate for every photo, and
    /v1/predict-batch the same summary counts, on the same catalog."""
    from fastapi.testclient import TestClient

    from whales_be_service.main import create_app
    from whales_be_service.settings import Settings

    settings = Settings(database_url=db, rate_limit="10000/minute", frontend_dir=None)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        known = 0
        for row in queries:
            path = data_dir / row.relpath
            answer = client.post("/v1/predict", files={"file": (path.name, path.read_bytes())}).json()
            got = merged[str(path)]
            assert got["rejected"] == str(answer["rejected"]).lower(), path
            assert got["is_cetacean"] == str(answer["is_cetacean"]).lower(), path
            top = answer["candidates"][0]["individual_id"] if answer["candidates"] else ""
            assert got["top_candidate"] == top, path
            assert got["individual_id"] == (answer["individual_id"] or ""), path
            known += bool(answer["individual_id"])
        assert known >= 4  # the catalog is really matched against, not an empty one
        files = [("files", (f"q{i}.jpg", (data_dir / r.relpath).read_bytes())) for i, r in enumerate(queries)]
        files += [("files", ("empty.png", b"")), ("files", ("extra.zip", archive.read_bytes()))]
        batch = client.post("/v1/predict-batch", files=files).json()["summary"]
    for key in ("images", "accepted", "rejected", "failed", "skipped"):
        assert summary[key] == batch[key], (key, summary, batch)


def test_local_workers_share_the_cores_unless_told(monkeypatch):
    """`whales batch`: each local worker process gets cores // workers threads, the cores being the
    ones this process may run on (its CPU affinity, as a container's cpuset sets it, not the
    machine's count); a thread count set in the environment, or a joined cluster, is left alone
    (Settings fills an unset count itself, so the CLI reads the environment)."""
    from whales_be_service import settings as settings_module
    from whales_cli import batch

    monkeypatch.delenv("WHALES_INFERENCE_THREADS", raising=False)
    monkeypatch.delenv("WHALES_TORCH_THREADS", raising=False)
    monkeypatch.setattr(settings_module.os, "cpu_count", lambda: 64)  # the machine's: not ours
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [batch.threads_per_worker(n, None) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]
    assert batch.threads_per_worker(2, "tcp://scheduler:8786") is None
    from whales_be_service.settings import Settings

    wire = batch.wire_settings(Settings(), "tcp://scheduler:8786")  # the remote workers size their own
    assert "inference_threads" not in wire and "inference_workers" not in wire and "api_keys" not in wire
    assert batch.wire_settings(Settings(), None)["inference_threads"] >= 1
    monkeypatch.setenv("WHALES_INFERENCE_THREADS", "3")
    assert batch.threads_per_worker(2, None) is None
    assert batch.wire_settings(Settings(), "tcp://scheduler:8786")["inference_threads"] == 3
