"""Identifier + Catalog end to end with the real embedded Lite0 and a fake gate."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from whales_identify.errors import CatalogModelMismatchError
from whales_identify.gate import GateResult
from whales_identify.identify import Identifier
from whales_identify.records.store import InMemoryStore
from whales_identify.reid.catalog import Catalog


class FakeGate:
    backend = "fake"
    version = "fake-1"

    def __call__(self, images, features=None):
        return [GateResult(is_cetacean=i == 0, cetacean_score=1.0 if i == 0 else 0.0,
                           band="accept" if i == 0 else "reject", backend=self.backend,
                           version=self.version) for i, _ in enumerate(images)]


def _texture(seed: int, size: int = 200) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def test_identifier_matches_an_enrolled_animal(lite0_embedder):
    catalog = Catalog(InMemoryStore(), lite0_embedder.model_id)
    for k in range(3):
        ims = [_texture(10 * k), _texture(10 * k).rotate(10)]
        catalog.enroll(ims, lite0_embedder(ims), f"ind{k}", "humpback_whale")
    ident = Identifier(FakeGate(), lite0_embedder, catalog)
    accepted, rejected = ident([_texture(10).rotate(5), _texture(99)], top_k=3)
    assert accepted.candidates[0].individual_id == "ind1"
    assert not accepted.rejected and 0.0 <= accepted.probability <= 1.0
    assert rejected.rejected and rejected.candidates == []


def test_identifier_refuses_a_catalog_of_another_model(lite0_embedder):
    with pytest.raises(CatalogModelMismatchError):
        Identifier(FakeGate(), lite0_embedder, Catalog(InMemoryStore(), "other.model"))
