"""Training, calibration and robustness runs for the embedded gate (used by `whales gate` and scripts).

`calibrate(...)`: split the manifest (no group in both parts) -> features (cached under
/tmp/gate_cache, never in the repository) -> out-of-fold scores inside the calibration part -> pick C
and the threshold there -> fit the head on the whole calibration part -> report on the test part.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from whales_identify.data import group_key, manifest_hash, read_manifest
from whales_identify.embed import Embedder
from whales_identify.gate.head import GateHead, fit_head
from whales_identify.images import load_image
from whales_identify.train import gate_calibration as gc
from whales_identify.train.gate_synthetic import (
    GENERATOR_VERSION,
    NEGATIVE_KINDS,
    augment,
    fin_view,
    negative_key,
    perturb,
    reframe,
    render_negative,
)
from whales_identify.transforms import CENTRE_CROP, LETTERBOX, frame

DEFAULT_CACHE = Path("/tmp/gate_cache")
CAL_SEED, TEST_SEED = 1001, 2002  # generated negatives: calibration and test never share a seed
SPLIT_SALT = "gate-v1"


@dataclass(frozen=True)
class GateItem:
    key: str  # relpath, or generated/<kind>/s<seed>_<i>
    source: str  # data source folder, or generated_<kind>
    label: bool
    group: str
    path: Path | None = None
    kind: str | None = None
    seed: int | None = None
    index: int | None = None
    species: str = ""

    def load(self) -> Image.Image:
        if self.path is not None:
            return load_image(self.path.read_bytes())
        assert self.kind is not None and self.seed is not None and self.index is not None
        return render_negative(self.kind, self.seed, self.index)

    def stamp(self) -> str:
        if self.path is not None:
            st = self.path.stat()
            return f"{st.st_size}:{int(st.st_mtime)}"
        return f"gen{GENERATOR_VERSION}"


def manifest_items(manifest: Path | str, root: Path | str) -> list[GateItem]:
    root = Path(root)
    return [GateItem(r.relpath, r.source, r.is_cetacean, group_key(r), path=root / r.relpath,
                     species=r.species) for r in read_manifest(manifest)]


def generated_items(n_per_kind: int, seed: int) -> list[GateItem]:
    return [GateItem(negative_key(k, seed, i), f"generated_{k}", False, negative_key(k, seed, i),
                     kind=k, seed=seed, index=i)
            for k in NEGATIVE_KINDS for i in range(n_per_kind)]


def split_items(items: Sequence[GateItem], test_fraction: float = 0.5,
                salt: str = SPLIT_SALT) -> tuple[list[GateItem], list[GateItem]]:
    mask = gc.split_groups([i.source for i in items], [i.group for i in items], test_fraction, salt)
    return ([i for i, t in zip(items, mask, strict=True) if not t],
            [i for i, t in zip(items, mask, strict=True) if t])


def resolve_cache_dir(cache_dir: Path | str | None = None) -> Path:
    return Path(cache_dir or DEFAULT_CACHE)


def extract_features(embedder: Embedder, items: Sequence[GateItem], view: str = "clean",
                     cache_dir: Path | str | None = None, progress: bool = True,
                     desc: str = "features", batch_size: int = 16,
                     framing: str = CENTRE_CROP) -> np.ndarray:
    """Raw pooled features (N, D) of `items` under `view`, then `framing`, cached per item.

    Views: "clean"; "aug<k>" (a random training view, seeded by item and k); "frame<k>" (a clean
    mirrored/cropped framing, seeded likewise); "fin<k>" (`gate_synthetic.fin_view`: tighter crop,
    tilt, scale, blur, exposure; seeded likewise); a perturbation name
    from `gate_synthetic.PERTURBATIONS` (the benchmark's fixed strength, seeded by item).
    Framing (`transforms.frame`) is applied last, as the gate applies it to an uploaded photo.
    """
    folder = resolve_cache_dir(cache_dir) / embedder.model_id
    folder.mkdir(parents=True, exist_ok=True)
    out = np.zeros((len(items), embedder.dim), np.float32)
    todo: list[tuple[int, Path]] = []
    tail = "" if framing == CENTRE_CROP else f"|{framing}"  # centre-crop caches keep their keys
    for n, item in enumerate(items):
        key = hashlib.sha1(f"{item.key}|{item.stamp()}|{view}{tail}".encode()).hexdigest()
        path = folder / f"{key}.npy"
        if path.is_file():
            out[n] = np.load(path)
        else:
            todo.append((n, path))
    bar = _progress(len(todo), desc) if progress and todo else None
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        images = frame([_view(items[n], view) for n, _ in chunk], framing)
        feats = embedder.features(images)
        for (n, path), f in zip(chunk, feats, strict=True):
            out[n] = f
            np.save(path, f)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def _view(item: GateItem, view: str) -> Image.Image:
    image = item.load()
    if view == "clean":
        return image
    if view.startswith("aug"):
        return augment(image, random.Random(f"aug:{view}:{item.key}"))
    if view.startswith("frame"):
        return reframe(image, random.Random(f"frame:{view}:{item.key}"))
    if view.startswith("fin"):
        return fin_view(image, random.Random(f"fin:{view}:{item.key}"))
    return perturb(image, view, random.Random(f"perturb:{view}:{item.key}"))


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False)


def source_weights(sources: Sequence[str], labels: Sequence[bool],
                   boost: dict[str, float] | None = None) -> np.ndarray:
    """Each source gets the same total weight within its class, and the two classes the same: the
    1,939 right-whale head crops must not drown out Happywhale or the fin crops. `boost` multiplies
    a source's share of its class (the class total stays the same)."""
    sources, labels = list(sources), [bool(x) for x in labels]
    boost = boost or {}
    counts: dict[tuple[bool, str], int] = {}
    for s, y in zip(sources, labels, strict=True):
        counts[(y, s)] = counts.get((y, s), 0) + 1
    per_class = {y: sum(boost.get(s, 1.0) for (yy, s) in counts if yy == y) for y in (True, False)}
    n = len(sources)
    w = np.array([n / 2 * boost.get(s, 1.0) / per_class[y] / counts[(y, s)]
                  for s, y in zip(sources, labels, strict=True)])
    return w / w.mean()


def calibrate(manifest: Path | str, root: Path | str, embedder: Embedder, *,
              test_fraction: float = 0.5, salt: str = SPLIT_SALT, n_generated_cal: int = 60,
              n_generated_test: int = 40, aug_views: int = 1, extra_views: int = 2,
              frame_views: int = 4, fin_views: int = 0, scarce_positive_boost: float = 1.0,
              hold_out_sources: Sequence[str] = (), reg_grid: Sequence[float] = (0.01, 0.1), hidden: int = 64,
              ensemble: int = 3, folds: int = 5, cache_dir: Path | str | None = None,
              progress: bool = True, framing: str = LETTERBOX,
              log: Callable[[str], None] = lambda _m: None) -> tuple[GateHead, dict[str, Any]]:
    """Train and calibrate a head; returns it (unsaved) and the report (test metrics on held-out data).

    `framing` (default: letterbox, the whole photo) is how every photo is framed before the backbone;
    it is stored with the head, and the gate frames uploads the same way.

    Nothing from the test part (images, individuals, bursts, generated seeds) is used to fit the head,
    to choose C or to choose the threshold.

    `hold_out_sources`: data sources (folder names) left out of training and threshold choice
    altogether, as a population the head has never seen; every one of their photos is scored and
    reported under `population_holdout`, beside the usual test part (which then lacks them).
    `fin_views`: `gate_synthetic.fin_view` views of every scarce real source (negatives too, so the
    view itself says nothing about the label); `scarce_positive_boost`: multiplies the share of each
    scarce positive source (all but the right-whale head crops) within the positive class.
    """
    from sklearn.model_selection import GroupKFold

    items = manifest_items(manifest, root)
    held = set(hold_out_sources)
    unknown = held - {i.source for i in items}
    if unknown:
        raise ValueError(f"no photos of source(s) {', '.join(sorted(unknown))} in {manifest}")
    population = [i for i in items if i.source in held]
    cal, test = split_items([i for i in items if i.source not in held], test_fraction, salt)
    cal += generated_items(n_generated_cal, CAL_SEED)
    test += generated_items(n_generated_test, TEST_SEED)
    log(f"split: {len(cal)} calibration items, {len(test)} test items (with generated negatives)")
    x_cal = extract_features(embedder, cal, "clean", cache_dir, progress, "calibration", framing=framing)
    y_cal = np.array([i.label for i in cal])
    g_cal = np.array([i.group for i in cal])
    cats = [gc.negative_category(i.source) for i in cal]
    # Training rows: every calibration image clean and in `aug_views` random views; the scarce real
    # sources (everything but the right-whale head crops and generated images) in `extra_views` more
    # degraded views and `frame_views` clean reframings (mirror + 65-95 % crop).
    counts = {s: sum(1 for i in cal if i.source == s) for s in {i.source for i in cal}}
    scarce = np.array([counts[i.source] <= 200 and i.path is not None for i in cal])
    rows = [np.arange(len(cal))]
    feats = [x_cal]
    views = [(f"aug{k}", k < aug_views) for k in range(aug_views + extra_views)]
    views += [(f"frame{k}", False) for k in range(frame_views)]  # clean reframings of scarce sources
    views += [(f"fin{k}", False) for k in range(fin_views)]
    for view, everyone in views:
        idx = np.arange(len(cal)) if everyone else np.flatnonzero(scarce)
        rows.append(idx)
        feats.append(extract_features(embedder, [cal[i] for i in idx], view, cache_dir, progress,
                                      f"calibration {view}", framing=framing))
    row_idx = np.concatenate(rows)
    x_all = np.concatenate(feats)
    y_all = y_cal[row_idx]
    boost = {i.source: scarce_positive_boost for i, s in zip(cal, scarce, strict=True) if s and i.label}
    w_all = source_weights([cal[i].source for i in row_idx], y_all.tolist(), boost)
    row_group = g_cal[row_idx]

    c_grid = reg_grid
    oof: dict[float, np.ndarray] = {c: np.zeros(len(cal)) for c in c_grid}
    for k, (_, val_idx) in enumerate(GroupKFold(n_splits=folds).split(x_cal, y_cal, g_cal)):
        val_groups = set(g_cal[val_idx].tolist())
        train_mask = np.array([g not in val_groups for g in row_group])
        for c in c_grid:
            head = fit_head(x_all[train_mask], y_all[train_mask], embedder.model_id, c,
                            sample_weight=w_all[train_mask], hidden=hidden, ensemble=ensemble)
            oof[c][val_idx] = head.score(x_cal[val_idx])
        log(f"fold {k + 1}/{folds} done")
    choices = {}
    for c in c_grid:
        pick = gc.pick_threshold(oof[c], y_cal, cats)
        choices[c] = (pick["calibration_tpr"], gc.roc_auc(oof[c], y_cal) or 0.0, pick)
    best_c = max(c_grid, key=lambda c: (choices[c][0], choices[c][1]))
    pick = choices[best_c][2]
    log(f"reg={best_c}: threshold {pick['threshold']:.4f}, calibration TPR {pick['calibration_tpr']:.4f}")

    head = fit_head(x_all, y_all, embedder.model_id, best_c, sample_weight=w_all, hidden=hidden,
                    ensemble=ensemble)
    head.meta = {"framing": framing}
    x_test = extract_features(embedder, test, "clean", cache_dir, progress, "test", framing=framing)
    t_scores = head.score(x_test)
    threshold = float(pick["threshold"])
    result = gc.evaluate_scores(t_scores, [i.label for i in test], [i.source for i in test],
                                [i.group for i in test], threshold)
    report = {
        "feature_model_id": embedder.model_id,
        "framing": framing,
        "manifest_sha256": manifest_hash(manifest),
        "split": {"salt": salt, "test_fraction": test_fraction, "unit": "whales_identify.data.group_key",
                  "calibration": _counts(cal), "test": _counts(test),
                  "generated_seeds": {"calibration": CAL_SEED, "test": TEST_SEED},
                  "shared_groups": len({i.group for i in cal} & {i.group for i in test})},
        "training": {"head": head.kind, "hidden_per_member": hidden, "ensemble": ensemble, "reg": best_c,
                     "reg_grid": list(c_grid), "folds": folds, "aug_views": aug_views,
                     "extra_views_scarce_sources": extra_views,
                     "frame_views_scarce_sources": frame_views,
                     "fin_views_scarce_sources": fin_views,
                     "scarce_positive_boost": scarce_positive_boost,
                     "hold_out_sources": sorted(held),
                     "rows": int(len(x_all)),
                     "oof_by_reg": {str(c): {"tpr_at_pick": v[0], "roc_auc": v[1],
                                      "threshold": v[2]["threshold"]} for c, v in choices.items()}},
        "threshold_choice": pick,
        "borderline": list(gc.band_around(threshold)),
        "test": result,
    }
    if population:
        x_pop = extract_features(embedder, population, "clean", cache_dir, progress, "held-out population",
                                 framing=framing)
        report["population_holdout"] = population_report(population, head.score(x_pop), threshold,
                                                         test, t_scores)
    return head, report


def population_report(items: Sequence[GateItem], scores: np.ndarray, threshold: float,
                      test: Sequence[GateItem], test_scores: np.ndarray) -> dict[str, Any]:
    """Per held-out source: its rate on every photo at `threshold` (bootstrap by group and Wilson
    intervals), per species, ROC-AUC against the test part's negatives and hard negatives, and the
    lowest-scoring photos (names only)."""
    res = gc.evaluate_scores(scores, [i.label for i in items], [i.source for i in items],
                             [i.group for i in items], threshold)
    neg = np.array([not i.label for i in test])
    hard = np.array([gc.negative_category(i.source) == "hard" for i in test])
    out: dict[str, Any] = {}
    for source, entry in res["per_source"].items():
        m = np.array([i.source == source for i in items])
        s, mine = scores[m], [i for i in items if i.source == source]
        species: dict[str, Any] = {}
        for sp in sorted({i.species for i in mine}):
            hit = [bool(v >= threshold) for v, i in zip(s, mine, strict=True) if i.species == sp]
            species[sp or "(unknown)"] = {"n": len(hit), "correct": sum(hit), "rate": sum(hit) / len(hit)}
        positive = mine[0].label
        out[source] = {
            **{k: entry[k] for k in ("metric", "n", "n_groups", "correct", "rate", "ci95", "wilson95",
                                     "score_quantiles")},
            "roc_auc_vs_test_negatives": _auc(s, test_scores[neg]) if positive else None,
            "roc_auc_vs_test_hard_negatives": _auc(s, test_scores[hard]) if positive else None,
            "per_species": species,
            "worst": [[mine[k].key, round(float(s[k]), 4)] for k in np.argsort(s if positive else -s)[:8]],
        }
    return {"threshold": threshold, "per_source": out}


def _auc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    return gc.roc_auc(np.r_[positives, negatives], np.r_[np.ones(len(positives)), np.zeros(len(negatives))])


def _counts(items: Sequence[GateItem]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, Any]] = {}
    for i in items:
        e = out.setdefault(i.source, {"images": 0, "groups": set()})
        e["images"] += 1
        e["groups"].add(i.group)
    return {s: {"images": e["images"], "groups": len(e["groups"])} for s, e in sorted(out.items())}


