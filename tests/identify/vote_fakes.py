"""Synthetic catalogs for the vote index tests: individuals whose photos share descriptors."""

from __future__ import annotations

import numpy as np

from whales_identify.records.store import CatalogImage

MODEL = "synthetic.scale"


def clusters(seed: int, n_ind: int, photos: int, k: int, spread: float = 6.0):
    """Per individual a set of `k` descriptor centres; each photo sees them with noise (so that
    an individual's photos share near neighbours, as real re-sightings do)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 235, (n_ind, k, 128))
    parts, labels = [], []
    for i in range(n_ind):
        for _ in range(photos):
            parts.append(np.clip(centres[i] + rng.normal(0, spread, (k, 128)), 0, 255).astype(np.uint8))
            labels.append(i)
    query = {i: np.clip(centres[i] + rng.normal(0, spread, (k, 128)), 0, 255).astype(np.float32)
             for i in range(n_ind)}
    return parts, np.array(labels), query


def records(parts, labels, start: int = 0) -> list[CatalogImage]:
    rng = np.random.default_rng(start)
    out = []
    for j, (p, lab) in enumerate(zip(parts, labels, strict=True)):
        e = rng.normal(size=8).astype(np.float32)
        out.append(CatalogImage(image_id=f"im{start + j:04d}", individual_id=f"ind{lab}", species="s",
                                model_id=MODEL, embedding=e / np.linalg.norm(e),
                                keypoints=rng.uniform(0, 200, (len(p), 2)).astype(np.float32),
                                descriptors=p))
    return out


def scores(cat, q: np.ndarray):
    from whales_identify.reid.local_features import LocalFeatures

    local = LocalFeatures(np.zeros((len(q), 2), np.float32), np.clip(q, 0, 255).astype(np.uint8))
    return cat.score(np.ones(8, np.float32) / np.sqrt(8), local)
