"""Cross-fitted evaluation of fine-tuned embeddings (`whales evaluate --crossfit ID --crossfit ID`).

A model fine-tuned on some individuals cannot be evaluated on them. With K fold models (each
trained by `whales train --folds K --hold-out-fold k`, which leaves out the individuals of fold
k), every query is scored by the one model that never saw its individual: the whole gallery is
embedded with that model (the other individuals in it are distractors, as in real use) and the
query is matched as usual. The records of all folds are then pooled: the fusion weights, open-set
threshold and probability map are fitted on the calibration split, the metrics reported on the
other split, exactly as for an untrained model. Every model's config lists the individuals it
was trained on, and a query whose individual is among them is refused, not scored.

The numbers estimate a model trained the same way on all individuals (the one shipped), applied
to individuals it never saw; the calibration fitted here is written for that model's id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from whales_identify.data import fold_of
from whales_identify.errors import WhalesError
from whales_identify.evaluation.harness import (
    FitOptions,
    QueryRecord,
    _no_progress,
    build_catalog,
    compute_features,
    query_plan,
    run_queries,
    select_rows,
    summarise,
)
from whales_identify.reid.catalog import MatchConfig


class CrossFitError(WhalesError):
    """The fold models do not form a valid cross-fit (missing folds, or a model saw a query)."""


def check_folds(metas: Sequence[dict[str, Any]], *, partial: bool = False) -> tuple[int, str]:
    """(K, salt) of a set of fold models: same K and salt, each fold held out once; all K folds
    unless `partial` (then only the held-out folds' queries can be scored)."""
    trains = [m.get("train") or {} for m in metas]
    ks = {t.get("folds") for t in trains}
    salts = {t.get("fold_salt") for t in trains}
    if len(ks) != 1 or len(salts) != 1:
        raise CrossFitError(f"fold models disagree on folds/salt: {sorted(map(str, ks))}, "
                            f"{sorted(map(str, salts))}")
    k = int(next(iter(ks)) or 0)
    held = sorted(t.get("hold_out_fold") for t in trains if t.get("hold_out_fold") is not None)
    complete = held == list(range(k))
    some = bool(held) and len(held) == len(trains) and len(set(held)) == len(held) and held[-1] < k
    if k < 2 or not (complete or (partial and some)):
        raise CrossFitError(f"need one model per fold 0..{k - 1} (each trained with --hold-out-fold), "
                            f"got held-out folds {held}")
    return k, str(next(iter(salts)))


def run_crossfit_evaluation(manifest: Path, root: Path, embedders: Sequence[Any],
                            metas: Sequence[dict[str, Any]], *, calibrate_for: str,
                            sources: Sequence[str] | None = None, limit: int | None = None,
                            config: MatchConfig | None = None, fit_out: Path | None = None,
                            cache_dir: Path | None = None,
                            progress: Callable[[str, int], Callable[[int], None]] | None = None,
                            fit: FitOptions | None = None, partial: bool = False) -> dict[str, Any]:
    """Pooled out-of-fold metrics of `embedders` (fold models, `metas` their training configs);
    the calibration is fitted (when `fit_out`) for the model id `calibrate_for`.

    `partial`: fewer models than folds (e.g. only fold 0's model is trained yet): only the queries
    of the held-out folds present are scored, the other folds' photos stay in the gallery as
    distractors. A smaller sample of the same protocol, labelled as such in the output."""
    from whales_identify.data import read_manifest
    from whales_identify.reid.calibrate import Calibration, resolve_calibration

    config = config or MatchConfig()
    progress = progress or _no_progress
    folds, salt = check_folds(metas, partial=partial)
    rows = select_rows(read_manifest(manifest), sources)
    plan = query_plan(rows, limit, fit=fit_out is not None)
    cal = Calibration(model_id=calibrate_for) if fit_out else resolve_calibration(calibrate_for)
    records: list[QueryRecord] = []
    catalog = None
    for embedder, meta in zip(embedders, metas, strict=True):
        fold = int(meta["train"]["hold_out_fold"])
        mine = [p for p in plan if fold_of(rows[p[0]], folds, salt) == fold]
        seen = set(meta.get("training_individuals") or [])
        leaked = sorted({rows[i].individual_id for i, _ in mine if rows[i].individual_id in seen})
        if leaked:
            raise CrossFitError(f"{embedder.model_id} was trained on {len(leaked)} individual(s) of its "
                                f"held-out fold (e.g. {leaked[:3]}): not a valid cross-fit")
        emb, local = compute_features(rows, root, embedder, config, cache_dir,
                                      progress(f"features ({embedder.model_id})", len(rows)))
        catalog = build_catalog(rows, emb, local, embedder.model_id, config, cal)
        catalog.calibration = cal  # one calibration for all folds (fitted on their pooled records)
        records += run_queries(catalog, rows, emb, local, mine,
                               progress(f"queries (fold {fold})", len(mine)))
    assert catalog is not None
    extra = {"crossfit": {"folds": folds, "salt": salt, "fold_models": [e.model_id for e in embedders],
                          "protocol": "each query scored by the fold model that never saw its "
                                      "individual; records pooled across folds",
                          "scored_folds": sorted(int(m["train"]["hold_out_fold"]) for m in metas),
                          "partial": len(metas) < folds}}
    return summarise(records, catalog, rows, manifest, root, embedders[0], config, limit, fit_out,
                     model_id=calibrate_for, extra=extra, fit=fit)
