"""The SQL stores keep InMemoryStore's semantics on both backends (same tests on SQLite and Postgres)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from integrations._migrations import load_migrations
from integrations.base import open_store, sqlite_path
from whales_identify.records.store import CatalogImage, InMemoryStore, PredictionRecord, Sighting, Store

T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_record(i: int, **changes) -> PredictionRecord:
    record = PredictionRecord(
        prediction_id=f"p{i:04d}", image_sha256=f"{i:064x}", filename=f"photo {i}.jpg", rejected=False,
        rejection_reason=None, cetacean_score=0.9, gate_backend="embedded", gate_version="v1",
        species="humpback_whale", individual_id=f"hw{i % 3}", is_new_individual=False, probability=0.75,
        candidates=[{"individual_id": f"hw{i % 3}", "species": "humpback_whale", "score": 0.75},
                    {"individual_id": "hw9", "species": "humpback_whale", "score": 0.5}],
        model_version="effb4_arcface.happywhale", created_at=T0 + timedelta(minutes=i),
        sighting=Sighting(observed_at=T0 - timedelta(days=1), latitude=-33.5, longitude=151.25,
                          location="Sydney, NSW", observer="A. Biologist"),
    )
    return replace(record, **changes)


def make_image(i: int, individual: str = "hw1", model_id: str = "m.a", **changes) -> CatalogImage:
    rng = np.random.default_rng(i)
    image = CatalogImage(
        image_id=f"img{i}", individual_id=individual, species="killer_whale", model_id=model_id,
        embedding=rng.standard_normal(16).astype(np.float32),
        keypoints=rng.random((5, 2)).astype(np.float32) * 100,
        descriptors=rng.integers(0, 255, (5, 32), dtype=np.uint8),
        thumbnail=b"\xff\xd8thumb" + bytes([i]), image_sha256="ab" * 32, filename=f"ref{i}.jpg",
        source="test", sighting=Sighting(latitude=48.5, longitude=-123.1),
        created_at=T0 + timedelta(seconds=i), feature_size=(100 + i, 80) if i % 2 else None,
    )
    return replace(image, **changes)


def assert_same_image(a: CatalogImage, b: CatalogImage) -> None:
    for name in ("embedding", "keypoints", "descriptors"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y)
    for name in ("image_id", "individual_id", "species", "model_id", "thumbnail", "image_sha256", "filename",
                 "source", "sighting", "created_at", "feature_size"):
        assert getattr(a, name) == getattr(b, name), name


def test_is_a_store_with_the_schema_recorded(store):
    assert isinstance(store, Store)
    store.ping()
    assert store.schema_versions() == [m.version for m in load_migrations()]
    assert store.schema_versions()[0] == 1


def test_migrations_are_idempotent(store_url):
    for _ in range(3):
        again = open_store(store_url)
        try:
            assert again.schema_versions() == [m.version for m in load_migrations()]
        finally:
            again.close()


def test_prediction_round_trip_with_image(store):
    record = make_record(1)
    store.save_prediction(record, image_jpeg=b"\xff\xd8jpeg-bytes")
    assert store.get_prediction("p0001") == record
    assert store.get_prediction_image("p0001") == b"\xff\xd8jpeg-bytes"
    assert store.get_prediction("nope") is None
    assert store.get_prediction_image("nope") is None


def test_rejected_prediction_with_nulls_round_trips(store):
    record = make_record(2, rejected=True, rejection_reason="not_cetacean", species=None, individual_id=None,
                         is_new_individual=None, probability=None, candidates=[], sighting=Sighting())
    store.save_prediction(record)
    assert store.get_prediction(record.prediction_id) == record
    assert store.get_prediction_image(record.prediction_id) is None


def test_numpy_scalars_and_naive_times_are_stored_as_plain_values(store):
    record = make_record(3, cetacean_score=np.float32(0.5), probability=np.float64(0.25),
                         candidates=[{"individual_id": "x", "score": np.float32(0.5)}],
                         created_at=datetime(2025, 1, 2, 3, 4, 5))
    store.save_prediction(record)
    got = store.get_prediction(record.prediction_id)
    assert got.cetacean_score == 0.5 and got.probability == 0.25
    assert got.candidates == [{"individual_id": "x", "score": 0.5}]
    assert got.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_save_again_replaces_the_record_and_keeps_the_image(store):
    store.save_prediction(make_record(1), image_jpeg=b"first")
    store.save_prediction(make_record(1, species="blue_whale"))
    assert store.get_prediction("p0001").species == "blue_whale"
    assert store.get_prediction_image("p0001") == b"first"
    store.save_prediction(make_record(1), image_jpeg=b"second")
    assert store.get_prediction_image("p0001") == b"second"


def test_review(store):
    store.save_prediction(make_record(1))
    decision = {"individual_id": "hw7", "species": "humpback_whale", "note": "fluke matches"}
    reviewed = store.save_review("p0001", "confirmed", decision)
    assert reviewed.review_state == "confirmed" and reviewed.reviewer_decision == decision
    assert reviewed.reviewed_at is not None and reviewed.reviewed_at.tzinfo is not None
    assert store.get_prediction("p0001") == reviewed
    with pytest.raises(ValueError, match="unknown review state"):
        store.save_review("p0001", "maybe", {})
    with pytest.raises(KeyError):
        store.save_review("missing", "confirmed", {})
    assert store.get_prediction("p0001").review_state == "confirmed"


def test_list_predictions_order_since_limit_offset(store):
    for i in (5, 1, 3, 2, 4, 0):
        store.save_prediction(make_record(i))
    # two records at the same instant are ordered by id
    store.save_prediction(make_record(9, prediction_id="p0003b", created_at=T0 + timedelta(minutes=3)))
    ids = [r.prediction_id for r in store.list_predictions()]
    assert ids == ["p0000", "p0001", "p0002", "p0003", "p0003b", "p0004", "p0005"]
    since = T0 + timedelta(minutes=3)
    assert [r.prediction_id for r in store.list_predictions(since=since)] == ids[3:]
    # `since` in another zone means the same instant
    other_zone = since.astimezone(datetime.now().astimezone().tzinfo)
    assert [r.prediction_id for r in store.list_predictions(since=other_zone)] == ids[3:]
    assert [r.prediction_id for r in store.list_predictions(limit=2, offset=1)] == ids[1:3]
    assert [r.prediction_id for r in store.list_predictions(offset=5)] == ids[5:]
    assert store.list_predictions(since=T0 + timedelta(days=1)) == []
    assert store.count_predictions() == 7 and store.count_predictions(since=since) == 4
    assert [r.prediction_id for r in store.iter_predictions(page_size=2)] == ids
    assert [r.prediction_id for r in store.iter_predictions(since=since, page_size=3)] == ids[3:]


def test_same_answers_as_the_in_memory_reference(store):
    reference = InMemoryStore()
    for target in (store, reference):
        for i in range(8):
            target.save_prediction(make_record(i), image_jpeg=bytes([i]) * 10)
        target.save_review("p0002", "not_cetacean", {"by": "me"})
        target.add_catalog_images([make_image(i, individual=f"ind{i % 2}") for i in range(4)])
        target.add_catalog_images([make_image(1, individual="ind1", filename="replaced.jpg")])
    mine = store.list_predictions(since=T0 + timedelta(minutes=2), limit=4, offset=1)
    theirs = reference.list_predictions(since=T0 + timedelta(minutes=2), limit=4, offset=1)
    assert [replace(r, reviewed_at=None) for r in mine] == [replace(r, reviewed_at=None) for r in theirs]
    assert store.get_prediction_image("p0005") == reference.get_prediction_image("p0005")
    ours = sorted(store.list_catalog_images(), key=lambda im: im.image_id)
    ref = sorted(reference.list_catalog_images(), key=lambda im: im.image_id)
    assert len(ours) == len(ref) == 4
    for a, b in zip(ours, ref, strict=True):
        assert_same_image(a, b)
    assert store.remove_individual("ind0") == reference.remove_individual("ind0") == 2


def test_catalog_round_trip_preserves_dtype_and_shape(store):
    images = [
        make_image(1),
        make_image(2, individual="hw2", model_id="m.b", keypoints=None, descriptors=None, thumbnail=None),
        make_image(3, descriptors=np.random.default_rng(3).random((7, 128)).astype(np.float32),
                   keypoints=np.zeros((0, 2), np.float32), embedding=np.arange(8, dtype=np.float64)),
    ]
    store.add_catalog_images(images)
    for image in images:
        assert_same_image(store.get_catalog_image(image.image_id), image)
    assert store.get_catalog_image("missing") is None
    assert [im.image_id for im in store.list_catalog_images()] == ["img1", "img2", "img3"]
    assert [im.image_id for im in store.list_catalog_images("m.b")] == ["img2"]
    assert store.list_catalog_images("m.none") == []
    stats = store.catalog_stats()
    latest = {model: counts.pop("latest") for model, counts in stats["models"].items()}
    assert stats == {"images": 3, "models": {
        "m.a": {"images": 2, "individuals": 1, "species": 1},
        "m.b": {"images": 1, "individuals": 1, "species": 1}}}
    assert all(latest.values())  # the newest row per model: how other workers notice a change
    got = store.get_catalog_image("img1").embedding
    got[0] = 42.0  # arrays handed out are writable copies
    assert store.get_catalog_image("img1").embedding[0] != 42.0


def test_remove_individual_counts(store):
    store.add_catalog_images([make_image(i, individual="a" if i < 3 else "b") for i in range(5)])
    assert store.remove_individual("a") == 3
    assert store.remove_individual("a") == 0
    assert [im.individual_id for im in store.list_catalog_images()] == ["b", "b"]
    store.add_catalog_images([])


def test_a_failed_write_leaves_nothing(store):
    bad = make_image(2, embedding=np.array([object()], dtype=object))
    with pytest.raises(TypeError):
        store.add_catalog_images([make_image(1), bad])
    assert store.list_catalog_images() == []
    # the database refuses a row the schema forbids, and the image in the same transaction goes too
    with pytest.raises(Exception):  # noqa: B017 - sqlite3.IntegrityError / psycopg.errors.CheckViolation
        store.save_prediction(make_record(1, sighting=Sighting(latitude=999.0, longitude=0.0)),
                              image_jpeg=b"jpeg")
    assert store.get_prediction("p0001") is None and store.get_prediction_image("p0001") is None
    store.save_prediction(make_record(1))  # the store is still usable
    assert store.count_predictions() == 1


def test_closed_store_refuses_work(store_url):
    opened = open_store(store_url)
    opened.close()
    opened.close()  # idempotent
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own "closed" error
        opened.ping()


def test_urls(tmp_path, monkeypatch):
    assert sqlite_path("sqlite:///data/whales.db") == "data/whales.db"
    assert sqlite_path("sqlite:////abs/whales.db") == "/abs/whales.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
    assert sqlite_path("sqlite://") == ":memory:"
    with pytest.raises(ValueError, match="unsupported database URL 'host/db'"):
        open_store("mysql://user:secret@host/db")
    with pytest.raises(ValueError, match="unsupported"):
        open_store("whales.db")
    monkeypatch.chdir(tmp_path)
    # the storage layer reads no environment: the service's Settings and the CLI's --db do
    monkeypatch.setenv("WHALES_DATABASE_URL", "sqlite:///nested/dir/env.db")
    default = open_store()
    default.close()
    assert (tmp_path / "data" / "whales.db").is_file() and not (tmp_path / "nested").exists()
    open_store("sqlite:///nested/dir/given.db").close()
    assert (tmp_path / "nested" / "dir" / "given.db").is_file()
    memory = open_store("sqlite:///:memory:")
    memory.save_prediction(make_record(1))
    assert memory.count_predictions() == 1
    memory.close()


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    import sqlite3

    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    store.close()
    conn = sqlite3.connect(tmp_path / "w.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_importing_integrations_does_not_load_drivers():
    import subprocess
    import sys

    code = ("import sys, integrations; integrations.open_store('sqlite:///:memory:').close(); "
            "print('psycopg' in sys.modules, 'fastapi' in sys.modules, 'torch' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
