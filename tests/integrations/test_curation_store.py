"""Catalog curation in the stores (in memory, SQLite, PostgreSQL): merging two individuals and moving
one photo, each one transaction that moves the catalog generation, writes audit rows naming the
caller, keeps the retired id resolvable and rewrites the stored predictions that name it (so the
queue and Darwin Core `organismID` follow); a refused change leaves everything as it was."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from integrations.base import open_store
from integrations.darwin_core import identification
from whales_identify.errors import ConflictError, NotFoundError
from whales_identify.records.review_queue import PredictionQuery
from whales_identify.records.store import CatalogImage, PredictionRecord

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def photo(image_id: str, individual: str, species: str = "humpback_whale", source: str = "",
          minute: int = 0) -> CatalogImage:
    return CatalogImage(image_id, individual, species, "m", np.ones(4, np.float32), source=source,
                        filename=f"{image_id}.jpg", created_at=T0 + timedelta(minutes=minute))


def prediction(pid: str, minute: int, individual: str | None, candidates: list[str],
               **kw) -> PredictionRecord:
    base = dict(prediction_id=pid, image_sha256="0" * 64, filename=f"{pid}.jpg", rejected=False,
                rejection_reason=None, cetacean_score=0.9, gate_backend="embedded", gate_version="v",
                species="humpback_whale", individual_id=individual, is_new_individual=individual is None,
                probability=0.9, model_version="m", created_at=T0 + timedelta(minutes=minute),
                candidates=[{"individual_id": c, "species": "humpback_whale", "score": 0.9 - i / 10}
                            for i, c in enumerate(candidates)])
    return PredictionRecord(**{**base, **kw})


def seed(store) -> None:
    store.add_catalog_images([photo("a1", "hw_a", minute=1), photo("a2", "hw_a", minute=2),
                              photo("d1", "hw_dup", "unknown", source="review:p02", minute=3),
                              photo("x1", "hwXdup", minute=4)])  # `_` is a LIKE wildcard: must not match
    store.save_prediction(prediction("p01", 1, "hw_dup", ["hw_dup", "hw_a", "hwXdup"]))
    store.save_prediction(prediction("p02", 2, None, ["hw_a"]))
    store.save_review("p02", "confirmed", {"decision": "confirm", "individual_id": "hw_dup",
                                           "enrolled_image_ids": ["d1"]}, reviewed_by="Ana")
    store.save_prediction(prediction("p03", 3, "hwXdup", ["hwXdup"]))


def cand_ids(record) -> list[str]:
    return [c["individual_id"] for c in record.candidates]


def test_merge_keeps_history_and_rewrites_predictions(any_store):
    seed(any_store)
    generation = any_store.catalog_generation()
    result = any_store.merge_individuals("hw_dup", "hw_a", "Ana")
    assert result == {"individual_id": "hw_a", "merged_id": "hw_dup", "species": "humpback_whale",
                      "moved_images": 1, "images": 3, "predictions_rewritten": 2}
    assert any_store.catalog_generation() == generation + 1
    assert not any_store.has_individual("hw_dup")
    merged = any_store.list_individual_images("hw_a")
    assert {im.image_id: (im.individual_id, im.species) for im in merged} == \
        {"a1": ("hw_a", "humpback_whale"), "a2": ("hw_a", "humpback_whale"), "d1": ("hw_a", "humpback_whale")}
    p01, p02, p03 = (any_store.get_prediction(p) for p in ("p01", "p02", "p03"))
    assert p01.individual_id == "hw_a" and cand_ids(p01) == ["hw_a", "hwXdup"]  # the better-ranked kept
    assert p01.candidates[0]["score"] == pytest.approx(0.9)
    assert p02.reviewer_decision["individual_id"] == "hw_a"
    assert p02.reviewer_decision["previous_individual_ids"] == ["hw_dup"]
    assert p02.reviewed_by == "Ana" and p02.review_state == "confirmed"
    assert (p03.individual_id, cand_ids(p03)) == ("hwXdup", ["hwXdup"])
    assert identification(p02).individual == "hw_a"  # Darwin Core organismID
    assert any_store.resolve_individual("hw_dup") == "hw_a" and any_store.resolve_individual("hw_a") is None
    assert any_store.list_aliases("hw_a") == ["hw_dup"]
    audit = any_store.list_catalog_audit("hw_dup")
    assert [(a["action"], a["actor"], a["detail"]["into"]) for a in audit] == [("merge", "Ana", "hw_a")]
    assert [(a["action"], a["detail"]["from"], a["detail"]["predictions"])
            for a in any_store.list_catalog_audit("hw_a")] == [("merge_in", "hw_dup", 2)]
    # the queue filters on the rewritten id
    queue = any_store.query_predictions(PredictionQuery(individual_id="hw_a", limit=10))
    assert [r.prediction_id for r in queue] == ["p01"]

    # a rename later moves the alias along (one look-up still answers) and the predictions again
    assert any_store.rename_individual("hw_a", "hw_b", "Ben") == 3
    assert any_store.resolve_individual("hw_dup") == "hw_b" and any_store.resolve_individual("hw_a") == "hw_b"
    assert any_store.list_aliases("hw_b") == ["hw_a", "hw_dup"]
    p02 = any_store.get_prediction("p02")
    assert p02.reviewer_decision["individual_id"] == "hw_b"
    assert p02.reviewer_decision["previous_individual_ids"] == ["hw_dup", "hw_a"]
    assert any_store.get_prediction("p01").individual_id == "hw_b"
    assert [a["action"] for a in any_store.list_catalog_audit("hw_b")] == ["rename_in"]


def test_refused_merges_change_nothing(any_store):
    seed(any_store)
    any_store.add_catalog_images([photo("b1", "hw_blue", "blue_whale", minute=5)])
    generation = any_store.catalog_generation()
    with pytest.raises(ConflictError):
        any_store.merge_individuals("hw_a", "hw_a")
    with pytest.raises(NotFoundError):
        any_store.merge_individuals("ghost", "hw_a")
    with pytest.raises(NotFoundError):
        any_store.merge_individuals("hw_a", "ghost")
    with pytest.raises(ConflictError, match="different species"):
        any_store.merge_individuals("hw_blue", "hw_a")
    assert any_store.catalog_generation() == generation
    assert any_store.has_individual("hw_blue") and any_store.resolve_individual("hw_blue") is None
    assert any_store.get_prediction("p01").individual_id == "hw_dup"
    assert any_store.list_catalog_audit("hw_blue") == []


def test_move_one_photo(any_store):
    seed(any_store)
    any_store.add_catalog_images([photo("b1", "hw_blue", "blue_whale", minute=5)])
    generation = any_store.catalog_generation()
    moved = any_store.move_catalog_image("d1", "hw_blue", actor="Ana")
    assert moved == {"image_id": "d1", "from_individual_id": "hw_dup", "individual_id": "hw_blue",
                     "species": "blue_whale", "remaining_images": 0, "created": False,
                     "predictions_rewritten": 1}
    assert any_store.catalog_generation() == generation + 1
    assert not any_store.has_individual("hw_dup")  # gone with its last photo; not an alias
    assert any_store.resolve_individual("hw_dup") is None
    image = any_store.get_catalog_image("d1")
    assert (image.individual_id, image.species) == ("hw_blue", "blue_whale")
    p02 = any_store.get_prediction("p02")  # its review enrolled d1: the decision follows the photo
    assert p02.reviewer_decision["individual_id"] == "hw_blue" and identification(p02).individual == "hw_blue"
    assert any_store.get_prediction("p01").individual_id == "hw_dup"  # the model's answer stays
    assert [(a["action"], a["actor"]) for a in any_store.list_catalog_audit("hw_dup")] == \
        [("move_image_out", "Ana")]
    assert [a["detail"]["from"] for a in any_store.list_catalog_audit("hw_blue")] == ["hw_dup"]

    created = any_store.move_catalog_image("a2", "hw_new", create=True, actor="Ana")
    assert created["created"] and created["remaining_images"] == 1 and created["predictions_rewritten"] == 0
    assert [im.image_id for im in any_store.list_individual_images("hw_new")] == ["a2"]
    for bad, error in ((("a1", "hw_a"), ConflictError), (("a1", "ghost"), NotFoundError),
                       (("nope", "hw_a"), NotFoundError)):
        with pytest.raises(error):
            any_store.move_catalog_image(*bad)
    with pytest.raises(ConflictError):
        any_store.move_catalog_image("a1", "hw_blue", create=True)
    # undoing the review reverses its enrolment wherever the photo went
    _, removed = any_store.undo_review("p02", undone_by="Ana")
    assert removed == ["d1"] and any_store.get_catalog_image("d1") is None


def test_concurrent_opposite_merges_one_winner(store_url):
    stores = [open_store(store_url) for _ in range(2)]  # separate connections, as two workers have
    try:
        stores[0].add_catalog_images([photo("a1", "hw_a"), photo("b1", "hw_b", minute=1)])
        outcomes: list[object] = []
        barrier = threading.Barrier(2)

        def merge(n: int, source: str, target: str) -> None:
            barrier.wait()
            try:
                outcomes.append(stores[n].merge_individuals(source, target, f"r{n}")["individual_id"])
            except NotFoundError as exc:
                outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=merge, args=(0, "hw_a", "hw_b")),
                   threading.Thread(target=merge, args=(1, "hw_b", "hw_a"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(map(str, outcomes))[0] == "NotFoundError" and len(outcomes) == 2, outcomes
        winner = next(o for o in outcomes if o != "NotFoundError")
        loser = "hw_a" if winner == "hw_b" else "hw_b"
        assert len(stores[0].list_individual_images(winner)) == 2
        assert stores[0].resolve_individual(loser) == winner and not stores[0].has_individual(loser)
    finally:
        for s in stores:
            s.close()


def test_benchmark_curation_runs_small(tmp_path):
    """scripts/benchmark_curation.py (the timing in docs/DATABASE.md) still runs against the store."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "scripts/benchmark_curation.py", "--db", f"sqlite:///{tmp_path / 'b.db'}",
                    "--predictions", "300", "--individuals", "20", "--out", str(out)],
                   cwd=Path(__file__).resolve().parents[2], check=True, capture_output=True, timeout=300)
    report = json.loads(out.read_text())
    assert len(report["merges"]) == 3 and all(m["predictions_rewritten"] > 0 for m in report["merges"])
    assert report["rename_s"] >= 0


