"""The review queue in the stores (in memory, SQLite, PostgreSQL): one indexed query per page with
the same answers everywhere, and an undo that reverses the enrolment in one transaction with exactly
one winner among concurrent undos and reviews."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from integrations.base import open_store
from whales_identify.errors import ConflictError, NotFoundError
from whales_identify.records.review_queue import (
    InvalidCursorError,
    PredictionQuery,
    decode_cursor,
    encode_cursor,
)
from whales_identify.records.store import CatalogImage, PredictionRecord

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def record(i: int, **kw) -> PredictionRecord:
    base = dict(prediction_id=f"p{i:02d}", image_sha256="0" * 64, filename=f"{i}.jpg", rejected=False,
                rejection_reason=None, cetacean_score=0.9, gate_backend="embedded", gate_version="v",
                species="humpback_whale" if i % 2 else "blue_whale", individual_id=None,
                is_new_individual=i % 3 == 0, probability=i / 20, candidates=[], model_version="m",
                created_at=T0 + timedelta(minutes=i // 2), batch_id="b1" if i < 6 else "b2")
    return PredictionRecord(**{**base, **kw})


def ids(rows):
    return [r.prediction_id for r in rows]


def test_filters_and_keyset(any_store):
    for i in range(12):
        any_store.save_prediction(record(i))  # pairs share a created_at: ties broken by id
    everything = ids(any_store.query_predictions(PredictionQuery(newest_first=False, limit=100)))
    assert everything == [f"p{i:02d}" for i in range(12)]
    assert ids(any_store.query_predictions(PredictionQuery(limit=100))) == everything[::-1]
    for newest in (True, False):
        walked, after = [], None
        while True:
            page = any_store.query_predictions(PredictionQuery(newest_first=newest, after=after, limit=5))
            walked += ids(page)
            if len(page) < 5:
                break
            after = decode_cursor(encode_cursor(page[-1].created_at, page[-1].prediction_id))
        assert walked == (everything[::-1] if newest else everything)
    q = PredictionQuery(batch_id="b1", species="humpback_whale", newest_first=False, limit=100)
    assert ids(any_store.query_predictions(q)) == ["p01", "p03", "p05"]
    q = PredictionQuery(new_individual=True, min_probability=0.1, max_probability=0.45, newest_first=False)
    assert ids(any_store.query_predictions(q)) == ["p03", "p06", "p09"]
    q = PredictionQuery(created_from=T0 + timedelta(minutes=1), created_to=T0 + timedelta(minutes=2),
                        newest_first=False)
    assert ids(any_store.query_predictions(q)) == ["p02", "p03"]
    any_store.save_review("p04", "not_cetacean", {"decision": "not_cetacean"}, reviewed_by="sha256:x",
                          expected_state="unreviewed")
    assert ids(any_store.query_predictions(PredictionQuery(review_state="not_cetacean"))) == ["p04"]
    assert "p04" not in ids(any_store.query_predictions(PredictionQuery(review_state="unreviewed", limit=99)))


def test_cursor_is_checked():
    for bad in ("", "x", "W10", "eyJhIjoxfQ"):
        with pytest.raises(InvalidCursorError):
            decode_cursor(bad)


def enrolled(store, image_id: str, individual: str, prediction_id: str) -> None:
    store.add_catalog_images([CatalogImage(image_id, individual, "humpback_whale", "m",
                                           np.ones(4, np.float32), source=f"review:{prediction_id}")])


def test_undo_reverses_the_enrolment(any_store):
    any_store.save_prediction(record(1))
    other = CatalogImage("other", "hw_1", "humpback_whale", "m", np.ones(4, np.float32))
    any_store.add_catalog_images([other])
    with any_store.atomic():
        any_store.save_review("p01", "confirmed", {"decision": "confirm", "individual_id": "hw_1",
                                                    "enrolled_image_ids": ["img_a"]},
                              reviewed_by="sha256:r", expected_state="unreviewed")
        enrolled(any_store, "img_a", "hw_1", "p01")
    generation = any_store.catalog_generation()
    before, removed = any_store.undo_review("p01", "confirmed", "sha256:u")
    assert before.review_state == "confirmed" and removed == ["img_a"]
    assert any_store.get_catalog_image("img_a") is None and any_store.get_catalog_image("other") is not None
    assert any_store.catalog_generation() == generation + 1
    after = any_store.get_prediction("p01")
    assert after.review_state == "unreviewed" and after.reviewed_by is None
    assert after.reviewer_decision is None
    audit = any_store.list_undos("p01")
    assert [(a["undone_by"], a["review_state"], a["reviewed_by"]) for a in audit] == \
        [("sha256:u", "confirmed", "sha256:r")]
    with pytest.raises(ConflictError):
        any_store.undo_review("p01")
    with pytest.raises(NotFoundError):
        any_store.undo_review("nope")


def test_undo_of_a_new_individual_removes_it(any_store):
    any_store.save_prediction(record(2))
    any_store.save_review("p02", "new_individual", {"decision": "new_individual", "individual_id": "hw_new",
                                                     "enrolled_image_ids": ["img_b"]})
    enrolled(any_store, "img_b", "hw_new", "p02")
    with pytest.raises(ConflictError):
        any_store.undo_review("p02", expected_state="confirmed")
    assert any_store.has_individual("hw_new")
    any_store.undo_review("p02", expected_state="new_individual")
    assert not any_store.has_individual("hw_new")


def test_concurrent_undos_one_winner(store_url):
    stores = [open_store(store_url) for _ in range(4)]  # one connection each, as separate workers have
    try:
        stores[0].save_prediction(record(3))
        stores[0].save_review("p03", "not_cetacean", {"decision": "not_cetacean"})
        barrier, outcomes = threading.Barrier(4), []

        def undo(s) -> None:
            barrier.wait()
            try:
                s.undo_review("p03", undone_by="sha256:t")
                outcomes.append("ok")
            except ConflictError:
                outcomes.append("conflict")

        threads = [threading.Thread(target=undo, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * 3 + ["ok"]
        assert len(stores[0].list_undos("p03")) == 1
    finally:
        for s in stores:
            s.close()


def test_queue_page_is_an_indexed_query(store_url, tmp_path):
    """The unreviewed queue, newest first, reads `predictions_queue` in order (no sort step)."""
    from integrations._queue import query_sql

    store = open_store(store_url)
    try:
        for i in range(60):
            store.save_prediction(record(i, prediction_id=f"x{i:03d}"))
        sql, params = query_sql(PredictionQuery(review_state="unreviewed", limit=20), store.dialect)
        if store.dialect.name == "sqlite":
            import sqlite3

            with sqlite3.connect(store_url.split("sqlite:///", 1)[1]) as conn:
                plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "predictions_queue" in plan and "TEMP B-TREE" not in plan, plan
        else:
            import psycopg

            with psycopg.connect(store_url) as conn:
                conn.execute("ANALYZE predictions")
                conn.execute("SET enable_seqscan = off")  # 60 rows: show the index serves the query
                plan = " ".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", params))
            assert "predictions_queue" in plan and "Sort" not in plan, plan
    finally:
        store.close()


def test_curation_rename_and_remove_one_photo(any_store):
    for image_id, individual in (("i1", "hw_a"), ("i2", "hw_a"), ("i3", "hw_b")):
        any_store.add_catalog_images([CatalogImage(image_id, individual, "humpback_whale", "m",
                                                   np.ones(4, np.float32))])
    generation = any_store.catalog_generation()
    with pytest.raises(ConflictError):
        any_store.rename_individual("hw_a", "hw_b", "sha256:k")
    with pytest.raises(NotFoundError):
        any_store.rename_individual("ghost", "hw_c", "sha256:k")
    assert any_store.catalog_generation() == generation  # refused: nothing written
    assert any_store.rename_individual("hw_a", "hw_c", "sha256:k") == 2
    assert not any_store.has_individual("hw_a")
    assert [im.image_id for im in any_store.list_individual_images("hw_c")] == ["i1", "i2"]
    assert any_store.remove_catalog_image("i1", "sha256:k") == ("hw_c", 1)
    with pytest.raises(NotFoundError):
        any_store.remove_catalog_image("i1")
    assert any_store.catalog_generation() == generation + 2
    assert [a["action"] for a in any_store.list_catalog_audit("hw_a")] == ["rename"]
    removed = [a for a in any_store.list_catalog_audit("hw_c") if a["action"] == "remove_image"]
    assert removed[0]["actor"] == "sha256:k" and removed[0]["detail"]["image_id"] == "i1"


def test_concurrent_renames_to_one_id_one_winner(store_url):
    stores = [open_store(store_url) for _ in range(2)]
    try:
        for n, s in enumerate(stores):
            photo = CatalogImage(f"r{n}", f"hw_r{n}", "humpback_whale", "m", np.ones(4, np.float32))
            s.add_catalog_images([photo])
        barrier, outcomes = threading.Barrier(2), []

        def rename(n: int) -> None:
            barrier.wait()
            try:
                outcomes.append(stores[n].rename_individual(f"hw_r{n}", "hw_same"))
            except ConflictError:
                outcomes.append("conflict")

        threads = [threading.Thread(target=rename, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(map(str, outcomes)) == ["1", "conflict"]
        assert len(stores[0].list_individual_images("hw_same")) == 1
    finally:
        for s in stores:
            s.close()
