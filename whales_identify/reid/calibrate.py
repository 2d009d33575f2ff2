"""Calibration of the matcher: the fusion (linear weights or the learned logistic fusion of
`fusion.py`), the open-set rule (a fused-score threshold, or P(new) >= a target) and the score ->
probability map.

Everything is fitted on a calibration split that is disjoint *by individual* from any reported
split, and stored as a small JSON file (no pickle) together with the manifest hash and the split
that produced it. `resolve_calibration(model_id)` loads the packaged one for a model (else
`whales_identify/calibration/reid_default.json`) or a user's file checked against the model.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from whales_identify.reid.fusion import LogisticFusion, NewIndividualModel

DEFAULT_CALIBRATION = "reid_default.json"
FORMAT_VERSION = 2  # 2: learned fusion and P(new) (version 1 files read as the linear fusion)


def distinctive(counts: np.ndarray) -> np.ndarray:
    """Per-individual evidence in excess of the best *other* individual of the same query.

    `counts[i] - max(counts[j], j != i)`, floored at 0: only the individual whose geometric
    verification clearly beats every other verified individual keeps evidence (the runner-up is
    the query's own noise level, as in Lowe's ratio test one level up). Raw RANSAC inlier counts
    are not comparable across photo types: a large boat photo or a fin shares background texture
    (water, sky) with many gallery photos and collects a few inliers with every one of them, more
    than the right animal photographed from another angle; the margin over the runner-up cancels
    that per-query noise level.
    """
    x = np.maximum(np.asarray(counts, np.float64), 0.0)
    out = np.zeros_like(x)
    if x.size == 0:
        return out
    if x.size == 1:
        return x.copy()
    top2 = np.argpartition(-x.ravel(), 1)[:2]
    a, b = sorted(top2, key=lambda i: -x.ravel()[i])
    out.ravel()[a] = x.ravel()[a] - x.ravel()[b]
    return out


@dataclass(frozen=True)
class FusionWeights:
    """fused = global * cos + vote * log1p(lnbnn vote) + inliers * log1p(distinctive(inliers)).

    `fuse` takes the evidence of all (or at least the strongest) candidate individuals of ONE
    query: the inlier term is the margin over the runner-up individual (`distinctive`).
    """

    global_: float = 1.0
    vote: float = 0.3
    inliers: float = 0.3

    def fuse(self, cos: np.ndarray, vote: np.ndarray, inliers: np.ndarray) -> np.ndarray:
        return (self.global_ * np.asarray(cos, np.float64)
                + self.vote * np.log1p(np.maximum(np.asarray(vote, np.float64), 0.0))
                + self.inliers * np.log1p(distinctive(inliers)))


def lead_over_others(fused: np.ndarray) -> np.ndarray:
    """Each candidate's fused score minus the best OTHER candidate's of the same query: the top-1's
    lead over the runner-up, and <= 0 for every other candidate (-inf scores stay -inf).

    What the probability map reads with the learned fusion: its log-odds are relative within a
    query (a conditional logit), so how far the best candidate stands out says more about a right
    top-1 than its level does (coverage at 98 % precision 0.58 against 0.51 from the level on the
    cross-fit records, docs/REID.md)."""
    f = np.asarray(fused, np.float64)
    out = np.full_like(f, -np.inf)
    finite = np.flatnonzero(np.isfinite(f))
    if len(finite) < 2:
        out[finite] = 0.0  # no other candidate: the caller adds a virtual one (matching.rank)
        return out
    a, b = finite[np.argsort(-f[finite], kind="stable")[:2]]
    out[finite] = f[finite] - f[a]
    out[a] = f[a] - f[b]
    return out


@dataclass(frozen=True)
class ProbabilityMap:
    """A monotone map from fused score to P(top-1 is right): isotonic steps or a Platt sigmoid."""

    method: str = "platt"  # "isotonic" | "platt"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = -2.0

    def __call__(self, score: np.ndarray | float) -> np.ndarray:
        s = np.asarray(score, np.float64)
        if self.method == "isotonic" and self.x:
            return np.clip(np.interp(s, self.x, self.y), 0.0, 1.0)
        return 1.0 / (1.0 + np.exp(-(self.a * s + self.b)))


@dataclass(frozen=True)
class Calibration:
    """Everything tuned for one embedding model and local-feature setting.

    Fusion: `logistic` when `fusion == "logistic"` (and fitted), else the linear `weights`.
    Open set: with a `new_model`, "new individual" means P(new) >= `new_probability_target`;
    without one, fused top-1 < `new_individual_threshold` (-inf: never).
    Probability: `probability` maps the fused score ("score") or its lead over the best other
    candidate ("lead", `lead_over_others`) to P(right).
    """

    model_id: str = ""
    weights: FusionWeights = field(default_factory=FusionWeights)
    new_individual_threshold: float = -math.inf  # fused top-1 score below this -> new individual
    probability: ProbabilityMap = field(default_factory=ProbabilityMap)
    species_threshold: float = 0.5
    provenance: dict[str, Any] = field(default_factory=dict)
    fitted: bool = False
    fusion: str = "linear"  # "linear" | "logistic"
    logistic: LogisticFusion | None = None
    new_model: NewIndividualModel | None = None
    new_probability_target: float = 0.5
    probability_input: str = "score"  # "score" | "lead"

    def fuse(self, cos: np.ndarray, vote: np.ndarray, inliers: np.ndarray) -> np.ndarray:
        """Fused score per candidate individual of ONE query (higher is better)."""
        if self.fusion == "logistic" and self.logistic is not None:
            return self.logistic.fuse(cos, vote, inliers)
        return self.weights.fuse(cos, vote, inliers)

    @property
    def open_set_rule(self) -> str:
        if self.new_model is not None:
            return "probability"
        return "threshold" if math.isfinite(self.new_individual_threshold) else "none"

    def probability_inputs(self, fused: np.ndarray) -> np.ndarray:
        """What `probability` maps, per candidate of ONE query (all its fused scores)."""
        return lead_over_others(fused) if self.probability_input == "lead" else np.asarray(fused, np.float64)

    def p_new(self, fused: np.ndarray) -> float | None:
        """P(the query's individual is not in the catalog), None without a fitted model."""
        return None if self.new_model is None else self.new_model.p_new(fused)

    def is_new(self, fused: np.ndarray) -> bool:
        """The open-set decision from one query's fused scores (finite ones)."""
        fused = np.asarray(fused, np.float64)
        if self.new_model is not None:
            return bool(self.new_model.p_new(fused) >= self.new_probability_target)
        return bool(fused.size == 0 or fused.max() < self.new_individual_threshold)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format_version"] = FORMAT_VERSION
        data["weights"] = {"global": self.weights.global_, "vote": self.weights.vote,
                           "inliers": self.weights.inliers}
        data["probability"]["x"] = list(self.probability.x)
        data["probability"]["y"] = list(self.probability.y)
        data["logistic"] = self.logistic.to_dict() if self.logistic is not None else None
        data["new_model"] = self.new_model.to_dict() if self.new_model is not None else None
        if not math.isfinite(self.new_individual_threshold):
            data["new_individual_threshold"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        w = data.get("weights") or {}
        p = data.get("probability") or {}
        thr = data.get("new_individual_threshold")
        fusion = str(data.get("fusion", "linear"))
        if fusion not in ("linear", "logistic") or (fusion == "logistic" and not data.get("logistic")):
            raise ValueError(f"unknown fusion {fusion!r} (or a logistic fusion without coefficients)")
        probability_input = str(data.get("probability_input", "score"))
        if probability_input not in ("score", "lead"):
            raise ValueError(f"unknown probability_input {probability_input!r}")
        return cls(
            model_id=str(data.get("model_id", "")),
            weights=FusionWeights(float(w.get("global", 1.0)), float(w.get("vote", 0.3)),
                                  float(w.get("inliers", 0.3))),
            fusion=fusion,
            logistic=LogisticFusion.from_dict(data["logistic"]) if data.get("logistic") else None,
            new_model=NewIndividualModel.from_dict(data["new_model"]) if data.get("new_model") else None,
            new_probability_target=float(data.get("new_probability_target", 0.5)),
            probability_input=probability_input,
            new_individual_threshold=-math.inf if thr is None else float(thr),
            probability=ProbabilityMap(method=str(p.get("method", "platt")),
                                       x=tuple(float(v) for v in p.get("x", ())),
                                       y=tuple(float(v) for v in p.get("y", ())),
                                       a=float(p.get("a", 1.0)), b=float(p.get("b", -2.0))),
            species_threshold=float(data.get("species_threshold", 0.5)),
            provenance=dict(data.get("provenance") or {}),
            fitted=bool(data.get("fitted", False)),
        )


def save_calibration(cal: Calibration, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(cal.to_dict(), indent=2, sort_keys=True) + "\n")


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read one calibration file as it is (`resolve_calibration` also checks its model)."""
    return Calibration.from_dict(json.loads(Path(path).read_text()))


def resolve_calibration(model_id: str, path: str | os.PathLike[str] | None = None) -> Calibration:
    """The calibration of embedding model `model_id`: the one loader the service, the CLI, the
    catalog and the evaluation use.

    A calibration is a model file, keyed by the model id: the packaged
    `whales_identify/calibration/<model_id>.json`, else the packaged default (`reid_default.json`,
    fitted for the default model), else an unfitted `Calibration()`.

    Args:
        model_id: the embedding model whose scores are calibrated.
        path: a file fitted on the user's own catalog (WHALES_CALIBRATION, `--calibration`), used
            instead of the packaged one.

    Raises:
        ValueError: `path` is unreadable, or was fitted for another embedding model (its numbers
            would not fit).
    """
    if path is None:
        folder = resources.files("whales_identify") / "calibration"
        ref = folder / f"{model_id}.json"
        if not ref.is_file():
            ref = folder / DEFAULT_CALIBRATION
        if not ref.is_file():
            return Calibration()
        return Calibration.from_dict(json.loads(ref.read_text()))
    try:
        cal = load_calibration(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read the calibration {path}: {exc}") from exc
    if cal.model_id and cal.model_id != model_id:
        raise ValueError(f"the calibration {path} was fitted for {cal.model_id}, not {model_id}: fit one "
                         f"with `whales evaluate --model {model_id} --fit-calibration {path}`")
    return cal


def fit_isotonic(scores: np.ndarray, correct: np.ndarray) -> ProbabilityMap:
    """Isotonic regression of correctness on score, stored as its step points."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(np.asarray(scores, np.float64), np.asarray(correct, np.float64))
    return ProbabilityMap(method="isotonic", x=tuple(float(v) for v in iso.X_thresholds_),
                          y=tuple(float(v) for v in iso.y_thresholds_))


def fit_platt(scores: np.ndarray, correct: np.ndarray) -> ProbabilityMap:
    """Platt scaling: logistic regression of correctness on score."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(correct, int)
    if y.min() == y.max():  # one class only: a flat map at the observed rate
        rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
        return ProbabilityMap(method="platt", a=0.0, b=math.log(rate / (1 - rate)))
    lr = LogisticRegression(C=1e4).fit(np.asarray(scores, np.float64).reshape(-1, 1), y)
    return ProbabilityMap(method="platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def expected_calibration_error(prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins: sum over bins of |mean(prob) - accuracy| weighted by bin size."""
    prob, correct = np.asarray(prob, np.float64), np.asarray(correct, np.float64)
    if len(prob) == 0:
        return 0.0
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(prob[sel].mean() - correct[sel].mean())
    return float(ece)
