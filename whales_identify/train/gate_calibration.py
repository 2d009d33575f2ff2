"""Leakage-free splits, threshold choice and honest metrics for the gate (pure numpy, testable by hand).

- `split_groups`: calibration/test parts where no group (individual, burst/encounter, same seal or
  shark, generated seed) is in both; balanced per source by ranking groups on a stable hash.
- `pick_threshold`: on calibration scores only: the lowest threshold meeting every negative category's
  TNR target (so the best TPR), with a margin half-way to the next score.
- `rate_with_ci`: a rate with a group-cluster bootstrap 95% interval and a Wilson interval (the
  bootstrap collapses to [1, 1] when every case is right; Wilson does not).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from whales_identify.data import stable_fraction

# Which negative sources are which category: each category has its own TNR target.
HARD_NEGATIVE_SOURCES = frozenset({"white_shark_fins", "seals_pieterburen"})
SCENE_SOURCES = frozenset({"intel_scenes"})
TNR_TARGETS = {"hard": 0.98, "scenes": 0.995, "generated": 0.995}
TPR_TARGET_OVERALL, TPR_TARGET_PER_SOURCE = 0.98, 0.97


def negative_category(source: str) -> str:
    if source in HARD_NEGATIVE_SOURCES:
        return "hard"
    if source in SCENE_SOURCES:
        return "scenes"
    if source.startswith("generated"):
        return "generated"
    return "other"


def split_groups(sources: Sequence[str], groups: Sequence[str], test_fraction: float = 0.5,
                 salt: str = "gate-v1") -> np.ndarray:
    """Boolean mask of the test part. Groups are whole; each source gives ~`test_fraction` of its groups.

    A group's source is the source of its first row, so a group that spans sources still stays whole.
    """
    group_source: dict[str, str] = {}
    for src, grp in zip(sources, groups, strict=True):
        group_source.setdefault(grp, src)
    by_source: dict[str, list[str]] = defaultdict(list)
    for grp, src in group_source.items():
        by_source[src].append(grp)
    test_groups: set[str] = set()
    for grps in by_source.values():
        ranked = sorted(grps, key=lambda g: stable_fraction(g, salt))
        n_test = int(round(len(ranked) * test_fraction))
        if len(ranked) == 1:  # a single group: the hash decides
            n_test = int(stable_fraction(ranked[0], salt) < test_fraction)
        test_groups.update(ranked[:n_test])
    return np.array([g in test_groups for g in groups], dtype=bool)


def pick_threshold(scores: np.ndarray, labels: np.ndarray, categories: Sequence[str],
                   targets: Mapping[str, float] = TNR_TARGETS) -> dict[str, Any]:
    """The lowest threshold (best TPR) whose TNR meets every category's target on these scores.

    Args:
        scores: calibration scores (out-of-fold), in [0, 1].
        labels: 1 for cetacean, 0 otherwise.
        categories: per row, the negative category (ignored for positives).
        targets: category -> TNR target; categories without a target use the strictest one.

    Returns:
        dict with `threshold`, the calibration TPR/TNR at it, and the limiting category.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    cats = np.asarray(categories)
    strictest = max(targets.values())
    need = 0.0
    limiting = None
    all_scores = np.sort(np.unique(scores))
    for cat in sorted(set(cats[~labels].tolist())):
        neg = np.sort(scores[~labels & (cats == cat)])[::-1]
        target = targets.get(cat, strictest)
        allowed = int(math.floor((1.0 - target) * len(neg) + 1e-9))
        if allowed >= len(neg):
            continue
        barrier = neg[allowed]  # the (allowed+1)-th highest negative must be rejected
        above = all_scores[all_scores > barrier]
        t = float((barrier + above[0]) / 2) if len(above) else float(min(1.0, barrier + 1e-6))
        if t > need:
            need, limiting = t, cat
    pos = scores[labels]
    neg_all = scores[~labels]
    return {
        "threshold": need,
        "limiting_category": limiting,
        "calibration_tpr": float(np.mean(pos >= need)) if len(pos) else float("nan"),
        "calibration_tnr": float(np.mean(neg_all < need)) if len(neg_all) else float("nan"),
        "targets": dict(targets),
    }