def test_part(manifest: Path | str, root: Path | str, salt: str = SPLIT_SALT, test_fraction: float = 0.5,
              n_generated: int = 40) -> list[GateItem]:
    """The held-out items exactly as `calibrate` made them (same salt and fraction)."""
    _, test = split_items(manifest_items(manifest, root), test_fraction, salt)
    return test + generated_items(n_generated, TEST_SEED)


def cap_per_source(items: Sequence[GateItem], cap: int, salt: str = "cap") -> list[GateItem]:
    """At most `cap` items per source, a stable hash-ordered choice (bounds benchmark cost)."""
    by: dict[str, list[GateItem]] = {}
    for i in items:
        by.setdefault(i.source, []).append(i)
    out: list[GateItem] = []
    for grp in by.values():
        out += sorted(grp, key=lambda i: hashlib.sha1(f"{salt}:{i.key}".encode()).digest())[:cap]
    return out


def measure_cost(embedder: Embedder, head: GateHead, images: Sequence[Image.Image],
                 repeats: int = 3) -> dict[str, Any]:
    """Per-image seconds: head alone on shared features, and backbone + head (batch 1 and 8)."""
    import torch

    feats = embedder.features(frame(images[:2], head.framing))
    one = feats[:1]
    t0 = time.perf_counter()
    for _ in range(2000):
        head.score(one)
    head_s = (time.perf_counter() - t0) / 2000
    timings = {}
    for bs in (1, 8):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for start in range(0, len(images), bs):
                head.score(embedder.features(frame(images[start:start + bs], head.framing)))
            best = min(best, (time.perf_counter() - t0) / len(images))
        timings[f"backbone_plus_head_batch{bs}_s"] = best
    return {"head_only_s": head_s, **timings, "images": len(images),
            "image_sizes": sorted({f"{im.width}x{im.height}" for im in images}),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "note": "decode excluded; 2-core machine shared with other jobs, so an upper bound"}


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers worth keeping next to the threshold in the head's json."""
    test = report["test"]
    per = {s: {"metric": e["metric"], "rate": round(e["rate"], 4), "n": e["n"],
               "ci95": [round(v, 4) for v in e["ci95"]]} for s, e in test["per_source"].items()}
    return {"held_out_roc_auc": test["roc_auc"], "held_out_tpr": test["tpr"]["rate"],
            "held_out_tnr": test["tnr"]["rate"], "all_targets_met": test["all_targets_met"],
            "per_source": per}


