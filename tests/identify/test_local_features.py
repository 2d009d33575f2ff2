"""RootSIFT extraction, batched ratio matching and RANSAC verification."""

from __future__ import annotations

import numpy as np
from PIL import Image

from whales_identify.reid.local_features import (
    LocalFeatureConfig,
    as_float,
    extract,
    ratio_matches,
    verify,
)


def _texture(seed: int, size: int = 224) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size // 8, size // 8), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    return img.convert("RGB")


def test_extract_is_compact_and_bounded():
    lf = extract(_texture(0), LocalFeatureConfig(max_keypoints=100))
    assert 0 < len(lf.descriptors) <= 100
    assert lf.descriptors.dtype == np.uint8 and lf.descriptors.shape[1] == 128
    assert lf.keypoints.shape == (len(lf.descriptors), 2) and lf.keypoints.dtype == np.float32
    assert np.allclose(np.linalg.norm(as_float(lf.descriptors), axis=1), 1.0, atol=1e-5)


def test_blank_image_has_no_features():
    lf = extract(Image.new("RGB", (64, 64), (40, 90, 120)))
    assert lf.descriptors.shape == (0, 128)
    assert verify(lf, [lf]).tolist() == [0.0]


def test_ratio_matches_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    q_u8 = rng.integers(0, 255, (30, 128)).astype(np.uint8)
    q = as_float(q_u8)
    gal = [rng.integers(0, 255, (k, 128)).astype(np.uint8) for k in (20, 7)]
    idx, sim, ok = ratio_matches(q_u8, gal, ratio=0.99)
    for i, g in enumerate(gal):
        sims = q @ as_float(g).T
        assert (idx[i] == sims.argmax(axis=1)).all()
        assert np.allclose(sim[i], sims.max(axis=1), atol=1e-6)
        top2 = np.sort(sims, axis=1)[:, -2:]
        dist = np.sqrt(np.maximum(2 - 2 * top2, 0))
        assert (ok[i] == (dist[:, 1] < 0.99 * dist[:, 0])).all()


def test_verification_prefers_the_same_pattern_under_rotation():
    query = _texture(2)
    same = query.rotate(12, resample=Image.Resampling.BICUBIC)
    other = _texture(3)
    counts = verify(extract(query), [extract(same), extract(other)])
    assert counts[0] >= 10
    assert counts[0] > 3 * counts[1]


def test_many_matches_to_one_gallery_keypoint_are_not_inliers():
    """A "hub" gallery descriptor matched by every query keypoint used to give a scale-0
    similarity transform with every match an inlier (fins vs Happywhale photos: 131 inliers)."""
    from whales_identify.reid.local_features import LocalFeatures

    rng = np.random.default_rng(4)
    hub = rng.integers(1, 255, (1, 128)).astype(np.uint8)
    far = rng.integers(1, 255, (5, 128)).astype(np.uint8)
    q_desc = np.repeat(hub, 40, axis=0)  # 40 query keypoints, all like the hub
    q = LocalFeatures(rng.uniform(0, 700, (40, 2)).astype(np.float32), q_desc)
    g = LocalFeatures(np.vstack([[[400.0, 300.0]], rng.uniform(0, 700, (5, 2))]).astype(np.float32),
                      np.vstack([hub, far]))
    assert verify(q, [g]).tolist() == [0.0]
