"""Store support for issue 19 on SQLite and PostgreSQL: catalog generation, conditional and atomic
reviews with attribution, the indexed individual look-up, retention purges and a readiness ping."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from test_store import T0, make_image, make_record

from integrations.base import open_store
from integrations.sqlite import SQLiteStore
from whales_identify.errors import ConflictError
from whales_identify.records.store import InMemoryStore


def test_every_catalog_write_adds_one_to_the_generation(store):
    g0 = store.catalog_generation()
    store.add_catalog_images([make_image(1), make_image(2)])
    assert store.catalog_generation() == g0 + 1
    assert store.remove_individual("nobody") == 0
    assert store.catalog_generation() == g0 + 2  # one write, one step, even when nothing changed
    store.save_prediction(make_record(1))  # predictions are not the catalog
    assert store.catalog_generation() == g0 + 2


def test_a_review_is_conditional_and_records_who_and_when(store):
    store.save_prediction(make_record(1))
    saved = store.save_review("p0001", "confirmed", {"decision": "confirm"}, reviewed_by="sha256:abc",
                              expected_state="unreviewed")
    assert saved.review_state == "confirmed" and saved.reviewed_by == "sha256:abc"
    assert saved.reviewed_at is not None
    with pytest.raises(ConflictError):
        store.save_review("p0001", "not_cetacean", {}, reviewed_by="sha256:def", expected_state="unreviewed")
    with pytest.raises(KeyError):
        store.save_review("missing", "confirmed", {}, expected_state="unreviewed")
    assert store.get_prediction("p0001").reviewed_by == "sha256:abc"


def test_atomic_commits_all_or_nothing(store):
    store.save_prediction(make_record(1))
    g0 = store.catalog_generation()
    with pytest.raises(RuntimeError), store.atomic():
        store.save_review("p0001", "confirmed", {}, expected_state="unreviewed")
        store.add_catalog_images([make_image(7, individual="hw_new")])
        assert store.has_individual("hw_new")  # the transaction sees its own writes
        raise RuntimeError("crash between enrolment and the end of the review")
    assert store.get_prediction("p0001").review_state == "unreviewed"
    assert not store.has_individual("hw_new") and store.catalog_generation() == g0
    with store.atomic():
        store.save_review("p0001", "confirmed", {}, expected_state="unreviewed")
        store.add_catalog_images([make_image(7, individual="hw_new")])
    assert store.get_prediction("p0001").review_state == "confirmed"
    assert store.has_individual("hw_new") and store.catalog_generation() == g0 + 1


def test_concurrent_conditional_reviews_from_separate_connections_have_one_winner(store_url):
    # Separate stores stand for separate worker processes (own connections, no shared lock).
    stores = [open_store(store_url) for _ in range(4)]
    try:
        stores[0].save_prediction(make_record(1))
        barrier = threading.Barrier(len(stores))
        outcomes: list[str] = []

        def review(s, i):
            barrier.wait()
            try:
                with s.atomic():
                    s.save_review("p0001", "confirmed", {"by": i}, reviewed_by=f"k{i}",
                                  expected_state="unreviewed")
                    s.add_catalog_images([make_image(100 + i, individual="hw1")])
                outcomes.append("won")
            except ConflictError:
                outcomes.append("conflict")

        threads = [threading.Thread(target=review, args=(s, i)) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(outcomes) == ["conflict"] * 3 + ["won"], outcomes
        assert len(stores[0].list_individual_images("hw1")) == 1  # the losers enrolled nothing
    finally:
        for s in stores:
            s.close()


def test_individual_images_by_index(store):
    store.add_catalog_images([make_image(1, "hw1"), make_image(2, "hw2"), make_image(3, "hw1"),
                              make_image(4, "hw1", model_id="m.b")])
    assert [im.image_id for im in store.list_individual_images("hw1", model_id="m.a")] == ["img1", "img3"]
    assert len(store.list_individual_images("hw1")) == 3 and store.list_individual_images("zz") == []
    query = "SELECT image_id FROM catalog_images WHERE individual_id = ? AND model_id = ?"
    if isinstance(store, SQLiteStore):
        with store._read() as cur:
            cur.execute(f"EXPLAIN QUERY PLAN {query}", ("hw1", "m.a"))
            plan = " ".join(str(r[-1]) for r in cur.fetchall())
        assert "USING INDEX" in plan, plan
        return
    # PostgreSQL plans from statistics: give it a catalog of 60 individuals, as a real one has
    store.add_catalog_images([make_image(10 + i, f"ind{i % 60}") for i in range(240)])
    with store._read() as cur:
        cur.execute("ANALYZE catalog_images")
        cur.execute("SET LOCAL enable_seqscan = off")  # a table this small is scanned whatever the index
        cur.execute(f"EXPLAIN {query.replace('?', '%s')}", ("hw1", "m.a"))
        plan = " ".join(str(r[0]) for r in cur.fetchall())
    assert "catalog_images_individual" in plan, plan


def test_retention_purges_only_old_unreviewed_predictions(store):
    for i in range(4):
        store.save_prediction(make_record(i), image_jpeg=b"jpeg%d" % i)  # created T0 + i minutes
    store.save_review("p0000", "confirmed", {})
    photos, records = store.purge_predictions(photos_before=T0 + timedelta(minutes=2),
                                              records_before=None)
    assert (photos, records) == (1, 0)  # p0001 lost its photo; p0000 is reviewed and kept
    assert store.get_prediction_image("p0001") is None and store.get_prediction_image("p0000") == b"jpeg0"
    photos, records = store.purge_predictions(None, records_before=T0 + timedelta(minutes=3))
    assert records == 2 and store.get_prediction("p0002") is None
    assert store.get_prediction_image("p0002") is None  # the photo went with its record
    assert store.get_prediction("p0000") is not None and store.get_prediction("p0003") is not None


def test_memory_store_has_the_same_semantics():
    store = InMemoryStore()
    store.save_prediction(make_record(1), image_jpeg=b"x")
    with pytest.raises(RuntimeError), store.atomic():
        store.save_review("p0001", "confirmed", {}, expected_state="unreviewed")
        raise RuntimeError
    assert store.get_prediction("p0001").review_state == "unreviewed"
    store.save_review("p0001", "confirmed", {}, reviewed_by="k", expected_state="unreviewed")
    with pytest.raises(ConflictError):
        store.save_review("p0001", "confirmed", {}, expected_state="unreviewed")
    g = store.catalog_generation()
    store.remove_individual("x")
    assert store.catalog_generation() == g + 1


def test_sqlite_ping_fails_when_the_file_is_gone(tmp_path: Path):
    path = tmp_path / "w.db"
    store = SQLiteStore(path)
    try:
        store.ping()
        path.rename(tmp_path / "moved.db")
        with pytest.raises(Exception, match="missing"):
            store.ping()
    finally:
        store.close()
