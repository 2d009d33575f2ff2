"""Match explanations: the verified pairs are the ones verification counted, in stored-image pixels;
on the shared right whales a true match shows many pairs and a non-match few or none."""

from __future__ import annotations

import io
import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from whales_identify.records.store import CatalogImage, InMemoryStore
from whales_identify.reid.catalog import Catalog, make_thumbnail
from whales_identify.reid.explain import MAX_PAIRS, explain_match, reference_frame
from whales_identify.reid.local_features import (
    LocalFeatureConfig,
    extract,
    feature_frame,
    verify,
    verify_pairs,
)
from whales_identify.reid.matching import MatchConfig

RIGHT_WHALES = "positives/noaa_right_whale_headcrops/"
N_WHALES = 40


def textured(seed: int, size=(640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def record(image_id: str, im: Image.Image, cfg: MatchConfig, feature_size: bool = True) -> CatalogImage:
    lf = extract(im, cfg.local)
    return CatalogImage(image_id=image_id, individual_id="x", species="s", model_id="m",
                        embedding=np.zeros(4, np.float32), keypoints=lf.keypoints, descriptors=lf.descriptors,
                        thumbnail=make_thumbnail(im, cfg.thumbnail_side),
                        feature_size=feature_frame(im.size, cfg.local) if feature_size else None)


def jpeg_roundtrip(im: Image.Image) -> Image.Image:
    """What the service keeps of a query photo (JPEG, quality 85)."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_pairs_are_exactly_what_verification_counts():
    a = textured(1)
    b = a.rotate(5, resample=Image.Resampling.BICUBIC).crop((20, 10, 600, 470))
    fa, fb = extract(a), extract(b)
    found = verify_pairs(fa, fb, ratio=0.9, threshold=6.0)
    assert len(found.query) == int(verify(fa, [fb], ratio=0.9, threshold=6.0)[0]) > 20
    assert found.tentative >= len(found.query)
    assert list(found.similarity) == sorted(found.similarity, reverse=True)
    # the transform maps each query inlier onto its gallery partner within the RANSAC threshold
    mapped = found.query @ found.transform[:, :2].T + found.transform[:, 2]
    assert np.linalg.norm(mapped - found.gallery, axis=1).max() <= 6.0 + 1e-3


def test_coordinates_are_in_stored_pixels_and_capped():
    cfg = MatchConfig()
    big = textured(2, size=(1600, 1000))  # features at 800x500, thumbnail 384x240
    ex = explain_match(big, record("r", big, cfg), cfg, max_pairs=25)
    assert ex.query_size == (1600, 1000) and ex.reference_size == (384, 240)
    assert ex.inliers > 25 and len(ex.pairs) == 25 and ex.reason is None
    for p in ex.pairs:  # the same photo: a pair lands on the same spot, scaled 1600 -> 384
        assert 0 <= p.query[0] < 1600 and 0 <= p.query[1] < 1000
        assert abs(p.reference[0] - (p.query[0] + 0.5) * 0.24 + 0.5) < 1.0
        assert abs(p.reference[1] - (p.query[1] + 0.5) * 0.24 + 0.5) < 1.0
    t = np.array(ex.transform)
    np.testing.assert_allclose(t[:2, :2], np.eye(2) * 0.24, atol=0.01)


def test_reference_frame_of_legacy_records():
    cfg = MatchConfig(local=LocalFeatureConfig(max_side=800))
    small = textured(3, size=(224, 224))  # never downscaled: the thumbnail is the photo
    assert reference_frame(record("s", small, cfg, feature_size=False), (224, 224), cfg) == (224, 224)
    big = textured(4, size=(2000, 1500))  # downscaled to 800x600 for features, 384x288 thumbnail
    assert reference_frame(record("b", big, cfg, feature_size=False), (384, 288), cfg) == (800, 600)
    kept = replace(record("k", big, cfg), feature_size=(800, 600))
    assert reference_frame(kept, (384, 288), cfg) == (800, 600)


def test_reasons_when_there_is_nothing_to_draw():
    cfg = MatchConfig()
    im = textured(5)
    no_local = explain_match(im, record("r", im, cfg), MatchConfig(use_local=False))
    assert no_local.pairs == [] and "disabled" in no_local.reason
    bare = replace(record("r", im, cfg), keypoints=None, descriptors=None)
    assert "no local features" in explain_match(im, bare, cfg).reason
    flat = Image.new("RGB", (300, 200), (90, 120, 150))
    assert "no keypoints" in explain_match(flat, record("r", im, cfg), cfg).reason
    unrelated = explain_match(textured(6), record("r", im, cfg), cfg)
    assert unrelated.inliers <= 6 and len(unrelated.pairs) == unrelated.inliers


@pytest.fixture(scope="module")
def right_whale_catalog(data_dir, manifest, lite0_embedder):
    """A real catalog (real embedding model, real local features) of 40 right whales, one photo
    each, and a second photo of each as the queries."""
    by_whale: dict[str, list] = {}
    for row in manifest:
        if row.relpath.startswith(RIGHT_WHALES) and row.individual_id:
            by_whale.setdefault(row.individual_id, []).append(row)
    whales = sorted(k for k, v in by_whale.items() if len(v) >= 2)[:N_WHALES]
    if len(whales) < 10:
        pytest.skip(f"fewer than 10 right whales with two photos under {data_dir / RIGHT_WHALES}")
    load = lambda row: Image.open(data_dir / row.relpath).convert("RGB")  # noqa: E731
    gallery = [load(by_whale[w][1]) for w in whales]
    catalog = Catalog(InMemoryStore(), lite0_embedder.model_id)
    for w, im, emb in zip(whales, gallery, lite0_embedder(gallery), strict=True):
        catalog.enroll([im], emb[None], w, "north_atlantic_right_whale")
    queries = [load(by_whale[w][0]) for w in whales]
    return catalog, whales, queries, lite0_embedder(queries)


@pytest.mark.slow
def test_true_right_whale_matches_show_their_pairs(right_whale_catalog):
    catalog, whales, queries, embeddings = right_whale_catalog
    rng = random.Random(0)
    true_matches, non_matches = 0, []
    for whale, query, emb in zip(whales, queries, embeddings, strict=True):
        local = extract(query, catalog.config.local)
        scores = catalog.score(emb, local)
        top = catalog.rank(scores, top_k=5).candidates[0]
        verified = scores.inliers[scores.individual_ids.index(whale)]
        assert top.inliers == verified or top.individual_id != whale  # kept on the candidate
        if top.individual_id != whale or verified < 12:
            continue  # a true match the matcher found and verified clearly
        true_matches += 1
        stored = jpeg_roundtrip(query)
        ref = catalog.store.get_catalog_image(top.reference_image_id)
        ex = explain_match(stored, ref, catalog.config)
        assert ex.reason is None and len(ex.pairs) >= 8, (whale, verified, ex)
        assert ex.inliers >= 0.6 * verified  # recomputed from the stored JPEG: close to what matching saw
        assert len(ex.pairs) <= MAX_PAIRS
        (qw, qh), (rw, rh) = ex.query_size, ex.reference_size
        for p in ex.pairs:
            assert 0 <= p.query[0] < qw and 0 <= p.query[1] < qh
            assert 0 <= p.reference[0] < rw and 0 <= p.reference[1] < rh
        other = rng.choice([w for w in whales if w != whale])
        other_ref = next(im for im in catalog.store.list_catalog_images() if im.individual_id == other)
        non_matches.append(explain_match(stored, other_ref, catalog.config).inliers)
    assert true_matches >= 1, "no verified true match among the right whales"
    # a random non-match has few or none: RANSAC's chance agreements (a similarity needs 2 points)
    assert max(non_matches) <= 7 and float(np.median(non_matches)) <= 5, non_matches
