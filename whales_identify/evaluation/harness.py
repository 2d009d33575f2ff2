"""The re-identification evaluation harness (leave-one-out over a labelled manifest).

Protocol:
- Gallery: every cetacean photo with an individual id (of the selected sources).
- Closed-set ("known") queries: every photo of an individual with >= 2 photos, matched against all
  other photos, minus photos of the same encounter (burst frames; `data.encounter_key`).
- Open-set ("new") queries: one photo per individual with that whole individual removed from the
  gallery; the right answer is "new individual".
- Splits: individuals are split by `stable_fraction(group_key, salt)` into a *calibration* part
  (fusion, open-set rule, probability map are fitted there) and a *report* part (metrics
  are reported there). No parameter is ever fitted on reported individuals. With a fit, the split
  is repeated with `seeds` salts on the same query records (`repeated.py`: mean ± SE).
- MAP@5 (Kaggle Happywhale): 1/rank of the first correct label in the top 5, else 0. In the
  open-set variant the label ``new_individual`` is inserted into each ranked list just before the
  first candidate whose fused score is below the threshold (as Happywhale submissions did).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whales_identify.data import ManifestRow, encounter_key, group_key, stable_fraction
from whales_identify.errors import WhalesError
from whales_identify.evaluation.metrics import (  # noqa: F401 (re-exported)
    NEW,
    QueryRecord,
    compute_metrics,
    fit_calibration,
    map_at_5,
    report,
    top_k_accuracy,
    with_new_label,
)
from whales_identify.evaluation.records import save_records
from whales_identify.evaluation.repeated import CALIBRATION_FRACTION, SPLIT_SALT, repeated_splits
from whales_identify.records.store import CatalogImage, InMemoryStore
from whales_identify.reid.calibrate import Calibration
from whales_identify.reid.catalog import Catalog, MatchConfig, Scores
from whales_identify.reid.local_features import LocalFeatures, extract


class TrainedOnQueriesError(WhalesError):
    """The embedding model was trained on individuals that the evaluation would query."""


__all__ = [
    "NEW", "FitOptions", "QueryRecord", "TrainedOnQueriesError", "build_catalog", "compute_features",
    "compute_metrics",
    "fit_calibration", "limit_plan", "map_at_5", "plan_queries", "query_plan", "report", "run_evaluation",
    "run_queries", "select_rows", "split_of", "summarise", "top_k_accuracy", "with_new_label", "write_json",
]

KEEP = 40  # candidates kept per query for re-fusion (by each of the three scores)


def split_of(row: ManifestRow, salt: str = SPLIT_SALT, fraction: float = CALIBRATION_FRACTION) -> str:
    """'calibration' or 'report', decided per individual (never straddles)."""
    return "calibration" if stable_fraction(group_key(row), salt) < fraction else "report"


# ----------------------------------------------------------------------------- features & cache
def _cache_key(what: str, rows: Sequence[ManifestRow], root: Path) -> str:
    h = hashlib.sha256(what.encode())
    for r in rows:
        st = (root / r.relpath).stat()
        h.update(f"{r.relpath}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:20]


def compute_features(rows: Sequence[ManifestRow], root: Path, embedder: Any, config: MatchConfig,
                     cache_dir: Path | None = None, progress: Callable[[int], None] | None = None
                     ) -> tuple[np.ndarray, list[LocalFeatures]]:
    """L2-normalised embeddings and local features for `rows`, cached as .npz under `cache_dir`
    (separately: local features do not depend on the embedding model, so comparing models, or
    the fold models of a cross-fitted evaluation, extracts them once)."""
    from PIL import Image

    emb_path = local_path = None
    if cache_dir is not None:
        emb_path = cache_dir / f"emb_{_cache_key(embedder.model_id, rows, root)}.npz"
        local_path = cache_dir / f"local_{_cache_key(repr(config.local), rows, root)}.npz"
    emb = local = None
    if emb_path is not None and emb_path.is_file():
        with np.load(emb_path) as data:
            emb = data["emb"]
    if local_path is not None and local_path.is_file():
        with np.load(local_path) as data:  # read each array once: NpzFile re-reads on every access
            off, kp, desc = data["offsets"], data["kp"], data["desc"]
        local = [LocalFeatures(kp[off[i]:off[i + 1]], desc[off[i]:off[i + 1]]) for i in range(len(rows))]
    if emb is not None and local is not None:
        if progress:
            progress(len(rows))
        return emb, local
    embs, new_local = [], []
    batch = 16
    for s in range(0, len(rows), batch):
        ims = [Image.open(root / r.relpath).convert("RGB") for r in rows[s:s + batch]]
        if emb is None:
            embs.append(embedder(ims))
        if local is None:
            new_local.extend(extract(im, config.local) for im in ims)
        if progress:
            progress(len(ims))
    if emb is None:
        emb = np.concatenate(embs) if embs else np.zeros((0, embedder.dim), np.float32)
        if emb_path is not None:
            emb_path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(emb_path, emb=emb)
    if local is None:
        local = new_local
        if local_path is not None:
            local_path.parent.mkdir(parents=True, exist_ok=True)
            off = np.cumsum([0] + [len(lf.descriptors) for lf in local])
            np.savez(local_path, offsets=off,
                     kp=np.concatenate([lf.keypoints for lf in local]) if local else np.zeros((0, 2)),
                     desc=np.concatenate([lf.descriptors for lf in local]) if local else np.zeros((0, 128)))
    return emb, local


def build_catalog(rows: Sequence[ManifestRow], emb: np.ndarray, local: Sequence[LocalFeatures],
                  model_id: str, config: MatchConfig, calibration: Calibration) -> Catalog:
    """An in-memory catalog whose image ids are the manifest relpaths."""
    catalog = Catalog(InMemoryStore(), model_id, config=config, calibration=calibration)
    catalog.add_images(CatalogImage(image_id=r.relpath, individual_id=r.individual_id, species=r.species,
                                    model_id=model_id, embedding=emb[i], keypoints=local[i].keypoints,
                                    descriptors=local[i].descriptors, filename=r.relpath, source=r.source)
                       for i, r in enumerate(rows))
    return catalog


# ------------------------------------------------------------------------------------- queries
def _reduce(s: Scores) -> Scores:
    keep: set[int] = set()
    for arr in (s.cos, s.vote, s.inliers):
        keep.update(int(i) for i in np.argsort(-arr)[:KEEP])
    keep.update(int(i) for i in np.flatnonzero(s.inliers > 0))
    idx = np.array(sorted(i for i in keep if np.isfinite(s.cos[i])), np.int64)
    return Scores([s.individual_ids[i] for i in idx], [s.species[i] for i in idx], s.cos[idx],
                  s.vote[idx], s.inliers[idx], s.ref_image[idx], s.image_ids, s.neighbour_species)


def plan_queries(rows: Sequence[ManifestRow], open_set: bool = True) -> list[tuple[int, str]]:
    """(row index, mode) pairs: all photos of individuals with >= 2 photos ('known'), and the
    first photo of every individual ('new', whole individual left out)."""
    count: dict[str, int] = {}
    for r in rows:
        count[r.individual_id] = count.get(r.individual_id, 0) + 1
    plan = [(i, "known") for i, r in enumerate(rows) if count[r.individual_id] >= 2]
    if open_set:
        seen: set[str] = set()
        for i, r in enumerate(rows):
            if r.individual_id not in seen:
                seen.add(r.individual_id)
                plan.append((i, "new"))
    return plan


def run_queries(catalog: Catalog, rows: Sequence[ManifestRow], emb: np.ndarray,
                local: Sequence[LocalFeatures], plan: Sequence[tuple[int, str]],
                progress: Callable[[int], None] | None = None) -> list[QueryRecord]:
    by_encounter: dict[str, list[str]] = {}
    by_individual: dict[str, list[str]] = {}
    for r in rows:
        by_encounter.setdefault(encounter_key(r), []).append(r.relpath)
        by_individual.setdefault(r.individual_id, []).append(r.relpath)
    out = []
    for i, mode in plan:
        r = rows[i]
        exclude = by_individual[r.individual_id] if mode == "new" else \
            [r.relpath, *by_encounter[encounter_key(r)]]
        t0 = time.perf_counter()
        s = catalog.score(emb[i], local[i], exclude=exclude)
        dt = time.perf_counter() - t0
        out.append(QueryRecord(r.relpath, r.individual_id, r.species, r.source, split_of(r), mode,
                               _reduce(s), dt))
        if progress:
            progress(1)
    return out


def write_json(data: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------------- the run
def select_rows(rows: Sequence[ManifestRow], sources: Sequence[str] | None = None) -> list[ManifestRow]:
    """Gallery rows: cetacean photos with an individual id (optionally of some sources only)."""
    return [r for r in rows if r.is_cetacean and r.individual_id and (not sources or r.source in sources)]


def limit_plan(plan: Sequence[tuple[int, str]], rows: Sequence[ManifestRow], limit: int | None
               ) -> list[tuple[int, str]]:
    """At most `limit` queries per (source, mode, split), a deterministic subset (hashed relpath)."""
    if not limit:
        return list(plan)
    groups: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    for i, mode in plan:
        groups.setdefault((rows[i].source, mode, split_of(rows[i])), []).append((i, mode))
    out: list[tuple[int, str]] = []
    for items in groups.values():
        items = sorted(items, key=lambda p: stable_fraction(rows[p[0]].relpath, "query-subset"))
        out.extend(items[:limit])
    return sorted(out)


def run_evaluation(manifest: Path, root: Path, embedder: Any, *, sources: Sequence[str] | None = None,
                   limit: int | None = None, config: MatchConfig | None = None,
                   calibration: Calibration | None = None, fit_out: Path | None = None,
                   cache_dir: Path | None = None,
                   progress: Callable[[str, int], Callable[[int], None]] | None = None,
                   trained_on: Sequence[str] | None = None, fit: FitOptions | None = None
                   ) -> dict[str, Any]:
    """Build a leave-one-out catalog from a manifest, run the queries, report metrics.

    Args:
        manifest / root: the labelled photos.
        embedder: the global embedding model (`Embedder`).
        sources: only these sources (folder names), else all.
        limit: at most this many queries per source, mode and split (quick runs; the CI subset).
        config: matching parameters.
        calibration: used as is; ignored when `fit_out` is given.
        fit_out: fit a calibration on the calibration split and write it here first.
        cache_dir: where embeddings and local features are cached.
        progress: `progress(label, total)` returns an `update(n)` callback.
        trained_on: individuals the embedding model was trained on; a query of one of them is
            refused (`TrainedOnQueriesError`), never silently scored on training data.
        fit: how the calibration is fitted (fusion, open-set rule, repeated splits, records file).

    Returns:
        The metrics dictionary written to reports/metrics_latest.json.
    """
    from whales_identify.data import read_manifest
    from whales_identify.reid.calibrate import resolve_calibration

    config = config or MatchConfig()
    rows = select_rows(read_manifest(manifest), sources)
    progress = progress or _no_progress
    plan = query_plan(rows, limit, fit=fit_out is not None)
    seen = sorted({rows[i].individual_id for i, _ in plan} & set(trained_on or ()))
    if seen:
        raise TrainedOnQueriesError(
            f"{embedder.model_id} was trained on {len(seen)} of the queried individuals (e.g. "
            f"{seen[:3]}): its metrics here would be measured on its own training data. Evaluate "
            f"the way it was trained with fold models instead (whales train --folds K "
            f"--hold-out-fold k, then whales evaluate --crossfit ...; docs/REID.md)")
    emb, local = compute_features(rows, root, embedder, config, cache_dir, progress("features", len(rows)))
    cal = calibration or resolve_calibration(embedder.model_id)
    catalog = build_catalog(rows, emb, local, embedder.model_id, config, cal)
    records = run_queries(catalog, rows, emb, local, plan, progress("queries", len(plan)))
    return summarise(records, catalog, rows, manifest, root, embedder, config, limit, fit_out, fit=fit)


def _no_progress(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def query_plan(rows: Sequence[ManifestRow], limit: int | None, fit: bool) -> list[tuple[int, str]]:
    """The (limited) queries; calibration-split ones only when a calibration is to be fitted."""
    plan = limit_plan(plan_queries(rows), rows, limit)
    return plan if fit else [p for p in plan if split_of(rows[p[0]]) == "report"]


@dataclass(frozen=True)
class FitOptions:
    """How `summarise` fits: the fusion and open-set rule (`metrics.fit_calibration`), how many
    calibration/report splits are repeated (`repeated.py`), where the query records go."""

    fusion: str = "linear"
    open_set: str = "threshold"
    seeds: int = 3
    records_out: Path | None = None
    new_rate_on_known: float | None = None  # fit the open-set cut (P(new) target or threshold) to this share


def summarise(records: Sequence[QueryRecord], catalog: Catalog, rows: Sequence[ManifestRow],
              manifest: Path, root: Path, embedder: Any, config: MatchConfig, limit: int | None,
              fit_out: Path | None, model_id: str | None = None,
              extra: dict[str, Any] | None = None, fit: FitOptions | None = None) -> dict[str, Any]:
    """Fit the calibration on calibration-split records (when `fit_out`), then the metrics
    dictionary of the reported split (and of the repeated splits). `model_id`: the model the
    calibration is for (default: the embedder's)."""
    from whales_identify.data import manifest_hash
    from whales_identify.reid.calibrate import save_calibration

    model_id = model_id or embedder.model_id
    fit = fit or FitOptions()
    if fit.records_out is not None:
        save_records(records, fit.records_out, meta={"model_id": model_id, "limit": limit,
                                                      "manifest_sha256": manifest_hash(manifest),
                                                      "config": _config_dict(config), **(extra or {})})
    calib_records = [q for q in records if q.split == "calibration"]
    report_records = [q for q in records if q.split == "report"]
    digest = manifest_hash(manifest)
    cal = catalog.calibration
    if fit_out is not None:
        cal = fit_calibration(calib_records, model_id, provenance={
            "manifest_sha256": digest, "sources": sorted({r.source for r in rows}),
            "split": {"salt": SPLIT_SALT, "calibration_fraction": CALIBRATION_FRACTION,
                      "rule": "stable_fraction(group_key(row), salt) < fraction -> calibration"},
            "limit": limit, "config": _config_dict(config), **(extra or {})},
            fusion=fit.fusion, open_set=fit.open_set, new_rate_on_known=fit.new_rate_on_known)
        save_calibration(cal, fit_out)
        catalog.calibration = cal
    per_source: dict[str, list[ManifestRow]] = {}
    for r in rows:
        per_source.setdefault(r.source, []).append(r)
    t_feat_src = {src: _time_features(rs[:3], root, embedder, config) for src, rs in per_source.items()}
    t_feat = float(np.mean(list(t_feat_src.values()))) if t_feat_src else 0.0
    out: dict[str, Any] = {
        "protocol": "leave-one-out; burst frames of the query's encounter excluded; open set: one "
                    "photo per individual with the individual removed; reported split only "
                    "(individuals disjoint from the calibration split)",
        "model_id": model_id, "manifest_sha256": digest, "limit": limit,
        "sources": sorted({r.source for r in rows}), "gallery_images": len(rows),
        "gallery_individuals": len({r.individual_id for r in rows}),
        "config": _config_dict(config),
        "calibration": {k: v for k, v in cal.to_dict().items() if k != "probability"},
        "seconds_per_image_features": t_feat_src,
        "report": report(report_records, catalog) if report_records else {},
        **(extra or {}),
    }
    if calib_records:
        out["calibration_split"] = compute_metrics(calib_records, catalog)
    if fit_out is not None and fit.seeds > 1:
        out["repeated"] = repeated_splits(records, model_id, fit.seeds, fusion=fit.fusion,
                                          open_set=fit.open_set, sources=sorted({r.source for r in rows}),
                                          new_rate_on_known=fit.new_rate_on_known)
    if out["report"]:
        out["report"]["seconds_per_query_total"] = out["report"]["seconds_per_query_match"] + t_feat
        for src, m in out["report"]["per_source"].items():
            m["seconds_per_query_total"] = m["seconds_per_query_match"] + t_feat_src.get(src, t_feat)
    return out


def _config_dict(config: MatchConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)


def _time_features(rows: Sequence[ManifestRow], root: Path, embedder: Any, config: MatchConfig) -> float:
    """Seconds per image for embedding + local features (measured, uncached)."""
    from PIL import Image

    if not rows:
        return 0.0
    ims = [Image.open(root / r.relpath).convert("RGB") for r in rows]
    t0 = time.perf_counter()
    for im in ims:
        embedder([im])
        extract(im, config.local)
    return (time.perf_counter() - t0) / len(ims)
