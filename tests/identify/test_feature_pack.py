"""Verification features off the heap (issue 18, `MatchConfig.features_dir`): the catalog's
descriptors and keypoints packed into files mapped read-only answer exactly as the arrays in RAM,
through enrolments, removals and reloads, and the pack is shared and rewritten only when needed."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from whales_identify.records.store import CatalogImage, InMemoryStore
from whales_identify.reid import feature_pack
from whales_identify.reid.calibrate import Calibration
from whales_identify.reid.catalog import Catalog, MatchConfig
from whales_identify.reid.local_features import LocalFeatures

MODEL = "synthetic.scale"


def _individuals(seed: int, n_ind: int, k: int = 40):
    """Per individual, `k` keypoints with descriptors; its photos see them shifted and with noise,
    so that verification finds inliers for the right individual only."""
    rng = np.random.default_rng(seed)
    return [(rng.uniform(0, 200, (k, 2)), rng.uniform(20, 235, (k, 128))) for _ in range(n_ind)]


def _look(rng, centres, n: int | None = None) -> LocalFeatures:
    kp, desc = centres
    keep = np.sort(rng.choice(len(kp), n or len(kp), replace=False))
    shift = rng.uniform(-20, 20, 2)
    return LocalFeatures((kp[keep] + shift + rng.normal(0, 0.3, (len(keep), 2))).astype(np.float32),
                         np.clip(desc[keep] + rng.normal(0, 6, (len(keep), 128)), 0, 255).astype(np.uint8))


def _records(individuals, photos: int, seed: int, prefix: str = "im") -> list[CatalogImage]:
    rng = np.random.default_rng(seed)
    out = []
    for i, centres in enumerate(individuals):
        for p in range(photos):
            lf = _look(rng, centres, n=int(rng.integers(25, 41)))
            e = rng.normal(size=8).astype(np.float32)
            out.append(CatalogImage(image_id=f"{prefix}{i:03d}_{p}", individual_id=f"ind{i}", species="s",
                                    model_id=MODEL, embedding=e / np.linalg.norm(e),
                                    keypoints=lf.keypoints, descriptors=lf.descriptors))
    return out


def _catalog(store, tmp_path=None, **cfg) -> Catalog:
    config = MatchConfig(global_candidates=3, vote_candidates=3,
                         features_dir=str(tmp_path) if tmp_path else "", **cfg)
    return Catalog(store, MODEL, config=config, calibration=Calibration(model_id=MODEL)).load()


def _assert_same_answers(mapped: Catalog, ram: Catalog, queries) -> None:
    for q in queries:
        emb = np.ones(8, np.float32) / np.sqrt(8)
        got, want = mapped.score(emb, q), ram.score(emb, q)
        assert got.individual_ids == want.individual_ids and got.image_ids == want.image_ids
        # cosines to within a float32 rounding: after a removal the matrix product runs over the
        # shared buffer's rows, removed ones included (`MatchIndex.similarities`), and BLAS may round
        # a row's dot product differently in a matrix of another height
        np.testing.assert_allclose(got.cos, want.cos, rtol=0, atol=1e-6, err_msg="cos")
        for name in ("vote", "inliers", "ref_image"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert got.inliers.max() >= 8  # verification ran and found the individual


def _mapped(catalog: Catalog) -> list[str]:
    """The photos whose descriptors are views into a read-only mapping."""
    return [iid for iid, im in catalog._images.items()  # noqa: SLF001
            if im.descriptors is not None and not im.descriptors.flags.writeable
            and not im.descriptors.flags.owndata]


def test_mapped_features_answer_exactly_like_ram_through_enrolment_and_removal(tmp_path):
    individuals = _individuals(0, n_ind=12)
    rng = np.random.default_rng(99)
    queries = [_look(rng, individuals[i]) for i in (0, 5, 11)]
    store = InMemoryStore()
    store.add_catalog_images(_records(individuals[:10], photos=2, seed=1))
    ram, mapped = _catalog(store), _catalog(store, tmp_path)
    assert len(_mapped(mapped)) == 20 and not _mapped(ram)
    assert len(list(tmp_path.glob("feat-*.desc"))) == 1 and not list(tmp_path.glob("*.partial"))
    _assert_same_answers(mapped, ram, queries[:2])

    new = _records(individuals[10:], photos=2, seed=2, prefix="new")
    for cat in (ram, mapped):  # enrolled photos stay in RAM until the next load
        cat.add_images(new[:2])
        cat.add_images(new[2:])
    assert len(_mapped(mapped)) == 20
    _assert_same_answers(mapped, ram, queries)
    for cat in (ram, mapped):
        cat.remove_individual("ind3")
    _assert_same_answers(mapped, ram, queries)

    # a reload (a restart, or another worker's change) reads the saved pack: the 4 new photos are
    # few, so they stay in RAM and nothing is written
    reloaded = _catalog(store, tmp_path)
    assert len(_mapped(reloaded)) == 18 and len(list(tmp_path.glob("feat-*.json"))) == 1
    _assert_same_answers(reloaded, _catalog(store), queries)
    reloaded.warm_index()  # drops the pages the vote index build read; they are read again
    _assert_same_answers(reloaded, ram, queries)


def test_a_new_pack_is_written_when_many_photos_are_missing_and_old_ones_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_pack, "UNPACKED_MIN", 3)
    individuals = _individuals(1, n_ind=8)
    recs = _records(individuals, photos=2, seed=3)
    store = InMemoryStore()
    store.add_catalog_images(recs[:6])
    first = _catalog(store, tmp_path)
    store.add_catalog_images(recs[6:8])  # 2 new photos: kept in RAM, the pack is reused
    assert len(_mapped(_catalog(store, tmp_path))) == 6 and len(list(tmp_path.glob("feat-*.json"))) == 1
    store.add_catalog_images(recs[8:])  # 10 new photos: a new pack with all 16; the old one holds
    second = _catalog(store, tmp_path)  # under half of them (`is_mine`): kept until pruned
    assert len(_mapped(second)) == 16 and len(list(tmp_path.glob("feat-*.json"))) == 2
    for im in recs:
        got = second._images[im.image_id]  # noqa: SLF001
        np.testing.assert_array_equal(got.descriptors, im.descriptors)
        np.testing.assert_array_equal(got.keypoints, im.keypoints)
    for drop in range(4):  # every change gives a new key; the pack each one replaces is deleted
        monkeypatch.setattr(feature_pack, "UNPACKED_MIN", -1)
        store.remove_individual(f"ind{drop}")
        store.add_catalog_images([replace(recs[-1], image_id=f"extra{drop}")])
        _catalog(store, tmp_path)
    # the newest, and the first (6 photos: not this catalog's by `is_mine`); those in between were
    # each deleted by the pack that replaced it
    assert len(list(tmp_path.glob("feat-*.json"))) == 2 and len(list(tmp_path.glob("feat-*.desc"))) == 2
    for other in range(3):  # packs it did not come from (another catalog's): the newest two others stay
        (tmp_path / f"feat-other{other}.json").write_text(json.dumps(
            {"key": f"other{other}", "images": 1, "rows": 0, "settings": "elsewhere"}))
    monkeypatch.setattr(feature_pack, "UNPACKED_MIN", 64)
    packs = set(tmp_path.glob("feat-*.desc"))
    for ind in range(4, 7):  # 7 of the pack's 12 photos removed: a smaller pack, nothing enrolled
        store.remove_individual(f"ind{ind}")
    store.remove_catalog_image("extra0")
    shrunk = _catalog(store, tmp_path)
    new = set(tmp_path.glob("feat-*.desc")) - packs
    assert len(new) == 1 and new.pop().stat().st_size == sum(
        len(im.descriptors) * 128 for im in shrunk._images.values())  # noqa: SLF001
    assert len(list(tmp_path.glob("feat-*.json"))) == 3  # it and the newest two others
    # the first catalog's pack was deleted: its mapping still reads (POSIX)
    np.testing.assert_array_equal(first._images[recs[0].image_id].descriptors, recs[0].descriptors)  # noqa: SLF001


def test_an_unusable_features_folder_falls_back_to_ram(tmp_path, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    store = InMemoryStore()
    store.add_catalog_images(_records(_individuals(2, n_ind=3), photos=2, seed=4))
    with caplog.at_level(logging.WARNING):
        cat = _catalog(store, blocker)
    assert len(cat) == 6 and not _mapped(cat) and "held in RAM" in caplog.text


def test_load_streams_the_store_and_still_refuses_another_model(tmp_path, monkeypatch):
    store = InMemoryStore()
    recs = _records(_individuals(3, n_ind=3), photos=2, seed=5)
    store.add_catalog_images(recs)
    monkeypatch.setattr(InMemoryStore, "list_catalog_images",
                        lambda *a, **k: pytest.fail("the load must stream"), raising=True)
    monkeypatch.setattr(InMemoryStore, "iter_catalog_images", lambda self, *a, **k: iter(recs))
    assert len(_catalog(store, tmp_path)) == 6
    other = [*recs, replace(recs[0], image_id="x", model_id="other.model")]
    monkeypatch.setattr(InMemoryStore, "iter_catalog_images", lambda self, *a, **k: iter(other))
    from whales_identify.errors import CatalogModelMismatchError

    with pytest.raises(CatalogModelMismatchError, match="1 image"):
        _catalog(store, tmp_path / "refused")
    assert not list((tmp_path / "refused").glob("*"))  # nothing left behind


def test_a_restart_reads_the_saved_vote_index_keyed_by_the_pack_digests(tmp_path, monkeypatch):
    """With mapped features the saved vote index is keyed by the photos' digests (reading each
    photo's first and last rows would make the whole mapping resident), and still found again."""
    from whales_identify.reid.vote_index import FaissVoteIndex

    individuals = _individuals(4, n_ind=6)
    rng = np.random.default_rng(7)
    queries = [_look(rng, individuals[i]) for i in (1, 4)]
    store = InMemoryStore()
    store.add_catalog_images(_records(individuals, photos=2, seed=6))
    dirs = dict(vote_index_dir=str(tmp_path / "vote"))
    _catalog(store, tmp_path / "feat", **dirs).warm_index()
    ram = _catalog(store)
    ram.warm_index()
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    restarted = _catalog(store, tmp_path / "feat", **dirs)
    restarted.warm_index()
    _assert_same_answers(restarted, ram, queries)
    monkeypatch.undo()
    # a photo replaced under the same id (its pack digest is stale): a new key, not the saved index
    first = restarted._images["im001_0"]  # noqa: SLF001
    changed = _look(rng, individuals[4], n=len(first.descriptors))  # same count: only the rows differ
    swapped = replace(first, keypoints=changed.keypoints, descriptors=changed.descriptors)
    for cat in (restarted, ram):
        cat.add_images([swapped])
    _assert_same_answers(restarted, ram, queries)


