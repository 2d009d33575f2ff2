"""Repeated calibration/report splits: the same query records, split by individual with several
salts, the calibration refitted on each calibration part and the metrics reported on the other.

One split of ~200 individuals into 30 % / 70 % leaves a standard error of ~0.02-0.03 on top-1;
choosing a method on one split selects noise. Methods are compared on the mean over the splits,
reported with its standard error (the spread of the split-to-split estimates / sqrt(n); the
splits share queries, so this is the variation due to the split, not a full sampling error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from whales_identify.data import stable_fraction
from whales_identify.evaluation.metrics import QueryRecord, compute_metrics, fit_calibration

SPLIT_SALT = "reid-calibration-v1"  # seed 0: the split every earlier report used
CALIBRATION_FRACTION = 0.3

# metric paths summarised over the splits (dotted: inside "open_set")
SUMMARISED = ("top1", "top5", "map5", "top1_global", "top5_global", "map5_global",
              "coverage_at_98", "probability_ece", "species_accuracy",
              "open_set.new_rate_on_known", "open_set.new_recall", "open_set.new_precision",
              "open_set.map5_with_new_label")


def salt_for(seed: int) -> str:
    return SPLIT_SALT if seed == 0 else f"{SPLIT_SALT}-s{seed}"


def split_of_individual(individual_id: str, salt: str = SPLIT_SALT,
                        fraction: float = CALIBRATION_FRACTION) -> str:
    """'calibration' or 'report' for an individual (the rule of `harness.split_of`: the group key
    of a row with an individual id is `id:<individual_id>`)."""
    return "calibration" if stable_fraction(f"id:{individual_id}", salt) < fraction else "report"


def resplit(records: Sequence[QueryRecord], salt: str) -> list[QueryRecord]:
    return [replace(q, split=split_of_individual(q.individual_id, salt)) for q in records]


def repeated_splits(records: Sequence[QueryRecord], model_id: str, seeds: int = 3, *,
                    fusion: str = "linear", open_set: str = "threshold",
                    sources: Sequence[str] | None = None,
                    new_rate_on_known: float | None = None) -> dict[str, Any]:
    """Fit on each split's calibration part, report on its report part, for seeds 0..seeds-1.

    Args:
        records: queries of both splits (an evaluation run with a calibration fit).
        sources: also summarise these sources separately (e.g. the right whale crops).
    Returns:
        {"seeds", "fusion", "open_set", "per_seed": [...], "mean_se": {metric: {mean, se, n}},
         "per_source": {source: {"mean_se": ...}}}
    """
    per_seed, per_source_seed = [], {s: [] for s in sources or ()}
    for seed in range(seeds):
        recs = resplit(records, salt_for(seed))
        calib = [q for q in recs if q.split == "calibration"]
        rep = [q for q in recs if q.split == "report"]
        cal = fit_calibration(calib, model_id, fusion=fusion, open_set=open_set,
                              new_rate_on_known=new_rate_on_known)
        m = compute_metrics(rep, cal)
        m["seed"], m["salt"] = seed, salt_for(seed)
        m["n_calibration_queries"] = len(calib)
        per_seed.append(m)
        for src in per_source_seed:
            sub = [q for q in rep if q.source == src]
            if sub:
                per_source_seed[src].append(compute_metrics(sub, cal))
    return {"seeds": seeds, "fusion": fusion, "open_set": open_set, "new_rate_on_known": new_rate_on_known,
            "calibration_fraction": CALIBRATION_FRACTION,
            "salts": [salt_for(s) for s in range(seeds)],
            "per_seed": [_compact(m) for m in per_seed], "mean_se": mean_se(per_seed),
            "per_source": {s: {"mean_se": mean_se(ms)} for s, ms in per_source_seed.items() if ms}}


def _get(m: dict[str, Any], path: str) -> float | None:
    cur: Any = m
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, (int, float)) else None


def mean_se(per_seed: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "se", "n"}}; se = sample std / sqrt(n) (0 with one split)."""
    out = {}
    for path in (*SUMMARISED, "n_queries", "n_individuals"):
        vals = [v for v in (_get(m, path) for m in per_seed) if v is not None and math.isfinite(v)]
        if vals:
            se = float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else 0.0
            out[path] = {"mean": float(np.mean(vals)), "se": se, "n": len(vals)}
    return out


def _compact(m: dict[str, Any]) -> dict[str, Any]:
    keep = {k: m[k] for k in ("seed", "salt", "n_queries", "n_individuals", "n_calibration_queries")
            if k in m}
    for path in SUMMARISED:
        v = _get(m, path)
        if v is not None:
            keep[path] = v
    return keep


def evaluate_records(records: Sequence[QueryRecord], model_id: str, *, calibration: Any = None,
                     fit_out: Any = None, fusion: str = "linear", open_set: str = "threshold",
                     seeds: int = 3, provenance: dict[str, Any] | None = None,
                     new_rate_on_known: float | None = None) -> dict[str, Any]:
    """Metrics from stored query records (`records.load_records`), without matching anything again.

    Fits a calibration on the records' calibration split and writes it to `fit_out` when given,
    else reports with `calibration`; the repeated splits need a fit.
    """
    from whales_identify.evaluation.metrics import report
    from whales_identify.reid.calibrate import save_calibration

    calib = [q for q in records if q.split == "calibration"]
    rep = [q for q in records if q.split == "report"]
    cal = calibration
    if fit_out is not None:
        cal = fit_calibration(calib, model_id, provenance=provenance, fusion=fusion, open_set=open_set,
                              new_rate_on_known=new_rate_on_known)
        save_calibration(cal, fit_out)
    if cal is None:
        raise ValueError("evaluating stored records needs a calibration or a fit")
    out: dict[str, Any] = {
        "model_id": model_id, "from_records": True,
        "calibration": {k: v for k, v in cal.to_dict().items() if k != "probability"},
        "report": report(rep, cal) if rep else {},
    }
    if calib:
        out["calibration_split"] = compute_metrics(calib, cal)
    if fit_out is not None and seeds > 1:
        out["repeated"] = repeated_splits(records, model_id, seeds, fusion=fusion, open_set=open_set,
                                          sources=sorted({q.source for q in records}),
                                          new_rate_on_known=new_rate_on_known)
    return out
