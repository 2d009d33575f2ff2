"""Several processes writing at once lose nothing; a writer killed with SIGKILL leaves no half record.

Real processes, real files and a real PostgreSQL server: the same tests on both backends.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from integrations._migrations import load_migrations
from integrations.base import open_store

ROOT = Path(__file__).resolve().parents[2]

# A writer: `python -c WRITER url worker count image_bytes`; count < 0 means "until killed".
# Every record carries the sha256 of its image, so a reader can tell a whole record from a torn one.
WRITER = r"""
import hashlib, sys
from datetime import UTC, datetime
from integrations.base import open_store
from whales_identify.records.store import PredictionRecord, Sighting

url, worker, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = open_store(url)
print("ready", flush=True)
i = 0
while count < 0 or i < count:
    image = (f"{worker}:{i}:".encode() * (size // 8 + 1))[:size]
    store.save_prediction(PredictionRecord(
        prediction_id=f"w{worker}-{i:06d}", image_sha256=hashlib.sha256(image).hexdigest(),
        filename=f"w{worker}_{i}.jpg", rejected=False, rejection_reason=None, cetacean_score=0.9,
        gate_backend="embedded", gate_version="v1", species="beluga", individual_id=f"b{i % 7}",
        is_new_individual=False, probability=0.5, candidates=[{"individual_id": f"b{i % 7}", "score": 0.5}],
        model_version="m", created_at=datetime.now(UTC), sighting=Sighting(latitude=64.0, longitude=-51.7),
    ), image_jpeg=image)
    i += 1
store.close()
print("done", i, flush=True)
"""

# Opens a transaction, writes the prediction row, says so, then hangs before the image and the commit.
HALF_WRITER = r"""
import sys, time
from datetime import UTC, datetime
from integrations.base import open_store
from integrations._rows import prediction_to_row
from integrations._sql import _UPSERT_PREDICTION
from whales_identify.records.store import PredictionRecord

store = open_store(sys.argv[1])
record = PredictionRecord("torn", "0" * 64, "torn.jpg", False, None, 0.9, "embedded", "v1", "beluga",
                          "b1", False, 0.5, [], "m", created_at=datetime.now(UTC))
with store._write() as cur:
    cur.execute(store._q(_UPSERT_PREDICTION), prediction_to_row(record, store.dialect))
    print("inside", flush=True)
    time.sleep(60)
"""


def _spawn(script: str, *args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_every_record_whole(store) -> list:
    records = store.list_predictions()
    for record in records:
        image = store.get_prediction_image(record.prediction_id)
        assert image is not None, f"{record.prediction_id} has no image"
        assert hashlib.sha256(image).hexdigest() == record.image_sha256, f"{record.prediction_id} is torn"
        assert record.candidates and record.sighting.latitude == 64.0
    if hasattr(store, "integrity_check"):
        assert store.integrity_check() == "ok"
    return records


def test_concurrent_writers_lose_no_rows(store_url):
    workers, each = 4, 50
    started = time.perf_counter()
    # They all start on an empty database, so they also race to create the schema.
    procs = [_spawn(WRITER, store_url, w, each, 2048) for w in range(workers)]
    outputs = [p.communicate(timeout=120) for p in procs]
    elapsed = time.perf_counter() - started
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.split()[-2:] == ["done", str(each)]
    store = open_store(store_url)
    try:
        records = _assert_every_record_whole(store)
        assert len(records) == store.count_predictions() == workers * each
        assert {r.prediction_id for r in records} == {f"w{w}-{i:06d}" for w in range(workers)
                                                       for i in range(each)}
        assert store.schema_versions() == [m.version for m in load_migrations()]
    finally:
        store.close()
    print(f"{workers} processes x {each} writes in {elapsed:.2f}s (incl. start-up)")


@contextmanager
def _reaped(proc):
    """Yield the child process and always reap it, also when an assertion fails first."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _sigkill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_sigkill_mid_loop_leaves_only_whole_records(store_url):
    with _reaped(_spawn(WRITER, store_url, 0, -1, 256 * 1024)) as proc:
        assert proc.stdout.readline().strip() == "ready"
        reader = open_store(store_url)
        deadline = time.monotonic() + 60
        while reader.count_predictions() < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        _sigkill(proc)
        reader.close()
    store = open_store(store_url)
    try:
        records = _assert_every_record_whole(store)
        assert len(records) >= 10
        store.save_prediction(records[0])  # still writable after the crash
    finally:
        store.close()


def test_sigkill_inside_a_transaction_stores_nothing(store_url):
    with _reaped(_spawn(HALF_WRITER, store_url)) as proc:
        assert proc.stdout.readline().strip() == "inside", proc.stderr.read() if proc.poll() else ""
        _sigkill(proc)
    store = open_store(store_url)
    try:
        assert store.get_prediction("torn") is None
        assert store.count_predictions() == 0
        if hasattr(store, "integrity_check"):
            assert store.integrity_check() == "ok"
    finally:
        store.close()


@pytest.mark.parametrize("threads", [8])
def test_threads_share_one_store(store, threads):
    from concurrent.futures import ThreadPoolExecutor

    from whales_identify.records.store import PredictionRecord

    def write(i: int) -> None:
        store.save_prediction(PredictionRecord(f"t{i:04d}", "x", "f.jpg", False, None, 0.5, "off", "0", None,
                                               None, None, None, [], "m"), image_jpeg=b"j")
        store.get_prediction(f"t{i:04d}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(200)))
    assert store.count_predictions() == 200
