"""Result types returned by the catalog matcher and the identifier (plain data, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Candidate:
    individual_id: str
    species: str
    score: float  # fused similarity; higher is better, not a probability
    probability: float  # calibrated probability that this candidate is the right individual
    reference_image_id: str
    # RANSAC inliers between the query and `reference_image_id` (0: not verified, or no geometric
    # support); GET /v1/predictions/{id}/matches/{individual_id} draws them
    inliers: int = 0


@dataclass(frozen=True)
class MatchResult:
    """What the catalog says about one query photo."""

    candidates: list[Candidate]
    individual_id: str | None  # None when the photo is judged a new individual or catalog is empty
    is_new_individual: bool
    probability: float  # calibrated probability that candidates[0] is right (0 when none)
    species: str  # "unknown" when unsure
    species_score: float


@dataclass
class Prediction:
    """The full answer for one photo."""

    rejected: bool
    rejection_reason: str | None
    is_cetacean: bool
    cetacean_score: float
    gate_band: str
    gate_backend: str
    gate_version: str
    species: str
    species_score: float
    individual_id: str | None
    is_new_individual: bool | None
    probability: float | None
    candidates: list[Candidate]
    bbox: list[int]  # [x1, y1, x2, y2] of the region analysed (the whole photo: no detector yet)
    model_version: str
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, repr=False)
