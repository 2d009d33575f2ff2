"""Photo removals reuse the vote index with the removed photos masked (issue 18): a curator's
delete must not make the next query wait for a rebuild (minutes at 100k photos). The masked index
answers exactly like the same index holding only the photos still in the catalog."""

from __future__ import annotations

import numpy as np
import pytest

from tests.identify.vote_fakes import MODEL, clusters, records, scores
from whales_identify.records.store import InMemoryStore
from whales_identify.reid.calibrate import Calibration
from whales_identify.reid.catalog import Catalog, MatchConfig
from whales_identify.reid.local_features import as_float
from whales_identify.reid.vote_index import FaissVoteIndex, TieredVoteIndex
from whales_identify.reid.vote_masked import MASK_SHARE, MaskedVoteIndex, Reusable, photo_keys, reuse

CFG = dict(global_candidates=0, vote_candidates=0)


def _catalog(store=None, **cfg) -> Catalog:
    return Catalog(store or InMemoryStore(), MODEL, config=MatchConfig(**CFG, **cfg),
                   calibration=Calibration(model_id=MODEL))


def _fresh_scores(recs, q):
    fresh = _catalog()
    fresh.add_images(recs)
    return scores(fresh, q)


def _warm(seed: int, n_ind: int, photos: int, k: int = 30):
    """A catalog of synthetic individuals, its vote index built; its records and queries."""
    parts, labels, queries = clusters(seed, n_ind=n_ind, photos=photos, k=k)
    recs = records(parts, labels)
    cat = _catalog()
    cat.add_images(recs)
    cat.warm_index()
    return cat, recs, queries


def _no_rebuild(monkeypatch):
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))


@pytest.mark.parametrize("codes", ["PQ64x4fs,Refine(SQ8)", "SQ8", "PQ64x4fs"])
def test_a_masked_ivf_answers_like_the_same_index_holding_only_the_kept_photos(codes):
    """Same trained lists and codebooks, only the kept photos' codes added (the empty twin): the
    same neighbours and distances for every query descriptor, and never a removed photo."""
    parts, _, queries = clusters(7, n_ind=30, photos=3, k=40)
    ids = [f"im{i}" for i in range(len(parts))]
    index = FaissVoteIndex(parts, exact_below=0, list_size=60, codes=codes, nprobe=6)
    keep = [i for i in range(len(parts)) if i % 7 != 2]  # 13 of 90 photos removed
    kept_parts = [parts[i] for i in keep]
    masked = reuse(Reusable(index, photo_keys(ids, parts)), photo_keys([ids[i] for i in keep], kept_parts),
                   kept_parts)
    assert isinstance(masked, MaskedVoteIndex)
    assert len(masked) == sum(len(parts[i]) for i in keep)
    twin = index.empty_twin()
    twin.add(as_float(np.concatenate([parts[i] for i in keep])))
    owner = np.concatenate([np.full(len(parts[i]), j) for j, i in enumerate(keep)])
    q = as_float(np.concatenate(list(queries.values())).clip(0, 255).astype(np.uint8))
    idx, d2 = masked.search(q, 8)
    want_d2, want_idx = twin.search(q, 8)
    np.testing.assert_array_equal(masked.owners(idx), owner[want_idx])
    np.testing.assert_allclose(d2, want_d2, rtol=1e-6)
    assert (idx >= 0).all()


