"""`Catalog.refresh` (issue 18): a worker applies only the photos another worker or replica changed
(the store's change log names them) instead of reading the whole catalog again, and ends in the
state a fresh load of the store would give: the same individuals, counts and votes. A relabelled
photo (rename, merge, move) keeps its descriptors; nothing here rebuilds the vote index."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.identify.vote_fakes import MODEL, clusters, records, scores
from whales_identify.records.store import InMemoryStore
from whales_identify.reid.calibrate import Calibration
from whales_identify.reid.catalog import Catalog, MatchConfig
from whales_identify.reid.vote_index import FaissVoteIndex
from whales_identify.reid.vote_masked import MaskedVoteIndex

CFG = dict(global_candidates=0, vote_candidates=0)


def _catalog(store, **cfg) -> Catalog:
    return Catalog(store, MODEL, config=MatchConfig(**CFG, **cfg), calibration=Calibration(model_id=MODEL))


def _same_as_a_fresh_load(cat: Catalog, store, queries, **cfg) -> None:
    fresh = _catalog(store, **cfg).load()
    assert cat.list_individuals() == fresh.list_individuals()
    assert cat.stats() == fresh.stats()
    for q in (queries[1], queries[5]):
        got, want = scores(cat, q), scores(fresh, q)
        assert got.individual_ids == want.individual_ids
        np.testing.assert_allclose(got.vote, want.vote, rtol=1e-5)
        np.testing.assert_allclose(got.cos, want.cos, rtol=1e-6)


@pytest.mark.parametrize("packed", [False, True], ids=["in_ram", "feature_pack"])
def test_changes_made_by_another_process_are_applied_without_a_reload(tmp_path, monkeypatch, packed):
    cfg = dict(features_dir=str(tmp_path)) if packed else {}
    parts, labels, queries = clusters(21, n_ind=12, photos=3, k=30)
    store = InMemoryStore()
    recs = records(parts, labels)  # ind3's species unknown: merging ind2 into it changes all of them
    store.add_catalog_images([replace(r, species="unknown") if r.individual_id == "ind3" else r
                              for r in recs])
    cat = _catalog(store, **cfg).load()
    cat.warm_index()
    before = {iid: im for iid, im in cat._images.items()}  # noqa: SLF001
    # another worker, on the same database: a rename, a merge, a move, a removal, an enrolment
    store.rename_individual("ind1", "ind1_named")
    store.merge_individuals("ind2", "ind3")
    store.move_catalog_image("im0000", "ind4")
    store.remove_catalog_image("im0030")
    more_parts, more_labels, _ = clusters(22, n_ind=1, photos=2, k=30)
    store.add_catalog_images(records(more_parts, more_labels + 40, start=200))
    touched = ["im0003", "im0004", "im0005", *[f"im{i:04d}" for i in range(6, 12)], "im0000", "im0030",
               "im0200", "im0201"]  # what the store's change log names for these writes
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    monkeypatch.setattr(Catalog, "load", lambda *a, **k: pytest.fail("reloaded"))
    assert cat.refresh(touched)
    assert isinstance(cat._snapshot().vote_index(), MaskedVoteIndex)  # noqa: SLF001
    held = cat._images  # noqa: SLF001
    assert held["im0003"].individual_id == "ind1_named"
    assert {held[f"im{i:04d}"].species for i in range(6, 12)} == {"s"}
    assert cat.get_individual("ind3").species == "s"
    for iid in ("im0003", "im0006", "im0000"):  # relabelled: the arrays held before, not the store's
        assert held[iid].embedding is before[iid].embedding
        assert held[iid].descriptors is before[iid].descriptors  # (views into the pack, if packed)
    if packed:
        assert {"im0003", "im0006", "im0000"} <= set(cat._digests)  # noqa: SLF001 (still the pack's)
    monkeypatch.undo()
    _same_as_a_fresh_load(cat, store, queries, **cfg)


def test_applying_the_same_changes_twice_changes_nothing():
    parts, labels, _ = clusters(23, n_ind=6, photos=2, k=30)
    store = InMemoryStore()
    store.add_catalog_images(records(parts, labels))
    cat = _catalog(store).load()
    store.rename_individual("ind2", "ind2_named")
    assert cat.refresh(["im0004", "im0005"])
    assert cat.get_individual("ind2_named").n_images == 2
    snapshot = cat._snapshot()  # noqa: SLF001
    assert cat.refresh(["im0004", "im0005", "never_stored"])  # again (its own write, read back)
    assert cat._snapshot() is snapshot  # noqa: SLF001 (nothing differed: the index is kept)


def test_new_photos_only_extend_the_snapshot():
    parts, labels, _ = clusters(24, n_ind=6, photos=2, k=30)
    store = InMemoryStore()
    store.add_catalog_images(records(parts, labels))
    cat = _catalog(store).load()
    first = cat._snapshot()  # noqa: SLF001
    more_parts, more_labels, _ = clusters(25, n_ind=1, photos=2, k=30)
    store.add_catalog_images(records(more_parts, more_labels + 9, start=100))
    assert cat.refresh(["im0100", "im0101"])
    assert cat._snapshot()._previous is first  # noqa: SLF001 (appended, as after an own enrolment)
    assert len(cat) == 14


def test_a_photo_of_another_model_is_left_to_a_full_load():
    parts, labels, _ = clusters(26, n_ind=4, photos=2, k=30)
    store = InMemoryStore()
    recs = records(parts, labels)
    store.add_catalog_images(recs)
    cat = _catalog(store).load()
    store.add_catalog_images([replace(recs[0], model_id="other.model")])
    assert not cat.refresh(["im0000"])
    assert cat._images["im0000"].model_id == MODEL  # noqa: SLF001 (unchanged: the caller loads, which refuses)


@pytest.mark.parametrize("packed", [False, True], ids=["in_ram", "feature_pack"])
def test_relabels_only_keep_the_snapshots_arrays_and_vote_index(tmp_path, packed):
    """A rename, a merge and a move change labels, not photos: the next snapshot shares the
    embeddings and the vote index (at 100k photos a new snapshot cost ~1.5 s of copying), and
    answers like a fresh load; an enrolment after it still extends it."""
    cfg = dict(features_dir=str(tmp_path)) if packed else {}
    parts, labels, queries = clusters(27, n_ind=10, photos=3, k=30)
    store = InMemoryStore()
    recs = records(parts, labels)
    store.add_catalog_images([replace(r, species="unknown") if r.individual_id == "ind6" else r
                              for r in recs])
    cat = _catalog(store, **cfg).load()
    cat.warm_index()
    old = cat._snapshot()  # noqa: SLF001
    index = old.vote_index()
    store.rename_individual("ind5", "ind5_named")
    store.merge_individuals("ind7", "ind6")  # ind6 was unknown: all six photos change species
    store.move_catalog_image("im0000", "ind9")
    touched = ["im0015", "im0016", "im0017", *[f"im{i:04d}" for i in range(18, 24)], "im0000"]
    assert cat.refresh(touched)
    new = cat._snapshot()  # noqa: SLF001
    assert new is not old and new._emb_buf is old._emb_buf and new.vote_index() is index  # noqa: SLF001
    assert "ind5" not in new.individuals and new.species[new.individuals.index("ind6")] == "s"
    _same_as_a_fresh_load(cat, store, {1: queries[5], 5: queries[7]}, **cfg)
    got = scores(cat, queries[5])
    assert got.individual_ids[int(np.argmax(got.vote))] == "ind5_named"
    more_parts, more_labels, _ = clusters(28, n_ind=1, photos=2, k=30)
    cat.add_images(records(more_parts, more_labels + 30, start=300))
    assert cat._snapshot()._previous is new  # noqa: SLF001 (appended to the relabelled snapshot)
    _same_as_a_fresh_load(cat, store, {1: queries[5], 5: queries[0]}, **cfg)


@pytest.mark.parametrize("packed", [False, True], ids=["in_ram", "feature_pack"])
def test_a_photo_stored_again_with_other_features_is_replaced(tmp_path, packed):
    """Another process re-extracted one photo (same id, other descriptors): the held record and
    its packed digest give way, and the answers are a fresh load's."""
    cfg = dict(features_dir=str(tmp_path)) if packed else {}
    parts, labels, queries = clusters(29, n_ind=8, photos=3, k=30)
    store = InMemoryStore()
    recs = records(parts, labels)
    store.add_catalog_images(recs)
    cat = _catalog(store, **cfg).load()
    cat.warm_index()
    assert not packed or "im0004" in cat._digests  # noqa: SLF001
    store.add_catalog_images([replace(recs[4], descriptors=recs[4].descriptors[::-1].copy())])
    assert cat.refresh(["im0004"])
    np.testing.assert_array_equal(cat._images["im0004"].descriptors, recs[4].descriptors[::-1])  # noqa: SLF001
    assert "im0004" not in (cat._digests or {})  # noqa: SLF001
    assert isinstance(cat._snapshot().vote_index(), MaskedVoteIndex)  # noqa: SLF001
    _same_as_a_fresh_load(cat, store, {1: queries[1], 5: queries[2]}, **cfg)