def test_workers_packing_the_same_catalog_at_once_all_load_it(tmp_path):
    """Each writer has its own temporary names; the renames leave one complete pack, and every
    worker answers as the RAM catalog does (the vote index built in chunks, pages released)."""
    from concurrent.futures import ThreadPoolExecutor

    individuals = _individuals(5, n_ind=8)
    rng = np.random.default_rng(8)
    queries = [_look(rng, individuals[i]) for i in (2, 6)]
    store = InMemoryStore()
    store.add_catalog_images(_records(individuals, photos=2, seed=9))
    with ThreadPoolExecutor(4) as pool:
        workers = list(pool.map(lambda _: _catalog(store, tmp_path), range(4)))
    assert not list(tmp_path.glob("*.partial")) and len(list(tmp_path.glob("feat-*.json"))) == 1
    ram = _catalog(store)
    for cat in workers:
        assert len(_mapped(cat)) == 16
        cat.warm_index()
        _assert_same_answers(cat, ram, queries)


def _sqlite(tmp_path):
    from integrations.sqlite import SQLiteStore

    return SQLiteStore(tmp_path / "catalog.db")


@pytest.mark.parametrize("make_store", [lambda _: InMemoryStore(), _sqlite], ids=["memory", "sqlite"])
def test_a_restart_reads_no_descriptors_from_the_store_and_never_serves_a_stale_pack(
        tmp_path, monkeypatch, make_store):
    """With a saved pack, a load reads the records without descriptors (`iter_catalog_heads`) and
    finds each photo's features in the pack by its head; a photo whose features changed in the
    store since the pack was written (same id, same count) is read whole, never served from it."""
    individuals = _individuals(6, n_ind=8)
    rng = np.random.default_rng(10)
    queries = [_look(rng, individuals[i]) for i in (0, 3, 7)]
    store = make_store(tmp_path)
    recs = _records(individuals, photos=2, seed=11)
    store.add_catalog_images(recs)
    _catalog(store, tmp_path / "feat")  # writes the pack
    read_whole: list[str] = []
    real_get = store.get_catalog_image
    monkeypatch.setattr(store, "iter_catalog_images", lambda *a, **k: pytest.fail("read whole"))
    monkeypatch.setattr(store, "get_catalog_image", lambda iid: read_whole.append(iid) or real_get(iid))
    warm = _catalog(store, tmp_path / "feat")
    assert len(_mapped(warm)) == 16 and not read_whole
    _assert_same_answers(warm, _catalog(InMemoryStoreOf(recs)), queries)

    # changed under the same ids, with as many rows: the first descriptor only; the last only; a
    # keypoint only; everything (another look). Each must be read from the store again.
    def changed(im, how):
        kp, desc = im.keypoints.copy(), im.descriptors.copy()
        if how == "first":
            desc[0] = 255 - desc[0]
        elif how == "last":
            desc[-1] = 255 - desc[-1]
        elif how == "keypoint":
            kp[len(kp) // 2] += 1.0
        else:
            new = _look(rng, individuals[(int(im.individual_id[3:]) + 1) % 8], n=len(desc))
            kp, desc = new.keypoints, new.descriptors
        return replace(im, keypoints=kp, descriptors=desc)

    swaps = {recs[i].image_id: changed(recs[i], how)
             for i, how in zip((0, 5, 9, 14), ("first", "last", "keypoint", "all"), strict=True)}
    store.add_catalog_images(list(swaps.values()))
    now = [swaps.get(im.image_id, im) for im in recs]
    reloaded = _catalog(store, tmp_path / "feat")
    assert sorted(read_whole) == sorted(swaps)
    for im in now:
        got = reloaded._images[im.image_id]  # noqa: SLF001
        np.testing.assert_array_equal(got.descriptors, im.descriptors)
        np.testing.assert_array_equal(got.keypoints, im.keypoints)
    assert len(_mapped(reloaded)) == 12  # the 4 changed ones in RAM until a new pack
    _assert_same_answers(reloaded, _catalog(InMemoryStoreOf(now)), queries)


def InMemoryStoreOf(records) -> InMemoryStore:  # noqa: N802 - reads like the class
    store = InMemoryStore()
    store.add_catalog_images(records)
    return store


def test_too_many_missing_photos_read_the_store_whole_and_write_a_new_pack(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_pack, "UNPACKED_MIN", 2)
    individuals = _individuals(7, n_ind=6)
    recs = _records(individuals, photos=2, seed=12)
    store = InMemoryStoreOf(recs[:4])
    _catalog(store, tmp_path)
    store.add_catalog_images(recs[4:])  # 8 new photos, over the 2 the pack keeps in RAM
    streamed = []
    real = InMemoryStore.iter_catalog_images
    monkeypatch.setattr(InMemoryStore, "iter_catalog_images",
                        lambda self, *a, **k: streamed.append(1) or real(self, *a, **k))
    cat = _catalog(store, tmp_path)
    # a new pack of all 12; the one of 4 holds under half of them (`is_mine`): kept until pruned
    assert streamed and len(_mapped(cat)) == 12 and len(list(tmp_path.glob("feat-*.json"))) == 2
    for im in recs:
        np.testing.assert_array_equal(cat._images[im.image_id].descriptors, im.descriptors)  # noqa: SLF001


@pytest.mark.parametrize("packed", [False, True], ids=["ram", "packed"])
def test_the_loaded_embeddings_are_held_once_through_enrolment_and_removal(tmp_path, packed):
    """A load puts the embeddings in one matrix that the first snapshot adopts (each record's
    embedding a row of it), instead of one array per record plus the snapshot's copy; enrolments
    fill its spare rows, a removal rebuilds with a copy, and the answers stay a fresh load's."""
    individuals = _individuals(8, n_ind=8)
    rng = np.random.default_rng(13)
    queries = [_look(rng, individuals[i]) for i in (1, 6)]
    recs = _records(individuals, photos=2, seed=14)
    store = InMemoryStoreOf(recs[:12])
    cat = _catalog(store, tmp_path if packed else None)
    ix = cat._snapshot()  # noqa: SLF001
    assert all(np.shares_memory(cat._images[i].embedding, ix.emb) for i in ix.image_ids)  # noqa: SLF001
    np.testing.assert_array_equal(ix.emb, np.stack([im.embedding for im in store.list_catalog_images()]))
    for im in recs[12:]:  # enrolled one at a time: the matrix's spare rows
        cat.add_images([im])
        cat._snapshot()  # noqa: SLF001
    _assert_same_answers(cat, _catalog(InMemoryStoreOf(recs)), queries)
    cat.remove_individual("ind0")
    _assert_same_answers(cat, _catalog(InMemoryStoreOf(recs[2:])), queries)
    for im in recs[2:]:
        np.testing.assert_array_equal(cat._images[im.image_id].embedding, im.embedding)  # noqa: SLF001


@pytest.mark.parametrize("rows", [0, 1, 7, 12])
def test_a_head_gives_the_digest_of_the_kept_features(rows):
    """`head_digest` (from what the store reads instead of the descriptors) equals `digest` of the
    arrays a load keeps (the first `keep` rows), with fewer rows than kept, as many, or more."""
    from whales_identify.records.store import FeatureHead

    rng = np.random.default_rng(rows)
    kp = rng.uniform(0, 100, (rows, 2)).astype(np.float32)
    desc = rng.integers(0, 255, (rows, 128), dtype=np.uint8)
    keep = 7
    head = FeatureHead.of(kp, desc, keep)
    if rows == 0:
        assert feature_pack.head_digest("a", head, keep) is None  # nothing to find: read whole
        return
    assert feature_pack.head_digest("a", head, keep) == feature_pack.digest("a", kp[:keep], desc[:keep])
    assert feature_pack.head_digest("b", head, keep) != feature_pack.digest("a", kp[:keep], desc[:keep])
    assert feature_pack.head_digest("a", FeatureHead.of(kp, desc.astype(np.float32), keep), keep) is None


@pytest.mark.parametrize("first", ["big", "small"])
def test_two_catalogs_sharing_a_folder_each_start_from_their_own_pack(tmp_path, monkeypatch, first):
    """A big catalog and a small one holding a subset of its photos (the scale benchmark's 100k and
    2k; another service) saving packs in one folder, whichever saved first: each load finds its
    own pack among the saved ones, whichever is newest, instead of taking the newest (the other's)
    and writing a whole new pack (6 GB and ~20 s of start-up at 100k photos); and one catalog
    rewriting its pack again and again (enrolments) deletes its own old packs, never the other's."""
    import os

    monkeypatch.setattr(feature_pack, "UNPACKED_MIN", 2)
    individuals = _individuals(8, n_ind=8)
    recs = _records(individuals, photos=2, seed=13)
    big, small = InMemoryStoreOf(recs), InMemoryStoreOf(recs[:4])
    for store in ((big, small) if first == "big" else (small, big)):
        _catalog(store, tmp_path)
    metas = sorted(tmp_path.glob("feat-*.json"))
    packs = {json.loads(m.read_text())["images"]: m.name for m in metas}
    assert sorted(packs) == [4, 16]  # neither deleted the other's
    written = []
    real_start = feature_pack.FeaturePacker._start_writing
    monkeypatch.setattr(feature_pack.FeaturePacker, "_start_writing",
                        lambda self: written.append(1) or real_start(self))
    real_iter = InMemoryStore.iter_catalog_images
    monkeypatch.setattr(InMemoryStore, "iter_catalog_images", lambda *a, **k: pytest.fail("read whole"))
    for newest in metas * 2:  # each pack the newest in turn
        os.utime(newest, (newest.stat().st_mtime + 10,) * 2)
        for store, n in ((big, 16), (small, 4)):
            cat = _catalog(store, tmp_path)
            assert len(_mapped(cat)) == n
            for im in recs[:n]:
                np.testing.assert_array_equal(cat._images[im.image_id].descriptors, im.descriptors)  # noqa: SLF001
    assert not written and len(list(tmp_path.glob("feat-*.json"))) == 2
    monkeypatch.setattr(InMemoryStore, "iter_catalog_images", real_iter)
    for k in range(4):  # the big catalog grows past what a pack keeps in RAM, four times
        big.add_catalog_images([replace(r, image_id=f"more{k}_{i}") for i, r in enumerate(recs[:6])])
        assert len(_mapped(_catalog(big, tmp_path))) == 16 + 6 * (k + 1)
    assert len(written) == 4 and len(list(tmp_path.glob("feat-*.json"))) == 2  # its old ones deleted
    assert (tmp_path / packs[4]).is_file()  # the small catalog's pack is still there
    written.clear()
    assert len(_mapped(_catalog(small, tmp_path))) == 4 and not written


def test_prefetch_asks_the_kernel_for_the_pages_of_mapped_features_only(tmp_path):
    """`prefetch` (before a query's verification) hints every photo's mapped features at once:
    page-aligned ranges covering each array, in the pack's own mapping; arrays in RAM are left
    alone. (Served at 100k photos from a cold page cache: match stage 0.34-0.36 s -> 0.18-0.20 s.)"""
    import mmap

    recs = _records(_individuals(9, n_ind=4), photos=2, seed=15)
    cat = _catalog(InMemoryStoreOf(recs), tmp_path)
    ims = [cat._images[im.image_id] for im in recs]  # noqa: SLF001
    owner = ims[0].descriptors.base
    while not isinstance(owner, np.memmap):
        owner = owner.base
    asked: list[tuple[int, int, int]] = []

    class Recorder:
        def madvise(self, option, start, length):
            asked.append((option, start, length))

    real, owner._mmap = owner._mmap, Recorder()
    try:
        arrays = [im.descriptors for im in ims[2:5]]
        feature_pack.prefetch([*arrays, np.zeros((3, 128), np.uint8)])  # the last one in RAM
    finally:
        owner._mmap = real
    assert len(asked) == 3 and all(opt == mmap.MADV_WILLNEED for opt, _, _ in asked)
    base = owner.__array_interface__["data"][0]
    for a, (_, start, length) in zip(arrays, asked, strict=True):
        at = a.__array_interface__["data"][0] - base
        assert start % mmap.PAGESIZE == 0 and start <= at and start + length == at + a.nbytes
    feature_pack.prefetch([im.descriptors for im in ims])  # the real call: a hint, nothing raised