def band_around(threshold: float, width_logit: float = 2.0) -> tuple[float, float]:
    """The borderline band: `threshold` +/- `width_logit` in log-odds (odds x/÷ e^2 ~ 7.4)."""
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    logit = math.log(t / (1 - t))
    low = 1 / (1 + math.exp(-(logit - width_logit)))
    high = 1 / (1 + math.exp(-(logit + width_logit)))
    return round(low, 4), round(high, 4)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_with_ci(correct: np.ndarray, groups: Sequence[str], n_boot: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """Rate of `correct` with a 95% group-cluster bootstrap interval and a Wilson interval."""
    correct = np.asarray(correct, dtype=bool)
    n = len(correct)
    if n == 0:
        return {"n": 0, "rate": None, "ci95": None, "wilson95": None}
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    hits = np.bincount(inv, weights=correct.astype(float), minlength=len(uniq))
    sizes = np.bincount(inv, minlength=len(uniq)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))
    rates = hits[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    lo, hi = np.percentile(rates, [2.5, 97.5])
    k = int(correct.sum())
    return {"n": n, "n_groups": len(uniq), "correct": k, "rate": k / n,
            "ci95": [float(lo), float(hi)], "wilson95": list(wilson(k, n))}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    labels = np.asarray(labels).astype(bool)
    if labels.all() or (~labels).all():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, sources: Sequence[str],
                    groups: Sequence[str], threshold: float, n_boot: int = 1000) -> dict[str, Any]:
    """TPR per positive source, TNR per negative source and category, ROC-AUC, confusion, targets."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    src = np.asarray(sources)
    grp = np.asarray(groups)
    pred = scores >= threshold
    per_source: dict[str, Any] = {}
    for s in sorted(set(src.tolist())):
        m = src == s
        positive = bool(labels[m][0])
        correct = pred[m] if positive else ~pred[m]
        entry = rate_with_ci(correct, grp[m].tolist(), n_boot=n_boot)
        entry["metric"] = "TPR" if positive else "TNR"
        other = ~labels if positive else labels
        entry["roc_auc_vs_other_class"] = roc_auc(scores[m | other], labels[m | other])
        entry["score_quantiles"] = [float(q) for q in np.quantile(scores[m], [0.0, 0.05, 0.5, 0.95, 1.0])]
        if not positive:
            entry["category"] = negative_category(s)
        per_source[s] = entry
    per_category: dict[str, Any] = {}
    for cat in sorted({negative_category(s) for s in src[~labels].tolist()}):
        m = ~labels & np.array([negative_category(s) == cat for s in src.tolist()])
        per_category[cat] = rate_with_ci(~pred[m], grp[m].tolist(), n_boot=n_boot)
    overall_tpr = rate_with_ci(pred[labels], grp[labels].tolist(), n_boot=n_boot)
    overall_tnr = rate_with_ci(~pred[~labels], grp[~labels].tolist(), n_boot=n_boot)
    confusion = {"tp": int((pred & labels).sum()), "fn": int((~pred & labels).sum()),
                 "tn": int((~pred & ~labels).sum()), "fp": int((pred & ~labels).sum())}
    checks = {"tpr_overall>=0.98": _ge(overall_tpr["rate"], TPR_TARGET_OVERALL)}
    for s, e in per_source.items():
        if e["metric"] == "TPR":
            checks[f"tpr:{s}>=0.97"] = _ge(e["rate"], TPR_TARGET_PER_SOURCE)
    for cat, e in per_category.items():
        if cat in TNR_TARGETS:
            checks[f"tnr:{cat}>={TNR_TARGETS[cat]}"] = _ge(e["rate"], TNR_TARGETS[cat])
    return {"threshold": threshold, "roc_auc": roc_auc(scores, labels), "tpr": overall_tpr,
            "tnr": overall_tnr, "confusion": confusion, "per_source": per_source,
            "per_negative_category": per_category, "targets_met": checks,
            "all_targets_met": all(v for v in checks.values() if v is not None)}


def _ge(value: float | None, target: float) -> bool | None:
    return None if value is None else bool(value >= target)
