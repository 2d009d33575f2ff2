"""Catalog: enrol / identify / remove round trip, model-mismatch refusal, open-set decisions."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from whales_identify.errors import CatalogModelMismatchError
from whales_identify.records.store import CatalogImage, InMemoryStore, Sighting
from whales_identify.reid.calibrate import Calibration, FusionWeights, ProbabilityMap
from whales_identify.reid.catalog import Catalog, MatchConfig

MODEL = "efficientnet_lite0.imagenet"


def _texture(seed: int, size: int = 160) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def _unit(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _cal(threshold: float = -np.inf) -> Calibration:
    return Calibration(model_id=MODEL, weights=FusionWeights(1.0, 0.0, 0.5),
                       new_individual_threshold=threshold,
                       probability=ProbabilityMap("isotonic", (0.0, 2.0), (0.0, 1.0)), fitted=True)


def _catalog(threshold: float = -np.inf, **cfg) -> Catalog:
    cat = Catalog(InMemoryStore(), MODEL, config=MatchConfig(**cfg), calibration=_cal(threshold))
    for k, name in enumerate(["whale_a", "whale_b", "whale_c"]):
        ims = [_texture(10 * k + j).rotate(5 * j) for j in range(2)]
        embs = np.stack([_unit(k) + 0.05 * _unit(100 + j) for j in range(2)])
        embs /= np.linalg.norm(embs, axis=1, keepdims=True)
        cat.enroll(ims, embs, name, "humpback_whale" if k < 2 else "blue_whale",
                   sightings=[Sighting(location="fjord")] * 2, filenames=["x.jpg", "y.jpg"])
    return cat


def test_empty_catalog_answers_new_and_unknown():
    cat = Catalog(InMemoryStore(), MODEL, calibration=_cal())
    res = cat.load().identify(_texture(0), _unit(0), top_k=5)
    assert res.candidates == [] and res.is_new_individual and res.species == "unknown"
    assert res.individual_id is None and res.probability == 0.0


def test_enroll_identify_remove_round_trip():
    cat = _catalog()
    assert len(cat) == 6
    res = cat.identify(_texture(10).rotate(3), _unit(1), top_k=5)  # whale_b's pattern and embedding
    assert res.candidates[0].individual_id == "whale_b"
    assert res.individual_id == "whale_b" and not res.is_new_individual
    assert res.species == "humpback_whale"
    assert [c.score for c in res.candidates] == sorted((c.score for c in res.candidates), reverse=True)
    assert len({c.individual_id for c in res.candidates}) == len(res.candidates) == 3
    ref = cat.store.get_catalog_image(res.candidates[0].reference_image_id)
    assert ref is not None and ref.individual_id == "whale_b" and ref.thumbnail[:2] == b"\xff\xd8"
    assert ref.descriptors is not None and ref.descriptors.dtype == np.uint8
    assert cat.remove_individual("whale_b") == 2
    assert cat.get_individual("whale_b") is None
    res = cat.identify(_texture(10), _unit(1), top_k=5)
    assert "whale_b" not in {c.individual_id for c in res.candidates}


def test_local_features_rescue_a_weak_global_score():
    cat = _catalog()
    # an embedding that points at whale_c, but the photo is whale_a's: geometry must win
    res = cat.identify(_texture(0).rotate(8), _unit(2) * 0.3 + _unit(0) * 0.1, top_k=3)
    assert res.candidates[0].individual_id == "whale_a"


def test_global_only_ranks_by_best_cosine_per_individual():
    cat = _catalog(use_local=False)
    scores = cat.score(_unit(2), None)
    best = {ind: c for ind, c in zip(scores.individual_ids, scores.cos, strict=True)}
    assert max(best, key=best.get) == "whale_c"
    assert scores.inliers.sum() == 0 and scores.vote.sum() == 0


def test_exclude_removes_images_from_the_gallery():
    cat = _catalog(use_local=False)
    ids = cat.get_individual("whale_c").image_ids
    scores = cat.score(_unit(2), None, exclude=ids)
    assert not np.isfinite(scores.cos[scores.individual_ids.index("whale_c")])


def test_open_set_threshold_decides_new_individual():
    cat = _catalog(threshold=10.0)  # no fused score reaches 10
    res = cat.identify(_texture(0), _unit(0), top_k=2)
    assert res.is_new_individual and res.individual_id is None and len(res.candidates) == 2


def test_probability_is_calibrated_map_of_score():
    cat = _catalog()
    res = cat.identify(_texture(0), _unit(0), top_k=3)
    for c in res.candidates:
        assert 0.0 <= c.probability <= 1.0
        assert abs(c.probability - min(max(c.score / 2.0, 0.0), 1.0)) < 1e-9
    assert res.probability == res.candidates[0].probability


def test_list_show_stats():
    cat = _catalog()
    rows = cat.list_individuals()
    assert [r.individual_id for r in rows] == ["whale_a", "whale_b", "whale_c"]
    assert [r.individual_id for r in cat.list_individuals(species="blue_whale")] == ["whale_c"]
    assert cat.get_individual("whale_a").n_images == 2
    stats = cat.stats()
    assert stats["images"] == 6 and stats["individuals"] == 3 and stats["model_id"] == MODEL
    assert stats["species"] == {"blue_whale": 1, "humpback_whale": 2}


def test_load_refuses_embeddings_of_another_model():
    store = InMemoryStore()
    store.add_catalog_images([CatalogImage(image_id="i1", individual_id="a", species="s",
                                           model_id="other.model", embedding=_unit(0))])
    with pytest.raises(CatalogModelMismatchError, match="whales catalog reindex"):
        Catalog(store, MODEL).load()
    with pytest.raises(CatalogModelMismatchError):
        Catalog(InMemoryStore(), MODEL).add_images(store.list_catalog_images())


def test_load_reads_the_store():
    cat = _catalog()
    again = Catalog(cat.store, MODEL, calibration=_cal()).load()
    assert len(again) == 6
    assert again.identify(_texture(20), _unit(2), 1).candidates[0].individual_id == "whale_c"


def test_concurrent_enroll_and_identify():
    cat = _catalog(use_local=False)
    errors: list[Exception] = []

    def enroll(k: int) -> None:
        try:
            cat.enroll([_texture(500 + k)], _unit(500 + k)[None], f"w{k}", "humpback_whale")
            cat.identify(_texture(0), _unit(0), 3)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=enroll, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cat) == 14


def test_vote_index_owns_its_data():
    """The FLANN vote index frees its float32 copy of the descriptors after building: OpenCV must
    have copied them (a kept pointer would read freed memory)."""
    import gc

    import cv2

    rng = np.random.default_rng(0)
    data = rng.random((2000, 128), dtype=np.float32)
    query = data[:20].copy()
    index = cv2.flann_Index(data, dict(algorithm=1, trees=2))
    del data
    gc.collect()
    _junk = np.full((2000, 128), 7.0, np.float32)  # may reuse the freed block
    idx, dist = index.knnSearch(query, 1, params=dict(checks=64))
    assert idx.ravel().tolist() == list(range(20)) and np.allclose(dist, 0.0)


def _descriptor_problem(seed: int, n_parts: int, sizes: tuple[int, int], n_query: int, k: int):
    """Random uint8 descriptors per image, queries, and brute force's k nearest: (parts, data,
    query, d2 to every row, indices of the k nearest)."""
    from whales_identify.reid.local_features import as_float

    rng = np.random.default_rng(seed)
    parts = [rng.integers(0, 255, (rng.integers(*sizes), 128), dtype=np.uint8) for _ in range(n_parts)]
    data = as_float(np.concatenate(parts))
    query = as_float(rng.integers(0, 255, (n_query, 128), dtype=np.uint8))
    d2_brute = ((query[:, None, :] - data[None, :, :]) ** 2).sum(-1)
    return parts, data, query, d2_brute, np.argsort(d2_brute, axis=1, kind="stable")[:, :k]


def test_vote_index_shards_return_the_nearest_overall():
    """A query over several shards keeps the overall nearest neighbours: with an exhaustive search
    (checks=-1) they are exactly brute force's, whatever the shard size."""
    from whales_identify.reid.vote_index import FlannVoteIndex

    parts, data, query, d2_brute, want = _descriptor_problem(1, 30, (5, 40), 25, 6)
    for shard_size in (10_000, 200, 41):
        index = FlannVoteIndex(parts, checks=-1, shard_size=shard_size)
        assert len(index) == len(data)
        if shard_size == 41:
            assert len(index.shards) > 5
        idx, d2 = index.search(query, 6)
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_allclose(d2, np.take_along_axis(d2_brute, want, axis=1), rtol=1e-4, atol=1e-4)
        assert index.owner[idx].max() < len(parts)


