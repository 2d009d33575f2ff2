"""Re-identification metrics over query records: Kaggle MAP@5, top-k (fused and global embedding
alone), open-set rates and MAP@5 with the `new_individual` label, species accuracy, probability
calibration and coverage at 98 % precision; and the fit of the fusion (linear weights or the
learned logistic fusion), the open-set rule and the probability map on calibration-split records."""

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
from whales_identify.reid.fusion import (
    candidate_features,
    fit_logistic_fusion,
    fit_new_individual_model,
    top_two,
)
from whales_identify.reid.matching import Scores, probability_inputs, rank

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



def coverage_at_precision(prob: np.ndarray, correct: np.ndarray, precision: float = 0.98) -> float:
    """Largest share of queries that can be auto-matched (highest probability first, ties kept
    together) while the top-1 stays right for >= `precision` of them."""
    prob, correct = np.asarray(prob, np.float64), np.asarray(correct, bool)
    if len(prob) == 0:
        return 0.0
    order = np.argsort(-prob, kind="stable")
    p, c = prob[order], correct[order]
    hits = np.cumsum(c)
    n = np.arange(1, len(p) + 1)
    ends = np.r_[p[1:] != p[:-1], True]  # cut only between different probabilities
    ok = ends & (hits >= precision * n - 1e-9)
    return float(n[ok].max() / len(p)) if ok.any() else 0.0


# ------------------------------------------------------------------------------------- metrics
def _ranked(q: QueryRecord, cal: Calibration | FusionWeights) -> tuple[list[str], np.ndarray]:
    return _top5(q, cal.fuse(q.scores.cos, q.scores.vote, q.scores.inliers))


def _top5(q: QueryRecord, fused: np.ndarray) -> tuple[list[str], np.ndarray]:
    order = np.argsort(-fused, kind="stable")[:5]
    return [q.scores.individual_ids[i] for i in order], fused[order]


def _global_ranked(q: QueryRecord) -> list[str]:
    s = q.scores
    return [s.individual_ids[i] for i in np.argsort(-s.cos, kind="stable")[:5]]


def _open_list(labels: list[str], scores: np.ndarray, flagged: bool, cal: Calibration) -> list[str]:
    """The ranked list with `new_individual` in it: the threshold rule inserts it before the first
    candidate below the threshold (Happywhale); the probability rule puts it first when the query
    is flagged new, and leaves it out otherwise (what a client of the API reads)."""
    if cal.open_set_rule == "threshold":
        return with_new_label(labels, list(scores), cal.new_individual_threshold)
    return [NEW, *labels[:4]] if flagged else list(labels)


def compute_metrics(records: Sequence[QueryRecord], calibration: Any) -> dict[str, Any]:
    """Closed-set, open-set, species and calibration metrics for one set of query records.

    `calibration`: a `Calibration` (or a `Catalog`, whose calibration is used)."""
    cal: Calibration = getattr(calibration, "calibration", calibration)
    known = [q for q in records if q.mode == "known"]
    new = [q for q in records if q.mode == "new"]
    out: dict[str, Any] = {"n_queries": len(known), "n_individuals":
                           len({q.individual_id for q in known})}
    ranked = [_ranked(q, cal) for q in known]
    truth = [q.individual_id for q in known]
    labels = [r[0] for r in ranked]
    out["top1"] = top_k_accuracy(labels, truth, 1)
    out["top5"] = top_k_accuracy(labels, truth, 5)
    out["map5"] = map_at_5(labels, truth)
    glob = [_global_ranked(q) for q in known]
    out["top1_global"] = top_k_accuracy(glob, truth, 1)
    out["top5_global"] = top_k_accuracy(glob, truth, 5)
    out["map5_global"] = map_at_5(glob, truth)
    results = [rank(q.scores, cal, 5) for q in records]
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
        out["coverage_at_98"] = coverage_at_precision(prob, correct, 0.98)
    if cal.open_set_rule != "none":
        pred_new = [m.is_new_individual for m in results]
        is_new = [q.mode == "new" for q in records]
        tp = sum(p and t for p, t in zip(pred_new, is_new, strict=True))
        fp = sum(p and not t for p, t in zip(pred_new, is_new, strict=True))
        fn = sum((not p) and t for p, t in zip(pred_new, is_new, strict=True))
        open_lists, open_truth = [], []
        for q, flagged in zip(records, pred_new, strict=True):
            labs, sc = _ranked(q, cal)
            open_lists.append(_open_list(labs, sc, flagged, cal))
            open_truth.append(NEW if q.mode == "new" else q.individual_id)
        out["open_set"] = {
            "rule": cal.open_set_rule, "n_new_queries": len(new), "n_known_queries": len(known),
            "threshold": cal.new_individual_threshold if cal.open_set_rule == "threshold" else None,
            "target": cal.new_probability_target if cal.open_set_rule == "probability" else None,
            "new_rate_on_known": fp / len(known) if known else 0.0,
            "new_precision": tp / (tp + fp) if tp + fp else 0.0,
            "new_recall": tp / (tp + fn) if tp + fn else 0.0,
        }
        if new:
            out["open_set"]["map5_with_new_label"] = map_at_5(open_lists, open_truth)
    secs = [q.seconds for q in records]
    out["seconds_per_query_match"] = float(np.mean(secs)) if secs else 0.0
    return out