def benchmark_robustness(items: Sequence[GateItem], embedder: Embedder, head: GateHead, threshold: float,
                         views: Sequence[str], cache_dir: Path | str | None = None,
                         progress: bool = True, n_boot: int = 300) -> dict[str, Any]:
    """TPR/TNR per source and negative category, for each perturbation of the held-out items."""
    out: dict[str, Any] = {}
    labels = [i.label for i in items]
    sources = [i.source for i in items]
    groups = [i.group for i in items]
    for view in views:
        feats = extract_features(embedder, items, view, cache_dir, progress, view, framing=head.framing)
        res = gc.evaluate_scores(head.score(feats), labels, sources, groups, threshold, n_boot=n_boot)
        out[view] = {
            "tpr": res["tpr"]["rate"], "tnr": res["tnr"]["rate"], "roc_auc": res["roc_auc"],
            "tpr_ci95": res["tpr"]["ci95"], "tnr_ci95": res["tnr"]["ci95"],
            "per_source": {s: {"metric": e["metric"], "rate": e["rate"], "n": e["n"], "ci95": e["ci95"]}
                           for s, e in res["per_source"].items()},
            "per_negative_category": {c: {"rate": e["rate"], "n": e["n"], "ci95": e["ci95"]}
                                      for c, e in res["per_negative_category"].items()},
        }
    return out