def test_faiss_vote_index_finds_the_nearest_neighbours():
    """Exact (flat) below its threshold; IVF-SQ8 above it, whose 8-bit codes and visited lists may
    miss a few true neighbours but must find nearly all of them when every list is visited."""
    from whales_identify.reid.vote_index import FaissVoteIndex

    parts, data, query, _, want = _descriptor_problem(2, 60, (50, 150), 30, 5)
    flat = FaissVoteIndex(parts)
    idx, _ = flat.search(query, 5)
    np.testing.assert_array_equal(idx, want)
    ivf = FaissVoteIndex(parts, exact_below=0, list_size=100, nprobe=10_000)
    idx, d2 = ivf.search(query, 5)
    assert len(ivf) == len(data) and ivf.owner[idx].max() < len(parts)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx.tolist(), want.tolist(), strict=True)])
    assert recall >= 0.9, recall
    again = FaissVoteIndex(parts, exact_below=0, list_size=100, nprobe=10_000)
    np.testing.assert_array_equal(again.search(query, 5)[0], idx)  # seeded: reproducible
    ivf.index.nprobe = 1  # a tight budget visits one list: fewer true neighbours, still a valid answer
    idx1, _ = ivf.search(query, 5)
    assert idx1.shape == (30, 5)


def _walked(cat: Catalog) -> tuple[dict, dict]:
    """`stats()` and every individual's photos as a walk over all loaded photos gives them."""
    ims = list(cat._images.values())  # noqa: SLF001 - the ground truth the tally must agree with
    per_species: dict[str, set[str]] = {}
    photos: dict[str, list[str]] = {}
    for im in ims:
        per_species.setdefault(im.species, set()).add(im.individual_id)
        photos.setdefault(im.individual_id, []).append(im.image_id)
    stats = {"model_id": MODEL, "images": len(ims), "individuals": len(photos),
             "species": {s: len(v) for s, v in sorted(per_species.items())},
             "with_local_features": sum(im.descriptors is not None for im in ims),
             "calibrated": True}
    return stats, {k: sorted(v) for k, v in photos.items()}


