"""The integer ratio test (`_integer_matmul`) against the float32 path it replaced (kept here as the
reference): the same matches and inlier counts on synthetic and real photos, and the same
per-individual scores and ranking from a catalog, with verification on one thread or two."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from whales_identify.records.store import InMemoryStore
from whales_identify.reid import matching
from whales_identify.reid._integer_matmul import scaled_products
from whales_identify.reid.calibrate import Calibration, FusionWeights, ProbabilityMap
from whales_identify.reid.catalog import Catalog, MatchConfig
from whales_identify.reid.local_features import (
    LocalFeatures,
    as_float,
    extract,
    one_to_one,
    ransac_inliers,
    ratio_matches,
    verify,
)

MODEL = "efficientnet_lite0.imagenet"


# ------------------------------------------------------------ the previous path (commit 3cab75a)
def _pad_stack(descs: Sequence[np.ndarray], kpts: Sequence[np.ndarray], max_k: int):
    n = len(descs)
    d, p = np.zeros((n, max_k, 128), np.float32), np.zeros((n, max_k, 2), np.float32)
    m = np.zeros((n, max_k), bool)
    for i, (desc, kp) in enumerate(zip(descs, kpts, strict=True)):
        k = min(len(desc), max_k)
        if k:
            d[i, :k], p[i, :k], m[i, :k] = as_float(desc[:k]), kp[:k], True
    return d, p, m


def _float_ratio_matches(query: np.ndarray, gallery: np.ndarray, ratio: float):
    n, k, _ = gallery.shape
    sims = (query @ gallery.reshape(n * k, -1).T).reshape(len(query), n, k)
    best_idx = np.argmax(sims, axis=2)
    best = np.take_along_axis(sims, best_idx[..., None], axis=2)[..., 0]
    np.put_along_axis(sims, best_idx[..., None], -2.0, axis=2)
    second = sims.max(axis=2)
    best_idx, best, second = best_idx.T, best.T, second.T
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * best, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * second, 0.0))
    return best_idx, (d1 < ratio * d2) & (best > 0)


def _float_verify(query: LocalFeatures, gallery: Sequence[LocalFeatures], ratio: float = 0.8,
                  max_keypoints: int = 500, threshold: float = 8.0) -> np.ndarray:
    if not gallery or len(query.descriptors) == 0:
        return np.zeros(len(gallery), np.float32)
    q = as_float(query.descriptors[:max_keypoints])
    qp = query.keypoints[:max_keypoints]
    d, p, m = _pad_stack([g.descriptors for g in gallery], [g.keypoints for g in gallery], max_keypoints)
    idx, ok = _float_ratio_matches(q, d, ratio)
    out = np.zeros(len(gallery), np.float32)
    for i in range(len(gallery)):
        sel = np.flatnonzero(ok[i])
        if len(sel):
            sel = one_to_one(sel, idx[i, sel], np.einsum("kd,kd->k", q[sel], d[i][idx[i, sel]]))
        out[i] = ransac_inliers(qp[sel], p[i, idx[i, sel]], threshold)
    return out


# ------------------------------------------------------------ tests
def _random_features(rng: np.random.Generator, k: int, high: int = 90) -> LocalFeatures:
    return LocalFeatures(rng.uniform(0, 600, (k, 2)).astype(np.float32),
                         rng.integers(0, high, (k, 128)).astype(np.uint8))


@pytest.mark.parametrize("high", [90, 256])  # the uint8 x int8 kernel, and uint8 x uint8 above 127
def test_scaled_products_are_exact_integer_products(high):
    rng = np.random.default_rng(0)
    q = rng.integers(0, high, (37, 128)).astype(np.uint8)
    g = rng.integers(0, high, (211, 128)).astype(np.uint8)
    q[0], g[0] = high - 1, high - 1  # the largest products the kernel must not saturate on
    scale = rng.uniform(0.5, 2.0, len(g)).astype(np.float32)
    exact = (q.astype(np.int64) @ g.astype(np.int64).T).astype(np.float32)
    assert np.array_equal(scaled_products(q, g, np.ones(len(g), np.float32)), exact)
    assert np.array_equal(scaled_products(q, g, scale), exact * scale)


@pytest.mark.parametrize("high", [90, 256])
def test_ratio_matches_equal_the_float_path(high):
    rng = np.random.default_rng(1)
    q = _random_features(rng, 60, high).descriptors
    gal = [_random_features(rng, k, high).descriptors for k in (50, 1, 0, 23)]
    gal[0][7] = gal[0][3]  # a duplicate keypoint: both paths keep the first
    gal[3][:5] = q[:5]  # exact matches
    idx, sim, ok = ratio_matches(q, gal, ratio=0.99)
    d, _, _ = _pad_stack(gal, [np.zeros((len(g), 2), np.float32) for g in gal], 50)
    ref_idx, ref_ok = _float_ratio_matches(as_float(q), d, 0.99)
    assert np.array_equal(ok, ref_ok) and ok[3, :5].all()
    assert np.array_equal(np.where(ok, idx, -1), np.where(ref_ok, ref_idx, -1))
    cos = np.einsum("kd,nkd->nk", as_float(q), d[np.arange(4)[:, None], idx])
    assert np.allclose(sim, cos, atol=1e-6)


def test_verify_equals_the_float_path_on_synthetic_features():
    rng = np.random.default_rng(2)
    base = _random_features(rng, 300)
    # the gallery: the query's keypoints moved by a similarity transform (some replaced), and noise
    rot = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]], np.float32) * 1.2
    moved = LocalFeatures((base.keypoints @ rot.T + 15).astype(np.float32), base.descriptors.copy())
    moved.descriptors[::3] = rng.integers(0, 90, (100, 128))
    gallery = [moved, _random_features(rng, 250), _random_features(rng, 1), _random_features(rng, 0)]
    new = verify(base, gallery, ratio=0.9, threshold=6.0)
    assert new.tolist() == _float_verify(base, gallery, ratio=0.9, threshold=6.0).tolist()
    assert new[0] > 100


def test_verify_equals_the_float_path_on_real_photos(manifest, data_dir):
    """12 shared photos (4 individuals of 3+ photos), each verified against the 11 others."""
    by_ind: dict[str, list] = {}
    for row in manifest:
        if row.individual_id:
            by_ind.setdefault(row.individual_id, []).append(row)
    rows = [r for rs in list(v for v in by_ind.values() if len(v) >= 3)[:4] for r in rs[:3]]
    feats = [extract(Image.open(data_dir / r.relpath).convert("RGB")) for r in rows]
    matched = 0
    for i, q in enumerate(feats):
        others = feats[:i] + feats[i + 1:]
        new = verify(q, others, ratio=0.9, threshold=6.0)
        assert new.tolist() == _float_verify(q, others, ratio=0.9, threshold=6.0).tolist(), rows[i].relpath
        matched += int(new.max() > 0)
    assert matched > 0


def _texture(seed: int, size: int = 160) -> Image.Image:
    small = np.random.default_rng(seed).integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def _unit(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _catalog(**cfg) -> Catalog:
    """Four individuals of two photos each (rotated textures) in an in-memory catalog."""
    cal = Calibration(model_id=MODEL, weights=FusionWeights(1.0, 0.0, 0.5), new_individual_threshold=0.5,
                      probability=ProbabilityMap("isotonic", (0.0, 2.0), (0.0, 1.0)), fitted=True)
    cat = Catalog(InMemoryStore(), MODEL, config=MatchConfig(**cfg), calibration=cal)
    for k in range(4):
        embs = np.stack([_unit(k) + 0.05 * _unit(100 + j) for j in range(2)])
        cat.enroll([_texture(10 * k + j).rotate(5 * j) for j in range(2)],
                   embs / np.linalg.norm(embs, axis=1, keepdims=True), f"whale_{k}", "humpback_whale",
                   filenames=["x.jpg", "y.jpg"])
    return cat


def test_catalog_scores_equal_the_float_path_on_one_or_two_threads(monkeypatch):
    queries = [(_texture(0).rotate(8), _unit(2) * 0.3 + _unit(0) * 0.1), (_texture(10).rotate(3), _unit(1)),
               (_texture(99), _unit(5))]

    def scores(threads: int, verifier) -> list:
        monkeypatch.setattr(matching, "verify", verifier)
        monkeypatch.setattr(matching, "VERIFY_CHUNK", 2)  # several chunks for the pool
        cat = _catalog(verify_threads=threads)
        out = []
        for image, emb in queries:
            s = cat.score(emb, extract(image, cat.config.local))
            res = cat.rank(s, 5)
            out.append((s.cos.tolist(), s.vote.tolist(), s.inliers.tolist(), s.ref_image.tolist(),
                        [(c.individual_id, c.score, c.inliers) for c in res.candidates]))
        return out

    reference = scores(1, _float_verify)
    assert any(max(s[2]) > 0 for s in reference)  # verification found inliers
    assert scores(1, verify) == reference
    assert scores(2, verify) == reference