def test_removing_an_individual_reuses_the_index_and_scores_like_a_rebuild(monkeypatch):
    cat, recs, queries = _warm(8, n_ind=12, photos=3)
    _no_rebuild(monkeypatch)
    assert cat.remove_individual("ind4") == 3
    got = scores(cat, queries[9])
    index = cat._snapshot().vote_index()  # noqa: SLF001
    assert isinstance(index, MaskedVoteIndex) and len(index) == 33 * 30
    # then enrolments (a tier over the masked index) and a second removal: still no rebuild
    more_parts, more_labels, _ = clusters(9, n_ind=2, photos=2, k=30)
    more = records(more_parts, more_labels + 20, start=100)
    cat.add_images(more[:2])
    scores(cat, queries[9])
    cat.add_images(more[2:])
    scores(cat, queries[9])
    assert cat.remove_individual("ind7") == 3
    got2 = scores(cat, queries[9])
    assert isinstance(cat._snapshot().vote_index(), MaskedVoteIndex)  # noqa: SLF001
    monkeypatch.undo()
    # exact indexes (small catalogs): the same votes as a catalog built without those photos
    kept = [r for r in recs if r.individual_id != "ind4"]
    np.testing.assert_allclose(got.vote, _fresh_scores(kept, queries[9]).vote, rtol=1e-5)
    kept2 = [r for r in kept + more if r.individual_id != "ind7"]
    want2 = _fresh_scores(kept2, queries[9])
    assert got2.individual_ids == want2.individual_ids
    np.testing.assert_allclose(got2.vote, want2.vote, rtol=1e-5)
    assert int(np.argmax(got2.vote)) == want2.individual_ids.index("ind9")


def test_a_replaced_photo_is_masked_and_its_new_features_added(monkeypatch):
    cat, recs, queries = _warm(10, n_ind=8, photos=2)
    changed = records([recs[0].descriptors[::-1].copy()], [0])[0]  # same id, other descriptors
    _no_rebuild(monkeypatch)
    cat.add_images([changed])
    got = scores(cat, queries[0])
    assert isinstance(cat._snapshot().vote_index(), MaskedVoteIndex)  # noqa: SLF001
    monkeypatch.undo()
    np.testing.assert_allclose(got.vote, _fresh_scores([changed, *recs[1:]], queries[0]).vote, rtol=1e-5)


def test_removing_most_descriptors_rebuilds():
    cat, _, _ = _warm(11, n_ind=8, photos=2)
    for ind in ("ind0", "ind1", "ind2"):  # 6 of 16 photos: over MASK_SHARE
        cat.remove_individual(ind)
    assert 6 / 16 > MASK_SHARE
    assert type(cat._snapshot().vote_index()) is FaissVoteIndex  # noqa: SLF001


def test_a_reloaded_catalog_reuses_the_earlier_ones_index(monkeypatch):
    """The service reloads the catalog after curation or another worker's change
    (`state.sync_catalog`): the new catalog masks what the store no longer holds."""
    parts, labels, queries = clusters(12, n_ind=10, photos=2, k=30)
    recs = records(parts, labels)
    store = InMemoryStore()
    store.add_catalog_images(recs)
    first = _catalog(store).load()
    first.warm_index()
    store.remove_individual("ind3")
    _no_rebuild(monkeypatch)
    second = _catalog(store).load()
    second.reuse_index_of(first)
    second.warm_index()
    got = scores(second, queries[5])
    assert isinstance(second._snapshot().vote_index(), MaskedVoteIndex)  # noqa: SLF001
    monkeypatch.undo()
    other = _catalog(store, lnbnn_k=4).load()  # other settings: never another's index
    other.reuse_index_of(first)
    assert type(other._snapshot().vote_index()) is FaissVoteIndex  # noqa: SLF001
    kept = [r for r in recs if r.individual_id != "ind3"]
    np.testing.assert_allclose(got.vote, _fresh_scores(kept, queries[5]).vote, rtol=1e-5)


def test_a_start_after_removals_masks_the_saved_index(tmp_path, monkeypatch):
    """Another process (a restart, or a worker that never held the index) reads the saved index and
    masks the photos removed since; photos enrolled since are added as a tier."""
    parts, labels, queries = clusters(13, n_ind=10, photos=2, k=30)
    recs = records(parts, labels)
    store = InMemoryStore()
    store.add_catalog_images(recs[:18])
    _catalog(store, vote_index_dir=str(tmp_path)).load().warm_index()
    store.remove_individual("ind2")
    store.add_catalog_images(recs[18:])
    _no_rebuild(monkeypatch)
    restarted = _catalog(store, vote_index_dir=str(tmp_path)).load()
    got = scores(restarted, queries[9])
    index = restarted._snapshot().vote_index()  # noqa: SLF001
    assert isinstance(index, MaskedVoteIndex) and isinstance(index.inner, TieredVoteIndex)
    assert len(list(tmp_path.glob("vote-*.json"))) == 1  # nothing new saved
    monkeypatch.undo()
    kept = [r for r in recs if r.individual_id != "ind2"]
    np.testing.assert_allclose(got.vote, _fresh_scores(kept, queries[9]).vote, rtol=1e-5)