def _assert_tally_agrees(cat: Catalog) -> None:
    stats, photos = _walked(cat)
    assert cat.stats() == stats
    for individual, ids in photos.items():
        assert cat.get_individual(individual).image_ids == ids
    assert cat.get_individual("nobody") is None


def test_stats_and_individuals_follow_enrolment_replacement_removal_and_reload():
    """The catalog answers `stats` and `get_individual` from a tally (issue 18: a walk over every
    photo cost ~60 ms per enrolment at 100k); it must always agree with the walk."""
    cat = _catalog()
    _assert_tally_agrees(cat)
    # a photo stored again under the same id, now another individual of another species and
    # without local features: the old record leaves every count
    moved = replace(cat.store.get_catalog_image(cat.get_individual("whale_c").image_ids[0]),
                    individual_id="whale_d", species="fin_whale", keypoints=None, descriptors=None)
    cat.add_images([moved])
    _assert_tally_agrees(cat)
    assert cat.stats()["species"] == {"blue_whale": 1, "fin_whale": 1, "humpback_whale": 2}
    assert cat.stats()["with_local_features"] == 5
    cat.add_images([replace(moved, image_id="second", species="blue_whale")])  # whale_d in 2 species
    _assert_tally_agrees(cat)
    same = cat.get_individual("whale_a").image_ids[0]  # stored again, same whale, another species
    cat.add_images([replace(cat.store.get_catalog_image(same), species="sei_whale")])
    _assert_tally_agrees(cat)
    in_order = [k for k, im in cat._images.items() if im.individual_id == "whale_a"]  # noqa: SLF001
    assert cat._tally.photos_of("whale_a") == in_order  # noqa: SLF001 - kept in its place
    assert cat.remove_individual("whale_d") == 2 and cat.remove_individual("whale_c") == 1
    _assert_tally_agrees(cat)
    assert cat.stats()["species"] == {"humpback_whale": 2, "sei_whale": 1}
    assert cat.remove_individual("whale_c") == 0
    reloaded = Catalog(cat.store, MODEL, calibration=_cal()).load()
    _assert_tally_agrees(reloaded)
    assert reloaded.stats() == cat.stats()
