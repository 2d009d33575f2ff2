"""The scale levers of the vote index (issue 18): product-quantised codes, enrolment without a
rebuild (tiers), and an index saved and read back instead of rebuilt."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.identify.vote_fakes import MODEL
from tests.identify.vote_fakes import clusters as _clusters
from tests.identify.vote_fakes import records as _records
from tests.identify.vote_fakes import scores as _scores
from whales_identify.records.store import InMemoryStore
from whales_identify.reid.calibrate import Calibration
from whales_identify.reid.catalog import Catalog, MatchConfig
from whales_identify.reid.vote_index import FaissVoteIndex, TieredVoteIndex, extend
from whales_identify.reid.vote_masked import MaskedVoteIndex


def _top_owner(index, labels: np.ndarray, q: np.ndarray) -> int:
    idx, _ = index.search(q, 3)
    owners = labels[index.owner[idx[idx >= 0]]]
    return int(np.bincount(owners).argmax())


@pytest.mark.parametrize("codes", ["PQ32x4fs", "PQ64x4fs", "SQ8", "PQ64x4fs,Refine(SQ8)"])
def test_quantised_ivf_finds_the_same_individual_as_exact_search(codes):
    parts, labels, queries = _clusters(0, n_ind=40, photos=3, k=60)
    exact = FaissVoteIndex(parts)  # below exact_below: brute force
    ivf = FaissVoteIndex(parts, exact_below=0, list_size=100, codes=codes, nprobe=8)
    assert ivf.index.ntotal == len(exact) == sum(len(p) for p in parts)
    for i, q in queries.items():
        assert _top_owner(exact, labels, q) == i
        assert _top_owner(ivf, labels, q) == i


def test_refined_codes_have_sq8_recall_and_keep_their_factor_saved_and_enrolled(tmp_path):
    """`PQ64x4fs,Refine(SQ8)` (the default): the fast-scan search keeps `refine_factor` x k
    neighbours and SQ8 codes re-rank them, so its neighbour recall is SQ8's, not the PQ's; the factor
    is saved with the index and the enrolment tier (the trained twin) searches the same way."""
    from whales_identify.reid.local_features import as_float

    parts, _, queries = _clusters(2, n_ind=30, photos=3, k=60)
    q = as_float(np.concatenate(list(queries.values())))  # stored descriptors are unit vectors
    want = FaissVoteIndex(parts).search(q, 6)[0]  # exact

    def recall(index) -> float:
        return float(np.mean([len(set(a) & set(b)) / 6 for a, b in zip(index.search(q, 6)[0], want,
                                                                        strict=True)]))

    def ivf(codes: str, **kw) -> FaissVoteIndex:
        return FaissVoteIndex(parts, exact_below=0, list_size=100, nprobe=8, codes=codes, **kw)

    refined, sq8, pq = ivf("PQ64x4fs,Refine(SQ8)"), ivf("SQ8"), ivf("PQ64x4fs")
    assert recall(refined) >= recall(sq8) - 0.02 and recall(refined) >= recall(pq) + 0.06
    assert recall(ivf("PQ64x4fs,Refine(SQ8)", refine_factor=1)) == recall(pq)  # nothing re-ranked
    refined.save(tmp_path / "vote.faiss")
    loaded = FaissVoteIndex.load(tmp_path / "vote.faiss")
    assert loaded is not None and loaded.index.k_factor == 8 and recall(loaded) == recall(refined)
    new_parts, _, new_queries = _clusters(3, n_ind=2, photos=2, k=60)
    tiered = extend(loaded, len(parts), new_parts)
    assert isinstance(tiered, TieredVoteIndex) and tiered.delta.k_factor == 8
    for i, nq in new_queries.items():  # the enrolled photos are found in the tier
        idx, _ = tiered.search(as_float(nq), 2)  # its two photos
        assert set(tiered.owners(idx[idx >= 0]).tolist()) <= {len(parts) + 2 * i, len(parts) + 2 * i + 1}


def test_extend_tiers_then_folds_and_answers_like_a_rebuild():
    parts, _, queries = _clusters(1, n_ind=10, photos=2, k=30)
    q = np.concatenate(list(queries.values()))
    base = FaissVoteIndex(parts[:12])
    tiered = extend(base, 12, parts[12:16], fold_at=10_000)
    assert isinstance(tiered, TieredVoteIndex)
    folded = extend(tiered, 16, parts[16:], fold_at=100)  # 4 + 4 photos x 30 > 100: folded
    assert isinstance(folded, FaissVoteIndex) and len(base) == 12 * 30  # the base is left alone
    for index, n in ((tiered, 16), (folded, 20)):
        fresh = FaissVoteIndex(parts[:n])
        idx, d2 = index.search(q, 5)
        want_idx, want_d2 = fresh.search(q, 5)
        np.testing.assert_allclose(d2, want_d2, rtol=1e-5)
        np.testing.assert_array_equal(index.owner[idx], fresh.owner[want_idx])


def test_enrolment_extends_the_snapshot_instead_of_rebuilding(monkeypatch):
    parts, labels, queries = _clusters(2, n_ind=12, photos=2, k=25)
    recs = _records(parts, labels)
    cfg = MatchConfig(global_candidates=0, vote_candidates=0)
    cat = Catalog(InMemoryStore(), MODEL, config=cfg, calibration=Calibration(model_id=MODEL))
    cat.add_images(recs[:16])
    cat.warm_index()
    built = []
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda self, *a, **k: built.append(1) or None)
    for r in recs[16:]:  # one photo at a time, each followed by a query
        cat.add_images([r])
        got = _scores(cat, queries[11])
    assert not built  # no rebuild
    assert isinstance(cat._snapshot().vote_index(), TieredVoteIndex)  # noqa: SLF001
    monkeypatch.undo()
    fresh = Catalog(InMemoryStore(), MODEL, config=cfg, calibration=Calibration(model_id=MODEL))
    fresh.add_images(recs)
    want = _scores(fresh, queries[11])
    np.testing.assert_allclose(got.vote, want.vote, rtol=1e-5)
    np.testing.assert_allclose(got.cos, want.cos, rtol=1e-6)
    assert int(np.argmax(got.vote)) == want.individual_ids.index("ind11")
    cat.remove_individual("ind0")  # a removal rebuilds
    assert cat._snapshot()._previous is None  # noqa: SLF001


def test_saved_vote_index_is_read_back_not_rebuilt(tmp_path, monkeypatch):
    parts, labels, queries = _clusters(3, n_ind=8, photos=2, k=40)
    store = InMemoryStore()
    store.add_catalog_images(_records(parts, labels))
    cfg = MatchConfig(global_candidates=0, vote_candidates=0, vote_index_dir=str(tmp_path))
    first = Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load()
    first.warm_index()
    assert len(list(tmp_path.glob("vote-*.faiss"))) == 1
    want = _scores(first, queries[3])
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    second = Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load()
    np.testing.assert_allclose(_scores(second, queries[3]).vote, want.vote, rtol=1e-6)
    # other settings or other photos: another key, so the saved one is not used for them
    monkeypatch.undo()
    other = Catalog(store, MODEL, config=MatchConfig(vote_index_dir=str(tmp_path), index_keypoints=20),
                    calibration=Calibration(model_id=MODEL)).load()
    other.warm_index()
    assert len(list(tmp_path.glob("vote-*.faiss"))) == 2


def test_restart_after_enrolments_reads_the_saved_prefix(tmp_path, monkeypatch):
    """Photos enrolled after the index was saved are added to it at the next start, not rebuilt."""
    parts, labels, queries = _clusters(4, n_ind=8, photos=2, k=40)
    recs = _records(parts, labels)
    store = InMemoryStore()
    store.add_catalog_images(recs[:12])
    cfg = MatchConfig(global_candidates=0, vote_candidates=0, vote_index_dir=str(tmp_path))
    Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load().warm_index()
    store.add_catalog_images(recs[12:])  # enrolled after the save (e.g. by another worker)
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    restarted = Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load()
    got = _scores(restarted, queries[7])
    assert isinstance(restarted._snapshot().vote_index(), TieredVoteIndex)  # noqa: SLF001
    monkeypatch.undo()
    fresh = Catalog(InMemoryStore(), MODEL, config=MatchConfig(global_candidates=0, vote_candidates=0),
                    calibration=Calibration(model_id=MODEL))
    fresh.add_images(recs)
    np.testing.assert_allclose(got.vote, _scores(fresh, queries[7]).vote, rtol=1e-5)


def test_many_photos_since_the_save_are_added_once_and_saved(tmp_path, monkeypatch):
    """Past `vote_fold_at` descriptors enrolled since the save, the start that adds them saves
    the grown index: the next start reads it (at 100k photos, adding 50k photos' codes at every
    start would take minutes), and it answers like a rebuild."""
    parts, labels, queries = _clusters(5, n_ind=8, photos=2, k=40)
    recs = _records(parts, labels)
    store = InMemoryStore()
    store.add_catalog_images(recs[:10])
    cfg = MatchConfig(global_candidates=0, vote_candidates=0, vote_index_dir=str(tmp_path), vote_fold_at=100)
    Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load().warm_index()
    store.add_catalog_images(recs[10:])  # 6 photos x 40 descriptors >= vote_fold_at
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load().warm_index()
    assert len(list(tmp_path.glob("vote-*.json"))) == 2
    monkeypatch.setattr(FaissVoteIndex, "extended", lambda *a, **k: pytest.fail("added again"))
    again = Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load()
    assert type(again._snapshot().vote_index()) is FaissVoteIndex  # noqa: SLF001
    monkeypatch.undo()
    fresh = Catalog(InMemoryStore(), MODEL, config=MatchConfig(global_candidates=0, vote_candidates=0),
                    calibration=Calibration(model_id=MODEL))
    fresh.add_images(recs)
    np.testing.assert_allclose(_scores(again, queries[7]).vote, _scores(fresh, queries[7]).vote, rtol=1e-5)


def test_a_saved_index_of_under_half_the_photos_is_not_extended(tmp_path):
    from whales_identify.reid.vote_saved import saved_or_built

    parts, _, _ = _clusters(5, n_ind=10, photos=2, k=20)
    ids = [f"im{i}" for i in range(len(parts))]
    settings = dict(nprobe=4, list_size=50, codes="SQ8", max_lists=0)
    saved_or_built(ids[:6], parts[:6], str(tmp_path), settings)
    assert isinstance(saved_or_built(ids, parts, str(tmp_path), settings), FaissVoteIndex)  # built
    assert len(list(tmp_path.glob("vote-*.json"))) == 2
    # the last 2 of the 20 photos removed: the 20-photo index, masked (vote_masked)
    assert isinstance(saved_or_built(ids[:18], parts[:18], str(tmp_path), settings), MaskedVoteIndex)
    assert len(list(tmp_path.glob("vote-*.json"))) == 2
    # 7 of 20 removed (over MASK_SHARE) and 6 of 13 photos saved (under half): rebuilt
    assert isinstance(saved_or_built(ids[:13], parts[:13], str(tmp_path), settings), FaissVoteIndex)
    assert len(list(tmp_path.glob("vote-*.json"))) == 3


def test_saved_indexes_are_pruned_and_a_failed_save_costs_only_the_cache(tmp_path, monkeypatch):
    import time

    from whales_identify.reid import vote_saved
    from whales_identify.reid.vote_saved import saved_or_built

    parts, _, _ = _clusters(6, n_ind=10, photos=2, k=20)
    ids = [f"im{i}" for i in range(len(parts))]
    settings = dict(nprobe=4, list_size=50, codes="SQ8", max_lists=0)
    # every catalog that no saved index covers gives a new key (here: other photo ids, so that none
    # is masked): five of them leave the newest one plus SAVED_INDEXES_KEPT
    for drop in range(5):
        saved_or_built([f"{i}-{drop}" for i in ids], parts, str(tmp_path), settings)
        time.sleep(0.01)  # distinct modification times: pruning keeps the newest
    assert len(list(tmp_path.glob("vote-*.json"))) == 1 + vote_saved.SAVED_INDEXES_KEPT
    assert len(list(tmp_path.glob("vote-*.faiss"))) == 1 + vote_saved.SAVED_INDEXES_KEPT
    assert not list(tmp_path.glob("*.partial"))

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FaissVoteIndex, "save", full_disk)
    built = saved_or_built(ids, parts, str(tmp_path / "new"), settings)
    assert isinstance(built, FaissVoteIndex) and len(built) == sum(len(p) for p in parts)


def test_two_workers_saving_the_same_index_at_once_both_succeed(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from whales_identify.reid.vote_saved import saved_or_built

    parts, _, _ = _clusters(7, n_ind=10, photos=2, k=20)
    ids = [f"im{i}" for i in range(len(parts))]
    settings = dict(nprobe=4, list_size=50, codes="SQ8", max_lists=0)
    index = FaissVoteIndex(parts, **settings)
    with ThreadPoolExecutor(4) as pool:  # one temporary name per writer: no rename finds its file gone
        list(pool.map(lambda _: index.save(tmp_path / "vote-k.faiss"), range(8)))
    assert FaissVoteIndex.load(tmp_path / "vote-k.faiss") is not None
    assert not list(tmp_path.glob("*.partial"))
    assert isinstance(saved_or_built(ids, parts, str(tmp_path / "d"), settings), FaissVoteIndex)


def _same_snapshot(got, want) -> None:
    assert got.image_ids == want.image_ids
    assert got.individuals == want.individuals and got.species == want.species
    for name in ("labels", "by_label", "starts", "ends", "emb"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for a, b in zip(got.local, want.local, strict=True):
        np.testing.assert_array_equal(a.descriptors, b.descriptors)


@pytest.mark.parametrize("mapped", [False, True])
def test_appended_snapshots_equal_a_rebuild(tmp_path, mapped):
    """Enrolment makes the next snapshot at the cost of the new photos (`MatchIndex.appended`):
    new individuals sorting before, between and after the others, photos of known ones, several
    in one call, enrolments with no query between, a fold of the delta tier; with the
    verification features in RAM and mapped from files."""
    from whales_identify.reid.snapshot import MatchIndex

    parts, labels, queries = _clusters(8, n_ind=14, photos=2, k=25)
    recs = _records(parts, labels)
    names = {0: "m", 11: "a", 12: "n", 13: "z"}  # ind11 sorts first, ind13 last, ind12 between
    recs = [replace(r, individual_id=names.get(int(r.individual_id[3:]), "") + r.individual_id,
                    species=f"s{r.individual_id}") for r in recs]
    store = InMemoryStore()
    store.add_catalog_images(recs[:16])
    cfg = MatchConfig(global_candidates=0, vote_candidates=0, vote_fold_at=140,
                      features_dir=str(tmp_path) if mapped else "")
    cat = Catalog(store, MODEL, config=cfg, calibration=Calibration(model_id=MODEL)).load()
    cat.warm_index()
    batches = [[recs[22]], [recs[16], recs[17]], [recs[26]], [recs[18]], [recs[24], recs[27]],
               [recs[19]], [recs[25]], [recs[20], recs[21], recs[23]]]
    folded = False
    for j, batch in enumerate(batches):
        cat.add_images(batch)
        if j == 3:
            continue  # no query before the next enrolment
        got = cat._snapshot()  # noqa: SLF001
        assert got._previous is not None  # noqa: SLF001 - appended, not rebuilt
        _same_snapshot(got, MatchIndex(list(cat._images.values()), cfg))  # noqa: SLF001
        scores = _scores(cat, queries[11])
        folded |= isinstance(got.vote_index(), FaissVoteIndex)
        fresh = Catalog(InMemoryStore(), MODEL, config=replace(cfg, features_dir=""),
                        calibration=Calibration(model_id=MODEL))
        fresh.add_images(cat._images.values())  # noqa: SLF001 - the same photos, in the same order
        want = _scores(fresh, queries[11])
        assert scores.individual_ids == want.individual_ids and scores.species == want.species
        np.testing.assert_allclose(scores.vote, want.vote, rtol=1e-5)
        np.testing.assert_allclose(scores.cos, want.cos, rtol=1e-6)
    assert folded  # the delta tier was folded into a copy of the base on the way
    assert isinstance(cat._snapshot().vote_index(), TieredVoteIndex | FaissVoteIndex)  # noqa: SLF001


@pytest.mark.parametrize("saved", [False, True], ids=["built", "read_back"])
def test_enrolling_into_an_ivf_index_never_copies_it(tmp_path, monkeypatch, saved):
    """Over an IVF base the delta tier is an IVF with the base's quantiser and codebooks, filled
    from its empty twin (read from the saved file without the lists): no enrolment copies the base
    (at 100k photos that copy is ~1 GB of peak memory), and the tiers answer as the base with the
    new descriptors added would."""
    import faiss

    parts, _, queries = _clusters(3, n_ind=12, photos=2, k=40)
    q = np.concatenate(list(queries.values()))
    base = FaissVoteIndex(parts[:20], exact_below=0, list_size=40, codes="PQ32x4fs", nprobe=4)
    if saved:
        base.save(tmp_path / "vote.faiss")
        base = FaissVoteIndex.load(tmp_path / "vote.faiss")
    want = base.extended(parts[20:], 20)  # the fold: a copy of the base plus the new codes
    want.save(tmp_path / "grown.faiss")  # the twin is saved with it (the next start enrols too)
    assert (tmp_path / "grown.faiss.empty").is_file()
    copied = []
    real_clone = faiss.clone_index
    monkeypatch.setattr(faiss, "clone_index", lambda ix: copied.append(ix.ntotal) or real_clone(ix))
    tiered = extend(base, 20, parts[20:22], fold_at=10)  # past fold_at: an IVF delta is not folded
    tiered = extend(tiered, 22, parts[22:], fold_at=10)
    assert isinstance(tiered, TieredVoteIndex) and faiss.try_extract_index_ivf(tiered.delta) is not None
    assert len(tiered) == len(want) and max(copied) < len(base)  # only the small delta was copied
    idx, d2 = tiered.search(q, 5)
    want_idx, want_d2 = want.search(q, 5)
    np.testing.assert_allclose(d2, want_d2, rtol=1e-4)
    np.testing.assert_array_equal(tiered.owners(idx), want.owner[want_idx])
    # past FOLD_SHARE of the base it is folded after all (searching many tiers would cost more)
    monkeypatch.setattr("whales_identify.reid.vote_index.FOLD_SHARE", 0.1)
    assert isinstance(extend(base, 20, parts[20:], fold_at=10), FaissVoteIndex)


def test_an_index_saved_without_its_empty_twin_still_takes_enrolments(tmp_path):
    """(An index saved before the twin was saved beside it: the twin is the base copied and
    emptied, once.)"""
    parts, _, queries = _clusters(4, n_ind=10, photos=2, k=40)
    q = np.concatenate(list(queries.values()))
    base = FaissVoteIndex(parts[:16], exact_below=0, list_size=40, codes="PQ32x4fs", nprobe=4)
    base.save(tmp_path / "vote.faiss")
    (tmp_path / "vote.faiss.empty").unlink()
    loaded = FaissVoteIndex.load(tmp_path / "vote.faiss")
    tiered = extend(loaded, 16, parts[16:18], fold_at=10)
    assert isinstance(tiered, TieredVoteIndex) and tiered.delta.ntotal == 2 * 40
    want = base.extended(parts[16:18], 16)
    np.testing.assert_allclose(tiered.search(q, 5)[1], want.search(q, 5)[1], rtol=1e-4)
    assert (tmp_path / "vote.faiss.empty").is_file()  # written then: the next start reads it
