"""The re-identification evaluation harness (leave-one-out over a labelled manifest).

Protocol:
- Gallery: every cetacean photo with an individual id (of the selected sources).
- Closed-set ("known") queries: every photo of an individual with >= 2 photos, matched against all
  other photos, minus photos of the same encounter (burst frames; `data.encounter_key`).
- Open-set ("new") queries: one photo per individual with that whole individual removed from the
  gallery; the right answer is "new individual".
- Splits: individuals are split by `stable_fraction(group_key, salt)` into a *calibration* part
  (fusion weights, thresholds, probability map are fitted there) and a *report* part (metrics
  are reported there). No parameter is ever fitted on reported individuals.
- MAP@5 (Kaggle Happywhale): 1/rank of the first correct label in the top 5, else 0. In the
  open-set variant the label ``new_individual`` is inserted into each ranked list just before the
  first candidate whose fused score is below the threshold (as Happywhale submissions did).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whales_identify.calibrate import (
    Calibration,
    FusionWeights,
    expected_calibration_error,
    fit_isotonic,
)
from whales_identify.catalog import Catalog, MatchConfig, Scores
from whales_identify.data import ManifestRow, encounter_key, group_key, stable_fraction
from whales_identify.local_features import LocalFeatures, extract
from whales_identify.store import CatalogImage, InMemoryStore

NEW = "new_individual"
SPLIT_SALT = "reid-calibration-v1"
CALIBRATION_FRACTION = 0.3
KEEP = 40  # candidates kept per query for re-fusion (by each of the three scores)


def split_of(row: ManifestRow, salt: str = SPLIT_SALT, fraction: float = CALIBRATION_FRACTION) -> str:
    """'calibration' or 'report', decided per individual (never straddles)."""
    return "calibration" if stable_fraction(group_key(row), salt) < fraction else "report"


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


# ----------------------------------------------------------------------------- features & cache
def _cache_key(model_id: str, local: Any, rows: Sequence[ManifestRow], root: Path) -> str:
    h = hashlib.sha256(f"{model_id}|{local}".encode())
    for r in rows:
        st = (root / r.relpath).stat()
        h.update(f"{r.relpath}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:20]


def compute_features(rows: Sequence[ManifestRow], root: Path, embedder: Any, config: MatchConfig,
                     cache_dir: Path | None = None, progress: Callable[[int], None] | None = None
                     ) -> tuple[np.ndarray, list[LocalFeatures]]:
    """L2-normalised embeddings and local features for `rows`, cached as .npz under `cache_dir`."""
    from PIL import Image

    key = _cache_key(embedder.model_id, config.local, rows, root)
    path = cache_dir / f"features_{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as data:  # read each array once: NpzFile re-reads on every access
            off, kp, desc, emb = data["offsets"], data["kp"], data["desc"], data["emb"]
        local = [LocalFeatures(kp[off[i]:off[i + 1]], desc[off[i]:off[i + 1]]) for i in range(len(rows))]
        if progress:
            progress(len(rows))
        return emb, local
    embs, local = [], []
    batch = 16
    for s in range(0, len(rows), batch):
        ims = [Image.open(root / r.relpath).convert("RGB") for r in rows[s:s + batch]]
        embs.append(embedder(ims))
        local.extend(extract(im, config.local) for im in ims)
        if progress:
            progress(len(ims))
    emb = np.concatenate(embs) if embs else np.zeros((0, embedder.dim), np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        off = np.cumsum([0] + [len(lf.descriptors) for lf in local])
        np.savez(path, emb=emb, offsets=off,
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


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    records: list[QueryRecord] = field(repr=False)
    calibration: Calibration = field(repr=False)


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
                   progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[str, Any]:
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

    Returns:
        The metrics dictionary written to reports/metrics_latest.json.
    """
    from whales_identify.calibrate import load_calibration, save_calibration
    from whales_identify.data import manifest_hash, read_manifest

    config = config or MatchConfig()
    rows = select_rows(read_manifest(manifest), sources)
    noop: Callable[[str, int], Callable[[int], None]] = lambda label, total: (lambda n: None)  # noqa: E731
    progress = progress or noop
    emb, local = compute_features(rows, root, embedder, config, cache_dir, progress("features", len(rows)))
    cal = calibration or load_calibration()
    plan = limit_plan(plan_queries(rows), rows, limit)
    if fit_out is None:  # only the reported split is needed
        plan = [p for p in plan if split_of(rows[p[0]]) == "report"]
    catalog = build_catalog(rows, emb, local, embedder.model_id, config, cal)
    records = run_queries(catalog, rows, emb, local, plan, progress("queries", len(plan)))
    calib_records = [q for q in records if q.split == "calibration"]
    report_records = [q for q in records if q.split == "report"]
    digest = manifest_hash(manifest)
    if fit_out is not None:
        cal = fit_calibration(calib_records, embedder.model_id, provenance={
            "manifest_sha256": digest, "sources": sorted({r.source for r in rows}),
            "split": {"salt": SPLIT_SALT, "calibration_fraction": CALIBRATION_FRACTION,
                      "rule": "stable_fraction(group_key(row), salt) < fraction -> calibration"},
            "limit": limit, "config": _config_dict(config)})
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
        "model_id": embedder.model_id, "manifest_sha256": digest, "limit": limit,
        "sources": sorted({r.source for r in rows}), "gallery_images": len(rows),
        "gallery_individuals": len({r.individual_id for r in rows}),
        "config": _config_dict(config),
        "calibration": {"fitted": cal.fitted, "provenance": cal.provenance,
                        "weights": cal.to_dict()["weights"],
                        "new_individual_threshold": cal.to_dict()["new_individual_threshold"]},
        "seconds_per_image_features": t_feat_src,
        "report": report(report_records, catalog) if report_records else {},
    }
    if calib_records:
        out["calibration_split"] = compute_metrics(calib_records, catalog)
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