def test_an_index_saved_before_photo_keys_gets_them_when_read(tmp_path, monkeypatch):
    """Indexes saved by an earlier release have no photo keys: the first start that reads one writes
    them, so that a later removal can mask it instead of rebuilding."""
    parts, labels, queries = clusters(14, n_ind=8, photos=2, k=30)
    store = InMemoryStore()
    store.add_catalog_images(records(parts, labels))
    _catalog(store, vote_index_dir=str(tmp_path)).load().warm_index()
    (keys_file,) = tmp_path.glob("vote-*.faiss.photos.npy")
    keys_file.unlink()
    _catalog(store, vote_index_dir=str(tmp_path)).load().warm_index()
    assert keys_file.is_file()
    store.remove_individual("ind1")
    _no_rebuild(monkeypatch)
    restarted = _catalog(store, vote_index_dir=str(tmp_path)).load()
    scores(restarted, queries[0])
    assert isinstance(restarted._snapshot().vote_index(), MaskedVoteIndex)  # noqa: SLF001



class _AlwaysIVF(FaissVoteIndex):
    """The IVF a 2k+ catalog gets (these small ones would get an exact index)."""

    def __init__(self, parts, **settings):
        super().__init__(parts, exact_below=0, **settings)


def test_a_removal_after_enrolments_keeps_their_tier_even_from_an_unsearched_snapshot(monkeypatch):
    """An IVF catalog: the photos enrolled since the build sit in a tier. A removal masks base and
    tier alike (the tier's photos are not added again), also when the newest snapshot was never
    searched (its photos are the only ones added); no removed photo is ever a neighbour."""
    from whales_identify.reid import vote_saved

    monkeypatch.setattr(vote_saved, "FaissVoteIndex", _AlwaysIVF)
    parts, labels, queries = clusters(15, n_ind=20, photos=3, k=40)
    recs = records(parts, labels)
    cat = _catalog(ivf_list_size=60, ivf_nprobe=8)
    cat.add_images(recs[:48])
    cat.warm_index()
    base = cat._snapshot().vote_index()  # noqa: SLF001
    assert isinstance(base, _AlwaysIVF)
    cat.add_images(recs[48:54])  # enrolments: a tier over the base
    scores(cat, queries[16])
    assert isinstance(cat._snapshot().vote_index(), TieredVoteIndex)  # noqa: SLF001
    cat.add_images(recs[54:])  # a snapshot made and never searched
    cat._snapshot()  # noqa: SLF001
    added = []
    tier_init = TieredVoteIndex.__init__

    def counting(self, base, base_images, delta_parts, previous=None):
        added.append(len(delta_parts) - (len(previous.delta_parts) if previous else 0))
        tier_init(self, base, base_images, delta_parts, previous)

    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    monkeypatch.setattr(TieredVoteIndex, "__init__", counting)
    assert cat.remove_individual("ind3") == 3
    got = scores(cat, queries[17])
    index = cat._snapshot().vote_index()  # noqa: SLF001
    assert isinstance(index, MaskedVoteIndex) and index.inner.base is base
    assert added == [6]  # the unsearched snapshot's six photos; the tier's six kept as they were
    assert len(index) == 57 * 40
    snapshot = cat._snapshot()  # noqa: SLF001
    q = as_float(np.concatenate([queries[3], queries[17]]).clip(0, 255).astype(np.uint8))
    idx, _ = index.search(q, 12)
    owners = index.owners(idx[idx >= 0])
    assert (owners >= 0).all() and "ind3" not in {snapshot.images[o].individual_id for o in owners}
    assert got.individual_ids[int(np.argmax(got.vote))] == "ind17"


