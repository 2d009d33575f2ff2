"""`Identifier(gate, embedder, catalog)(images) -> [Prediction]`: the whole pipeline for a batch.

One backbone pass serves both the gate (when its head sits on the same features and framing) and the catalog
search; rejected photos never reach the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from whales_identify.embed import Embedder, l2_normalize
from whales_identify.gate import Gate, shares_features
from whales_identify.results import MatchResult, Prediction

REJECTION_REASON = "not_a_marine_mammal"
# Species is the vote of the best-matching catalog individuals (there is no separate species model), so
# an empty catalog can name neither the individual nor the species.
EMPTY_CATALOG_WARNING = ("the catalog is empty: nothing to match against, so the photo is a new "
                         "individual and its species is 'unknown' (species comes from the matching "
                         "catalog individuals; enrol known individuals first)")


class Matcher(Protocol):
    model_id: str

    def identify(self, image: Image.Image, embedding: np.ndarray, top_k: int) -> MatchResult: ...


class Identifier:
    """Runs gate -> embedding -> catalog match for a batch of decoded RGB images.

    Args:
        gate: any `Gate`; when `shares_features(gate, embedder)` (same feature model and framing) it
            is given the shared features instead of computing its own.
        embedder: the global embedding model (must be the one the catalog was indexed with).
        catalog: a `Matcher` (normally `whales_identify.reid.catalog.Catalog`).
    """

    def __init__(self, gate: Gate, embedder: Embedder, catalog: Matcher):
        if catalog.model_id != embedder.model_id:
            from whales_identify.errors import CatalogModelMismatchError

            raise CatalogModelMismatchError(
                f"catalog was indexed with {catalog.model_id}, the embedder is {embedder.model_id}; "
                f"re-index the catalog (whales catalog reindex)")
        self.gate = gate
        self.embedder = embedder
        self.catalog = catalog

    @property
    def model_version(self) -> str:
        return self.embedder.model_id

    def __call__(self, images: Sequence[Image.Image], top_k: int = 5) -> list[Prediction]:
        t0 = time.perf_counter()
        features = self.embedder.features(images)
        t_embed = time.perf_counter() - t0
        shared = shares_features(self.gate, self.embedder)
        t0 = time.perf_counter()
        gate_results = self.gate(images, features=features if shared else None)
        t_gate = time.perf_counter() - t0
        embeddings = l2_normalize(features)
        out: list[Prediction] = []
        for image, g, emb in zip(images, gate_results, embeddings, strict=True):
            timings = {"embed": t_embed / len(images), "gate": t_gate / len(images)}
            base = dict(is_cetacean=g.is_cetacean, cetacean_score=g.cetacean_score, gate_band=g.band,
                        gate_backend=g.backend, gate_version=g.version,
                        bbox=[0, 0, image.width, image.height], model_version=self.model_version)
            if not g.is_cetacean:
                out.append(Prediction(rejected=True, rejection_reason=REJECTION_REASON,
                                      species="unknown", species_score=0.0, individual_id=None,
                                      is_new_individual=None, probability=None, candidates=[],
                                      timings=timings, embedding=emb, **base))
                continue
            t0 = time.perf_counter()
            match = self.catalog.identify(image, emb, top_k)
            timings["match"] = time.perf_counter() - t0
            warnings = [EMPTY_CATALOG_WARNING] if not match.candidates else []
            if g.band == "borderline":
                warnings.append("borderline cetacean score: a tighter crop, better light, or a fin "
                                "or fluke view gives a more reliable answer")
            out.append(Prediction(rejected=False, rejection_reason=None, species=match.species,
                                  species_score=match.species_score,
                                  individual_id=match.individual_id,
                                  is_new_individual=match.is_new_individual,
                                  probability=match.probability, candidates=match.candidates,
                                  warnings=warnings, timings=timings, embedding=emb, **base))
        return out


def outcome(pred: Prediction) -> str:
    """`rejected`, `new_individual`, `known` or `unmatched`: the one-word result of a prediction."""
    if pred.rejected:
        return "rejected"
    if pred.is_new_individual:
        return "new_individual"
    return "known" if pred.individual_id else "unmatched"


def prediction_fields(pred: Prediction) -> dict[str, Any]:
    """The answer for one photo as plain JSON fields, shared by `POST /v1/predict` and `whales identify`
    (the service adds its photo name, prediction id, sighting and hints; bbox is in analysed pixels)."""
    from whales_identify.species import species_info

    named = bool(pred.species) and pred.species != "unknown"
    info = species_info(pred.species) if named else None
    return {
        "rejected": pred.rejected,
        "rejection_reason": pred.rejection_reason,
        "is_cetacean": pred.is_cetacean,
        "cetacean_score": float(pred.cetacean_score),
        "gate_backend": pred.gate_backend,
        "gate_band": pred.gate_band,
        "species": pred.species or "unknown",
        "species_score": float(pred.species_score),
        "species_common_name": info.common_name if info else None,
        "species_scientific_name": info.scientific_name if info else None,
        "individual_id": pred.individual_id,
        "is_new_individual": pred.is_new_individual,
        "probability": None if pred.probability is None else float(pred.probability),
        "candidates": [
            {"individual_id": c.individual_id, "species": c.species, "score": float(c.score),
             "probability": float(c.probability), "reference_image_id": c.reference_image_id,
             "inliers": int(c.inliers)}
            for c in pred.candidates
        ],
        "bbox": list(pred.bbox),
        "model_version": pred.model_version,
        "warnings": list(pred.warnings),
    }
