"""`MatchIndex.without` (issue 18): a removal (a deleted individual, a removed photo, here or by
another worker) makes the next snapshot from the current one instead of copying every array: the
embedding buffer is shared with the removed photos' rows skipped, the photo keys carried over, the
vote index masked, and the answers stay a fresh load's."""

from __future__ import annotations

import numpy as np
import pytest

from tests.identify.test_catalog_refresh import _catalog, _same_as_a_fresh_load
from tests.identify.vote_fakes import clusters, records
from whales_identify.records.store import InMemoryStore
from whales_identify.reid import snapshot
from whales_identify.reid.vote_index import FaissVoteIndex
from whales_identify.reid.vote_masked import MaskedVoteIndex


def _loaded(seed: int, tmp_path=None, **cfg):
    parts, labels, queries = clusters(seed, n_ind=10, photos=3, k=30)
    store = InMemoryStore()
    store.add_catalog_images(records(parts, labels))
    cat = _catalog(store, **cfg).load()
    cat.warm_index()
    return store, cat, queries


@pytest.mark.parametrize("packed", [False, True], ids=["in_ram", "feature_pack"])
def test_a_removal_shares_the_buffer_and_masks_the_vote_index(tmp_path, monkeypatch, packed):
    cfg = dict(features_dir=str(tmp_path)) if packed else {}
    store, cat, queries = _loaded(31, **cfg)
    old = cat._snapshot()  # noqa: SLF001
    old_keys = old._photo_keys().copy()  # noqa: SLF001
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    cat.remove_individual("ind4")
    cat.remove_image("im0000")
    new = cat._snapshot()  # noqa: SLF001
    assert new._emb_buf is old._emb_buf and new._rows is not None  # noqa: SLF001
    assert "ind4" not in new.individuals and "im0000" not in new.image_ids
    assert isinstance(new.vote_index(), MaskedVoteIndex)
    kept = [i for i, iid in enumerate(old.image_ids) if iid in set(new.image_ids)]
    np.testing.assert_array_equal(new._photo_keys(), old_keys[kept])  # noqa: SLF001 (carried over)
    np.testing.assert_array_equal(new.emb, np.stack([im.embedding for im in new.images]))
    monkeypatch.undo()
    want = snapshot.MatchIndex(new.images, new.cfg, digests=new.digests)
    np.testing.assert_array_equal(new._photo_keys(), want._photo_keys())  # noqa: SLF001
    for name in ("labels", "by_label", "starts", "ends"):
        np.testing.assert_array_equal(getattr(new, name), getattr(want, name), err_msg=name)
    assert (new.individuals, new.species) == (want.individuals, want.species)
    _same_as_a_fresh_load(cat, store, {1: queries[1], 5: queries[7]}, **cfg)
    # an enrolment after it writes the buffer's next rows and maps them
    more_parts, more_labels, _ = clusters(32, n_ind=1, photos=2, k=30)
    cat.add_images(records(more_parts, more_labels + 40, start=300))
    grown = cat._snapshot()  # noqa: SLF001
    assert grown._emb_buf is old._emb_buf and grown._previous is new  # noqa: SLF001
    np.testing.assert_array_equal(grown.emb, np.stack([im.embedding for im in grown.images]))
    _same_as_a_fresh_load(cat, store, {1: queries[1], 5: queries[2]}, **cfg)


def test_a_removal_right_after_an_enrolment_and_of_an_enrolled_photo():
    store, cat, queries = _loaded(33)
    more_parts, more_labels, _ = clusters(34, n_ind=1, photos=3, k=30)
    cat.add_images(records(more_parts, more_labels + 40, start=300))  # no query since: pending
    cat.remove_image("im0301")
    cat.remove_individual("ind2")
    assert "im0301" not in cat._snapshot().image_ids and "im0300" in cat._snapshot().image_ids  # noqa: SLF001
    _same_as_a_fresh_load(cat, store, {1: queries[1], 5: queries[6]})


def test_removing_most_photos_copies_the_kept_rows(monkeypatch):
    store, cat, queries = _loaded(35)
    old = cat._snapshot()  # noqa: SLF001
    for ind in range(1, 9):
        cat.remove_individual(f"ind{ind}")
    new = cat._snapshot()  # noqa: SLF001
    assert len(new.images) < snapshot.COMPACT_SHARE * len(old.images)
    assert new._emb_buf is not old._emb_buf and new._rows is None  # noqa: SLF001
    np.testing.assert_array_equal(new.emb, np.stack([im.embedding for im in new.images]))
    _same_as_a_fresh_load(cat, store, {1: queries[0], 5: queries[9]})


def test_a_rename_and_a_removal_by_another_worker_together():
    """`refresh` with relabels and a removal: the snapshot without the photo takes the new labels."""
    store, cat, queries = _loaded(36)
    store.rename_individual("ind3", "ind3_named")
    store.remove_catalog_image("im0020")
    assert cat.refresh(["im0009", "im0010", "im0011", "im0020"])
    new = cat._snapshot()  # noqa: SLF001
    assert "ind3_named" in new.individuals and "ind3" not in new.individuals and new._rows is not None  # noqa: SLF001
    _same_as_a_fresh_load(cat, store, {1: queries[3], 5: queries[6]})


def test_a_removal_of_nothing_keeps_the_rows_unmapped():
    """A removal that removes nothing (an unknown individual; `refresh` taking new labels only)
    leaves photo i at buffer row i: no row map to gather through at every later query."""
    store, cat, queries = _loaded(37)
    old = cat._snapshot()  # noqa: SLF001
    assert cat.remove_individual("nobody") == 0
    new = cat._snapshot()  # noqa: SLF001
    assert new is not old and new._rows is None and new._emb_buf is old._emb_buf  # noqa: SLF001
    _same_as_a_fresh_load(cat, store, {1: queries[1], 5: queries[4]})