def test_a_restart_after_a_removal_and_many_enrolments_saves_the_grown_index_once(tmp_path, monkeypatch):
    """Photos enrolled after a removal past `vote_fold_at`: the start that adds them folds them into
    a copy of the saved index (removed photos still masked) and saves it under a key of its own
    photos; the next start reads that one and adds nothing."""
    parts, labels, queries = clusters(16, n_ind=12, photos=2, k=30)
    recs = records(parts, labels)
    store = InMemoryStore()
    store.add_catalog_images(recs[:20])
    _catalog(store, vote_index_dir=str(tmp_path), vote_fold_at=100).load().warm_index()
    store.remove_individual("ind1")
    store.add_catalog_images(recs[20:])  # 4 photos x 30 descriptors >= vote_fold_at
    _no_rebuild(monkeypatch)
    _catalog(store, vote_index_dir=str(tmp_path), vote_fold_at=100).load().warm_index()
    assert len(list(tmp_path.glob("vote-p*.json"))) == 1
    monkeypatch.setattr(FaissVoteIndex, "extended", lambda *a, **k: pytest.fail("added again"))
    again = _catalog(store, vote_index_dir=str(tmp_path), vote_fold_at=100).load()
    got = scores(again, queries[11])
    index = again._snapshot().vote_index()  # noqa: SLF001
    assert isinstance(index, MaskedVoteIndex) and type(index.inner) is FaissVoteIndex
    monkeypatch.undo()
    kept = [r for r in recs if r.individual_id != "ind1"]
    np.testing.assert_allclose(got.vote, _fresh_scores(kept, queries[11]).vote, rtol=1e-5)


def test_removing_one_photo_in_memory_masks_it_and_a_missing_one_changes_nothing(monkeypatch):
    from whales_identify.errors import NotFoundError

    cat, recs, queries = _warm(17, n_ind=8, photos=3)
    _no_rebuild(monkeypatch)
    assert cat.remove_image(recs[4].image_id, "curator") == ("ind1", 2)
    got = scores(cat, queries[1])
    assert isinstance(cat._snapshot().vote_index(), MaskedVoteIndex)  # noqa: SLF001
    assert cat.get_individual("ind1").n_images == 2
    index = cat._snapshot()  # noqa: SLF001
    with pytest.raises(NotFoundError):
        cat.remove_image("nope")
    assert cat._snapshot() is index and len(cat) == 23  # noqa: SLF001
    monkeypatch.undo()
    want = _fresh_scores([r for r in recs if r is not recs[4]], queries[1])
    np.testing.assert_allclose(got.vote, want.vote, rtol=1e-5)


def test_descriptor_counts_are_counted_once_per_index_and_add_a_tiers(monkeypatch):
    """The counts a mask is planned with (`descriptor_counts`): the built index's owners counted
    once per index object (each removal reuses the same donor: at 100k photos the first count
    took ~0.5 s), an enrolment tier's added, and as long as the images asked for."""
    from whales_identify.reid.vote_masked import descriptor_counts

    parts, _, _ = clusters(61, n_ind=4, photos=2, k=20)
    base = FaissVoteIndex(parts[:6], list_size=4, codes="SQ8")
    want = np.bincount(base.owner, minlength=9)
    np.testing.assert_array_equal(descriptor_counts(base, 9), want)
    monkeypatch.setattr(np, "bincount", lambda *a, **k: pytest.fail("counted again"))
    np.testing.assert_array_equal(descriptor_counts(base, 9), want)
    monkeypatch.undo()
    tier = TieredVoteIndex(base, 6, parts[6:8])
    np.testing.assert_array_equal(descriptor_counts(tier, 8), np.bincount(tier.owner, minlength=8))
    assert len(descriptor_counts(base, 3)) == 6  # more images indexed than asked: the plan refuses