def report(records: Sequence[QueryRecord], catalog: Any) -> dict[str, Any]:
    """Metrics overall, per source and per species, for records of one split (`catalog`: a
    `Calibration` or a `Catalog`)."""
    out = compute_metrics(records, catalog)
    for key, attr in (("per_source", "source"), ("per_species", "species")):
        groups: dict[str, list[QueryRecord]] = {}
        for q in records:
            groups.setdefault(getattr(q, attr), []).append(q)
        out[key] = {g: compute_metrics(qs, catalog) for g, qs in sorted(groups.items())}
    return out


# ------------------------------------------------------------------------------------- fitting
def target_for_rate(p_new_known: np.ndarray, rate: float) -> float:
    """The lowest P(new) target that flags (P(new) >= target) at most `rate` of these known
    queries; just above the largest P(new) when `rate` is 0."""
    p = np.sort(np.asarray(p_new_known, np.float64))[::-1]
    if not len(p):
        return 0.5
    k = int(math.floor(rate * len(p) + 1e-9))  # queries that may be flagged
    if k >= len(p):
        return float(p[-1])
    return float(np.nextafter(p[k], np.inf))  # p[k] and everything below stay "known"


def threshold_for_rate(top_known: np.ndarray, rate: float) -> float:
    """The highest fused-score threshold that flags (top-1 score < threshold) at most `rate` of
    these known queries: the threshold rule's counterpart of `target_for_rate`."""
    s = np.sort(np.asarray(top_known, np.float64))
    s = s[np.isfinite(s)]
    if not len(s):
        return -math.inf
    k = int(math.floor(rate * len(s) + 1e-9))  # queries that may be flagged
    if k >= len(s):
        return float(np.nextafter(s[-1], np.inf))
    return float(s[k])  # strictly below s[k] is "new": at most k queries (ties stay known)


def _top_probability_input(q: QueryRecord, fused: np.ndarray, cal: Calibration) -> float:
    """What the probability map reads for the query's top-1 (as `matching.rank` computes it),
    from the query's fused scores."""
    if not len(fused):
        return -math.inf
    return float(probability_inputs(q.scores, cal, fused, np.isfinite(q.scores.cos))[int(np.argmax(fused))])


FUSIONS = ("logistic", "linear")
OPEN_SET_RULES = ("probability", "threshold")


