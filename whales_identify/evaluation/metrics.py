"""Re-identification metrics over query records: Kaggle MAP@5, top-k, open-set MAP@5 with the
`new_individual` label, species accuracy, probability calibration; and the fit of the fusion
weights, open-set threshold and probability map on calibration-split records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from whales_identify.reid.calibrate import (
    Calibration,
    FusionWeights,
    expected_calibration_error,
    fit_isotonic,
)
from whales_identify.reid.catalog import Catalog, Scores

NEW = "new_individual"


def map_at_5(ranked: Sequence[Sequence[str]], truth: Sequence[str]) -> float:
    """Kaggle MAP@5: mean over queries of 1/rank of the first correct label within the top 5."""
    total = 0.0
    for labels, t in zip(ranked, truth, strict=True):
        for r, lab in enumerate(list(labels)[:5], start=1):
            if lab == t:
                total += 1.0 / r
                break
    return total / len(truth) if truth else 0.0


def top_k_accuracy(ranked: Sequence[Sequence[str]], truth: Sequence[str], k: int) -> float:
    return float(np.mean([t in list(r)[:k] for r, t in zip(ranked, truth, strict=True)])) if truth else 0.0


def with_new_label(labels: Sequence[str], scores: Sequence[float], threshold: float) -> list[str]:
    """Insert `new_individual` before the first candidate scoring below `threshold`."""
    out: list[str] = []
    inserted = False
    for lab, s in zip(labels, scores, strict=True):
        if not inserted and s < threshold:
            out.append(NEW)
            inserted = True
        out.append(lab)
    if not inserted:
        out.append(NEW)
    return out


@dataclass
class QueryRecord:
    relpath: str
    individual_id: str
    species: str
    source: str
    split: str
    mode: str  # "known" | "new"
    scores: Scores  # reduced to the candidates worth re-fusing
    seconds: float



# ------------------------------------------------------------------------------------- metrics
def _ranked(q: QueryRecord, w: FusionWeights) -> tuple[list[str], np.ndarray]:
    s = q.scores
    fused = w.fuse(s.cos, s.vote, s.inliers)
    order = np.argsort(-fused, kind="stable")[:5]
    return [s.individual_ids[i] for i in order], fused[order]


def compute_metrics(records: Sequence[QueryRecord], catalog: Catalog) -> dict[str, Any]:
    """Closed-set, open-set, species and calibration metrics for one set of query records."""
    cal = catalog.calibration
    known = [q for q in records if q.mode == "known"]
    new = [q for q in records if q.mode == "new"]
    out: dict[str, Any] = {"n_queries": len(known), "n_individuals":
                           len({q.individual_id for q in known})}
    ranked = [_ranked(q, cal.weights) for q in known]
    truth = [q.individual_id for q in known]
    labels = [r[0] for r in ranked]
    out["top1"] = top_k_accuracy(labels, truth, 1)
    out["top5"] = top_k_accuracy(labels, truth, 5)
    out["map5"] = map_at_5(labels, truth)
    results = [catalog.rank(q.scores, 5) for q in records]
    res_known = [m for m, q in zip(results, records, strict=True) if q.mode == "known"]
    species_ok = [m.species == q.species for m, q in zip(results, records, strict=True)]
    out["species_accuracy"] = float(np.mean(species_ok)) if records else 0.0
    unknown = [m.species == "unknown" for m in results]
    out["species_unknown_rate"] = float(np.mean(unknown)) if records else 0.0
    if res_known:
        prob = np.array([m.probability for m in res_known])
        correct = np.array([lab[0] == t if lab else False for lab, t in zip(labels, truth, strict=True)])
        out["probability_ece"] = expected_calibration_error(prob, correct)
        out["mean_probability"] = float(prob.mean())
    if new and math.isfinite(cal.new_individual_threshold):
        thr = cal.new_individual_threshold
        pred_new = [m.is_new_individual for m in results]
        is_new = [q.mode == "new" for q in records]
        tp = sum(p and t for p, t in zip(pred_new, is_new, strict=True))
        fp = sum(p and not t for p, t in zip(pred_new, is_new, strict=True))
        fn = sum((not p) and t for p, t in zip(pred_new, is_new, strict=True))
        open_lists, open_truth = [], []
        for q in records:
            labs, sc = _ranked(q, cal.weights)
            open_lists.append(with_new_label(labs, list(sc), thr))
            open_truth.append(NEW if q.mode == "new" else q.individual_id)
        out["open_set"] = {
            "n_new_queries": len(new), "n_known_queries": len(known), "threshold": thr,
            "new_precision": tp / (tp + fp) if tp + fp else 0.0,
            "new_recall": tp / (tp + fn) if tp + fn else 0.0,
            "map5_with_new_label": map_at_5(open_lists, open_truth),
        }
    secs = [q.seconds for q in records]
    out["seconds_per_query_match"] = float(np.mean(secs)) if secs else 0.0
    return out


def report(records: Sequence[QueryRecord], catalog: Catalog) -> dict[str, Any]:
    """Metrics overall, per source and per species, for records of one split."""
    out = compute_metrics(records, catalog)
    for key, attr in (("per_source", "source"), ("per_species", "species")):
        groups: dict[str, list[QueryRecord]] = {}
        for q in records:
            groups.setdefault(getattr(q, attr), []).append(q)
        out[key] = {g: compute_metrics(qs, catalog) for g, qs in sorted(groups.items())}
    return out


# ------------------------------------------------------------------------------------- fitting
def fit_calibration(records: Sequence[QueryRecord], model_id: str,
                    provenance: dict[str, Any] | None = None) -> Calibration:
    """Fusion weights (grid search for MAP@5), then the probability map and open-set threshold,
    all on calibration-split records only."""
    known = [q for q in records if q.mode == "known"]
    truth = [q.individual_id for q in known]
    best: tuple[float, FusionWeights] = (-1.0, FusionWeights())
    for wv in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):
        for wi in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
            w = FusionWeights(1.0, wv, wi)
            score = map_at_5([_ranked(q, w)[0] for q in known], truth)
            if score > best[0] + 1e-9:
                best = (score, w)
    w = best[1]
    top = [_ranked(q, w) for q in records]
    top_score = np.array([sc[0] if len(sc) else -np.inf for _, sc in top])
    correct = np.array([bool(lab) and lab[0] == q.individual_id and q.mode == "known"
                        for (lab, _), q in zip(top, records, strict=True)])
    known_mask = np.array([q.mode == "known" for q in records])
    prob = fit_isotonic(top_score[known_mask], correct[known_mask])
    # open-set threshold: maximise the Happywhale open-set MAP@5 over calibration queries
    truth_open = [NEW if q.mode == "new" else q.individual_id for q in records]
    cands = np.unique(np.quantile(top_score[np.isfinite(top_score)], np.linspace(0, 1, 101)))
    best_thr, best_map = -math.inf, -1.0
    for thr in [-math.inf, *cands]:
        lists = [with_new_label(lab, list(sc), thr) for lab, sc in top]
        m = map_at_5(lists, truth_open)
        if m > best_map + 1e-9:
            best_thr, best_map = float(thr), m
    prov = dict(provenance or {})
    prov.update({"fit_map5_closed": best[0], "fit_map5_open": best_map,
                 "n_calibration_queries": len(records),
                 "n_calibration_individuals": len({q.individual_id for q in records})})
    return Calibration(model_id=model_id, weights=w, new_individual_threshold=best_thr,
                       probability=prob, species_threshold=0.5, provenance=prov, fitted=True)