def test_a_prediction_made_against_the_old_catalog_is_stored_with_current_ids(any_store):
    """A worker (or a `whales batch` job) that matched before the merge committed saves afterwards."""
    seed(any_store)
    any_store.merge_individuals("hw_dup", "hw_a", "Ana")
    any_store.rename_individual("hw_a", "hw_b", "Ana")
    late = prediction("p09", 9, "hw_dup", ["hw_dup", "hw_a", "hwXdup"])
    any_store.save_prediction(late)
    stored = any_store.get_prediction("p09")
    assert stored.individual_id == "hw_b" and cand_ids(stored) == ["hw_b", "hwXdup"]
    any_store.save_prediction(prediction("p10", 10, "hwXdup", ["hwXdup"]))  # nothing retired: as given
    assert any_store.get_prediction("p10").individual_id == "hwXdup"


def test_a_retired_id_used_again_is_live_and_keeps_its_new_predictions(any_store):
    seed(any_store)
    any_store.merge_individuals("hw_dup", "hw_a", "Ana")
    assert any_store.resolve_individual("hw_dup") == "hw_a"
    # a photo moved to the retired id (create) makes it live again: it no longer points at hw_a
    any_store.move_catalog_image("a2", "hw_dup", create=True, actor="Ana")
    assert any_store.has_individual("hw_dup") and any_store.resolve_individual("hw_dup") is None
    assert any_store.list_aliases("hw_a") == []
    # the same through enrolment (a review or an upload naming the retired id)
    any_store.rename_individual("hw_dup", "hw_c", "Ben")
    assert any_store.resolve_individual("hw_dup") == "hw_c"
    any_store.add_catalog_images([photo("n1", "hw_dup")])
    assert any_store.resolve_individual("hw_dup") is None
    # so a prediction that answers the revived id is stored under it, not under where it once went
    any_store.save_prediction(prediction("p99", 30, "hw_dup", ["hw_dup", "hw_c"]))
    assert any_store.get_prediction("p99").individual_id == "hw_dup"
