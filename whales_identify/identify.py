"""`Identifier(gate, embedder, catalog)(images) -> [Prediction]`: the whole pipeline for a batch.

One backbone pass serves both the gate (when its head sits on the same features and framing) and the catalog
search; otherwise the gate runs first, and rejected photos are neither embedded nor matched (`screen`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from whales_identify.embed import Embedder, l2_normalize
from whales_identify.gate import Gate, GateResult, shares_features
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
        screened = screen(self.gate, self.embedder, images)
        n = len(images)
        n_embedded = sum(1 for e in screened.embeddings if e is not None)
        out: list[Prediction] = []
        for image, g, emb in zip(images, screened.verdicts, screened.embeddings, strict=True):
            timings = {"gate": screened.seconds_gate / n}
            if emb is not None:  # a photo the gate rejected first never paid for the embedding
                timings["embed"] = screened.seconds_embed / n_embedded
            base = dict(is_cetacean=g.is_cetacean, cetacean_score=g.cetacean_score, gate_band=g.band,
                        gate_backend=g.backend, gate_version=g.version,
                        bbox=[0, 0, image.width, image.height], model_version=self.model_version)
            if not g.is_cetacean:
                out.append(Prediction(rejected=True, rejection_reason=REJECTION_REASON,
                                      species="unknown", species_score=0.0, individual_id=None,
                                      is_new_individual=None, probability=None, candidates=[],
                                      timings=timings, embedding=emb, **base))
                continue
            assert emb is not None  # accepted photos are always embedded
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


@dataclass
class Screening:
    """The gate's verdicts on a batch and the embeddings of the photos that were embedded.

    `verdicts` is None when no gate ran (every photo kept); `embeddings[i]` is None for a photo the gate
    rejected before it was embedded.
    """

    verdicts: list[GateResult] | None
    embeddings: list[np.ndarray | None]
    seconds_gate: float = 0.0
    seconds_embed: float = 0.0

    @property
    def accepted(self) -> list[int]:
        """Indices of the photos the gate let through (all of them when no gate ran)."""
        if self.verdicts is None:
            return list(range(len(self.embeddings)))
        return [i for i, g in enumerate(self.verdicts) if g.is_cetacean]


def screen(gate: Gate | None, embedder: Embedder, images: Sequence[Image.Image]) -> Screening:
    """Gate and embed a batch, paying for each backbone pass only where it is needed.

    When the gate scores the embedder's own features (`shares_features`), one pass serves both. Otherwise
    the gate runs first and only the photos it accepts are embedded: a rejected photo never pays for
    the re-ID model. Without a gate every photo is embedded.
    """
    if gate is None:
        t0 = time.perf_counter()
        embeddings = list(embedder(images)) if images else []
        return Screening(None, embeddings, 0.0, time.perf_counter() - t0)
    if shares_features(gate, embedder):
        t0 = time.perf_counter()
        features = embedder.features(images)
        t_embed = time.perf_counter() - t0
        t0 = time.perf_counter()
        verdicts = gate(images, features=features)
        return Screening(verdicts, list(l2_normalize(features)), time.perf_counter() - t0, t_embed)
    t0 = time.perf_counter()
    verdicts = gate(images)
    t_gate = time.perf_counter() - t0
    keep = [i for i, g in enumerate(verdicts) if g.is_cetacean]
    embeddings: list[np.ndarray | None] = [None] * len(images)
    t0 = time.perf_counter()
    if keep:
        for i, emb in zip(keep, embedder([images[i] for i in keep]), strict=True):
            embeddings[i] = emb
    return Screening(verdicts, embeddings, t_gate, time.perf_counter() - t0)


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