def fit_calibration(records: Sequence[QueryRecord], model_id: str,
                    provenance: dict[str, Any] | None = None, *, fusion: str = "linear",
                    open_set: str = "threshold", new_target: float = 0.5,
                    new_rate_on_known: float | None = None) -> Calibration:
    """The fusion, the probability map and the open-set rule, on calibration-split records only.

    Args:
        fusion: "logistic" (conditional logistic regression over `fusion.FEATURES`) or "linear"
            (the earlier grid search of two weights for MAP@5).
        open_set: "probability" (new when P(new) >= `new_target`, P(new) fitted on known vs
            left-out queries) or "threshold" (fused top-1 below the score maximising open-set
            MAP@5 over the calibration queries).
        new_rate_on_known: fit the open-set cut to a share of known whales instead: with
            "probability" the lowest P(new) target, with "threshold" the highest fused-score
            threshold, that flags at most this share of the calibration split's KNOWN queries as
            new (a rate the biologist states, e.g. 0.15, made into a cut on data the report never
            sees; the MAP@5-optimal threshold flags ~40 % of known whales, and P(new) itself moves
            with the catalog, a share of known photos less so).
    """
    if fusion not in FUSIONS or open_set not in OPEN_SET_RULES:
        raise ValueError(f"fusion must be one of {FUSIONS}, open_set one of {OPEN_SET_RULES}")
    known = [q for q in records if q.mode == "known"]
    truth = [q.individual_id for q in known]
    prov = dict(provenance or {})
    if fusion == "logistic":
        groups = []
        for q in known:
            s = q.scores
            hit = [i for i, ind in enumerate(s.individual_ids) if ind == q.individual_id]
            if hit:
                groups.append((candidate_features(s.cos, s.vote, s.inliers), hit[0]))
        # its log-odds are relative within a query: the top-1's lead over the runner-up, not its
        # level, is what says the top-1 is right (docs/REID.md, coverage at 98 %)
        cal = Calibration(model_id=model_id, fusion="logistic", logistic=fit_logistic_fusion(groups),
                          probability_input="lead")
        prov["fit_logistic_queries"] = len(groups)
    else:
        best: tuple[float, FusionWeights] = (-1.0, FusionWeights())
        for wv in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):
            for wi in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
                w = FusionWeights(1.0, wv, wi)
                score = map_at_5([_ranked(q, w)[0] for q in known], truth)
                if score > best[0] + 1e-9:
                    best = (score, w)
        cal = Calibration(model_id=model_id, weights=best[1])
    # fused once per record; a record's candidates all have a finite cosine (`harness._reduce`),
    # so these are the scores `matching.rank` fuses for the query
    fused = [cal.fuse(q.scores.cos, q.scores.vote, q.scores.inliers) for q in records]
    top = [_top5(q, f) for q, f in zip(records, fused, strict=True)]
    top_score = np.array([sc[0] if len(sc) else -np.inf for _, sc in top])
    correct = np.array([bool(lab) and lab[0] == q.individual_id and q.mode == "known"
                        for (lab, _), q in zip(top, records, strict=True)])
    known_mask = np.array([q.mode == "known" for q in records])
    prov["fit_map5_closed"] = map_at_5([lab for (lab, _), k in zip(top, known_mask, strict=True) if k],
                                       truth)
    prob = fit_isotonic(np.array([_top_probability_input(q, f, cal) for q, f, k in
                                  zip(records, fused, known_mask, strict=True) if k]), correct[known_mask])
    threshold, new_model = -math.inf, None
    if open_set == "threshold" and new_rate_on_known is not None:
        threshold = threshold_for_rate(top_score[known_mask], new_rate_on_known)
        prov["new_rate_on_known_target"] = float(new_rate_on_known)
    elif open_set == "threshold":
        # maximise the Happywhale open-set MAP@5 over calibration queries
        truth_open = [NEW if q.mode == "new" else q.individual_id for q in records]
        cands = np.unique(np.quantile(top_score[np.isfinite(top_score)], np.linspace(0, 1, 101)))
        best_map = -1.0
        for thr in [-math.inf, *cands]:
            m = map_at_5([with_new_label(lab, list(sc), thr) for lab, sc in top], truth_open)
            if m > best_map + 1e-9:
                threshold, best_map = float(thr), m
        prov["fit_map5_open"] = best_map
    elif (~known_mask).any() and known_mask.any():
        new_model = fit_new_individual_model(np.stack([top_two(f) for f in fused]), ~known_mask)
        if new_rate_on_known is not None:
            p_known = [new_model.p_new(f) for f, k in zip(fused, known_mask, strict=True) if k]
            new_target = target_for_rate(np.array(p_known), new_rate_on_known)
            prov["new_rate_on_known_target"] = float(new_rate_on_known)
    prov.update({"n_calibration_queries": len(records),
                 "n_calibration_individuals": len({q.individual_id for q in records}),
                 "fusion": fusion, "open_set": open_set})
    return Calibration(model_id=model_id, weights=cal.weights, fusion=cal.fusion, logistic=cal.logistic,
                       probability_input=cal.probability_input,
                       new_individual_threshold=threshold, new_model=new_model,
                       new_probability_target=new_target, probability=prob, species_threshold=0.5,
                       provenance=prov, fitted=True)
