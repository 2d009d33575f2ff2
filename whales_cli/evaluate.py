"""`whales evaluate`: the leave-one-out re-identification harness (`whales_identify.evaluation`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from whales_cli._common import ModelsDir, emit_json, fail, stderr_is_tty
from whales_identify.errors import WhalesError
from whales_identify.models.entries import DEFAULT_REID_MODEL

DEFAULT_OUT = Path("reports") / "metrics_latest.json"


def evaluate(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest CSV with individual ids.")],
    root: Annotated[Path, typer.Option("--root", help="Folder the manifest's relpaths are relative to.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the metrics here.")] = None,
    model: Annotated[str, typer.Option("--model", help="Embedding model id.")] = DEFAULT_REID_MODEL,
    models_dir: ModelsDir = None,
    sources: Annotated[list[str] | None, typer.Option("--sources", help="Only these sources "
                                                      "(repeatable), e.g. noaa_right_whale_headcrops.")]
    = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N queries per source, mode and "
                                              "split.")]
    = None,
    calibration: Annotated[Path | None, typer.Option("--calibration", help="Calibration JSON (default: "
                                                     "the packaged one).")] = None,
    fit_calibration: Annotated[Path | None, typer.Option(
        "--fit-calibration", help="Fit weights/threshold/probabilities on the calibration split and "
        "write them here before reporting.")] = None,
    no_local: Annotated[bool, typer.Option("--no-local", help="Global embedding only.")] = False,
    vote_index_codes: Annotated[str | None, typer.Option(
        "--vote-index-codes", help="Codes of the faiss vote index, as WHALES_VOTE_INDEX_CODES sets "
        "them for the service (default: the library's; docs/REID.md, Scale).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Feature cache (default: "
                                                   "<tmp>/whales_reid_cache).")] = None,
    latest: Annotated[Path, typer.Option("--latest", help="Where the latest metrics are kept.")]
    = DEFAULT_OUT,
    crossfit: Annotated[list[str] | None, typer.Option(
        "--crossfit", help="Fold models of a cross-fit (repeatable, one per fold, each made by "
        "`whales train --folds K --hold-out-fold k`): every query is scored by the model that never "
        "saw its individual; --model is then the model the calibration is fitted for.")] = None,
    fusion: Annotated[str, typer.Option("--fusion", help="How a fit fuses the evidence: linear (two "
                                        "weights) or logistic (a learned fusion of cosine, ranks, vote "
                                        "and inliers; docs/REID.md).")] = "linear",
    open_set: Annotated[str, typer.Option("--open-set", help="How a fit decides 'new individual': "
                                          "threshold (fused score maximising open-set MAP@5) or "
                                          "probability (P(new) >= 0.5).")] = "threshold",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="With a fit: repeat the calibration/"
                                       "report split of individuals with this many salts and report "
                                       "mean ± SE.")] = 3,
    new_rate_on_known: Annotated[float | None, typer.Option(
        "--new-rate-on-known", min=0.0, max=1.0, help="Fit the open-set cut (the P(new) target, or "
        "the fused-score threshold) so that at most this share of the calibration split's known "
        "queries is called new (e.g. 0.15), instead of P(new) >= 0.5 or the MAP@5-optimal "
        "threshold.")] = None,
    partial_crossfit: Annotated[bool, typer.Option(
        "--partial-crossfit", help="Allow fewer --crossfit models than folds: only their held-out "
        "folds' queries are scored (a smaller sample of the same protocol).")] = False,
    records_out: Annotated[Path | None, typer.Option("--records-out", help="Also save every query's "
                                                     "candidate evidence here (.npz).")] = None,
    from_records: Annotated[list[Path] | None, typer.Option(
        "--from-records", help="Evaluate saved query records instead of matching again (refit in "
        "seconds); repeatable: the folds of one cross-fit, each run with --partial-crossfit, are "
        "pooled.")] = None,
) -> None:
    """Evaluate re-identification: top-1/top-5/MAP@5, open set, species, seconds per query."""
    from whales_identify.embed import create_embedder
    from whales_identify.evaluation.harness import FitOptions, run_evaluation, write_json
    from whales_identify.models._registry import trained_metadata
    from whales_identify.reid.calibrate import resolve_calibration
    from whales_identify.reid.catalog import MatchConfig

    if not manifest.is_file():
        fail(f"manifest not found: {manifest}")
    cache = cache_dir or Path(tempfile.gettempdir()) / "whales_reid_cache"
    config = MatchConfig(use_local=not no_local,
                         **({"ivf_codes": vote_index_codes} if vote_index_codes else {}))
    if fusion not in ("logistic", "linear") or open_set not in ("probability", "threshold"):
        fail("--fusion is logistic or linear, --open-set probability or threshold")
    fit = FitOptions(fusion=fusion, open_set=open_set, seeds=seeds, records_out=records_out,
                     new_rate_on_known=new_rate_on_known)
    try:
        if from_records:
            metrics = _from_records(from_records, model, calibration, fit_calibration, fit)
        elif crossfit:
            metrics = _crossfit(manifest, root, crossfit, model, models_dir, sources=sources,
                                limit=limit, config=config, fit_out=fit_calibration, cache_dir=cache,
                                fit=fit, partial=partial_crossfit)
        else:
            embedder = create_embedder(model, models_dir)  # ONNX Runtime when exported: same features
            cal = resolve_calibration(model, calibration) if calibration else None
            trained = trained_metadata(model, models_dir) or {}
            metrics = run_evaluation(manifest, root, embedder, sources=sources, limit=limit,
                                     config=config, calibration=cal, fit_out=fit_calibration,
                                     cache_dir=cache, progress=_bar,
                                     trained_on=trained.get("training_individuals"), fit=fit)
    except (WhalesError, OSError, ValueError) as exc:
        fail(str(exc))
    write_json(metrics, latest)
    if json_out is not None:
        write_json(metrics, json_out)
    emit_json(_summary(metrics))


def _from_records(paths: list[Path], model: str, calibration: Path | None, fit_out: Path | None,
                  fit: Any) -> dict[str, Any]:
    from whales_identify.evaluation.records import merge_records
    from whales_identify.evaluation.repeated import evaluate_records
    from whales_identify.reid.calibrate import resolve_calibration

    records, meta = merge_records(paths)
    model_id = str(meta.get("model_id") or model)
    cal = None if fit_out else resolve_calibration(model_id, calibration)
    out = evaluate_records(records, model_id, calibration=cal, fit_out=fit_out, fusion=fit.fusion,
                           open_set=fit.open_set, seeds=fit.seeds,
                           provenance={"records": [str(p) for p in paths], **meta},
                           new_rate_on_known=fit.new_rate_on_known)
    out.update({k: meta[k] for k in ("limit", "manifest_sha256", "crossfit") if k in meta})
    return out


def _crossfit(manifest: Path, root: Path, model_ids: list[str], calibrate_for: str,
              models_dir: Path | None, **kwargs: Any) -> dict[str, Any]:
    from whales_identify.embed import create_embedder
    from whales_identify.evaluation.crossfit import run_crossfit_evaluation
    from whales_identify.models._registry import trained_metadata

    embedders, metas = [], []
    for model_id in model_ids:
        embedders.append(create_embedder(model_id, models_dir))
        meta = trained_metadata(model_id, models_dir)
        if meta is None:
            fail(f"{model_id} is not a model made by `whales train` (no training config found)")
        metas.append(meta)
    return run_crossfit_evaluation(manifest, root, embedders, metas, calibrate_for=calibrate_for,
                                   progress=_bar, **kwargs)


def _bar(label: str, total: int) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="q" if label == "queries" else "img",
               disable=not stderr_is_tty())
    return bar.update


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    rep = metrics.get("report", {})
    keys = ("n_queries", "top1", "top5", "map5", "species_accuracy", "open_set",
            "seconds_per_query_total")
    out = {k: rep.get(k) for k in keys}
    out["per_source"] = {s: {k: m.get(k) for k in ("n_queries", "top1", "top5", "map5")}
                         for s, m in rep.get("per_source", {}).items()}
    return out
