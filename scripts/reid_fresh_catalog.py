"""The "fresh catalog" protocol: what an outside client measures, through the public API only.

The real service is started on loopback (uvicorn, SQLite in a temporary folder, an empty catalog),
the photos of the chosen individuals are enrolled with `POST /v1/individuals/{id}/images`, and one
held-out photo of each queried individual is sent to `POST /v1/predict`. Some individuals are held
out entirely (never enrolled): their query's right answer is "new individual".

Which individuals are queried matters more than anything else here. A model fine-tuned on a whale
has seen it: the shipped default (`efficientnet_lite0.rightwhale_arcface_v1`) was trained on every
shared right whale, so on them this measures it on its training whales and says so
(`queried_individuals_seen_in_training`). Prefer `--model efficientnet_lite0.imagenet` (no
training) or a fold model (`--model efficientnet_lite0.rwonly_f0 --models-dir DIR
--held-out-fold 0`, made by `whales train --folds 2 --hold-out-fold 0`): only individuals that the
model never saw are then queried, and with `--split report` only those outside the calibration
split (the packaged calibration was fitted on the others). Every other individual of the sources is
still enrolled, as distractors, like the client's whole catalog.

Usage:
  python scripts/reid_fresh_catalog.py --model efficientnet_lite0.imagenet --split report
  python scripts/reid_fresh_catalog.py --model efficientnet_lite0.rwonly_f0 --models-dir /tmp/m \
      --held-out-fold 0 --calibration cal_f0.json --split report --out reports/reid_fresh_catalog_f0.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "service"))

from whales_identify.data import fold_of, read_manifest, stable_fraction  # noqa: E402
from whales_identify.evaluation.metrics import coverage_at_precision, map_at_5  # noqa: E402
from whales_identify.evaluation.repeated import split_of_individual  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "cetaceans"
API_KEY = "fresh-catalog-key"


def plan(rows: list[Any], args: argparse.Namespace, seen: set[str]) -> tuple[dict, list, list]:
    """(photos to enrol per individual, known queries, new queries) as (individual, relpath)."""
    by_ind: dict[str, list[Any]] = {}
    for r in rows:
        by_ind.setdefault(r.individual_id, []).append(r)
    enrol: dict[str, list[Any]] = {}
    known, new = [], []
    for ind, rs in sorted(by_ind.items()):
        rs = sorted(rs, key=lambda r: stable_fraction(r.relpath, "fresh-catalog-query"))
        eligible = ind not in seen and (args.held_out_fold is None or
                                        fold_of(rs[0], args.folds) == args.held_out_fold)
        if args.split != "all":
            eligible = eligible and split_of_individual(ind) == args.split
        if eligible and stable_fraction(ind, "fresh-catalog-new") < args.new_fraction:
            new.append((ind, rs[0]))  # never enrolled: the right answer is "new individual"
            continue
        if eligible and len(rs) >= 2:
            known.append((ind, rs[0]))
            enrol[ind] = rs[1:]
        else:
            enrol[ind] = rs
    rng = np.random.default_rng(0)
    if args.max_queries and len(known) > args.max_queries:
        known = [known[i] for i in sorted(rng.choice(len(known), args.max_queries, replace=False))]
    return enrol, known, new


def start(args: argparse.Namespace, tmp: Path) -> tuple[str, Any]:
    from svc_server import start_uvicorn

    env = {**os.environ, "WHALES_DATABASE_URL": f"sqlite:///{tmp / 'fresh.db'}", "WHALES_API_KEYS": API_KEY,
           "WHALES_EMBEDDING_MODEL": args.model, "WHALES_RATE_LIMIT": "1000000/minute",
           "WHALES_READ_RATE_LIMIT": "1000000/minute", "WHALES_GATE": args.gate, "PYTHONUNBUFFERED": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    if args.models_dir:
        env["WHALES_MODELS_DIR"] = str(args.models_dir)
    if args.calibration:
        env["WHALES_CALIBRATION"] = str(args.calibration)
    if args.new_target is not None:
        env["WHALES_NEW_INDIVIDUAL_TARGET"] = str(args.new_target)
    return start_uvicorn(["whales_be_service.main:app"], env, tmp / "server.log", timeout=600)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from svc_server import stop_process

    rows = [r for r in read_manifest(args.root / "manifest.csv")
            if r.is_cetacean and r.individual_id and r.source in args.sources]
    if args.max_individuals:  # a smaller catalog (smoke runs): a deterministic subset of individuals
        keep = sorted({r.individual_id for r in rows},
                      key=lambda i: stable_fraction(i, "fresh-catalog-subset"))[:args.max_individuals]
        rows = [r for r in rows if r.individual_id in set(keep)]
    seen = _training_individuals(args.model, args.models_dir)
    enrol, known, new = plan(rows, args, seen)
    with tempfile.TemporaryDirectory() as td:
        url, proc = start(args, Path(td))
        try:
            client = httpx.Client(base_url=url, timeout=300, headers={"X-API-Key": API_KEY})
            t0, refused = time.perf_counter(), 0
            for ind, rs in enrol.items():
                for s in range(0, len(rs), 50):
                    files = [("files", (Path(r.relpath).name, (args.root / r.relpath).read_bytes(),
                                        "image/jpeg")) for r in rs[s:s + 50]]
                    resp = client.post(f"/v1/individuals/{ind}/images", files=files,
                                       data={"species": rs[0].species})
                    resp.raise_for_status()
                    refused += len(resp.json()["refused"])
            enrol_s = time.perf_counter() - t0
            answers = []
            for ind, r in [*known, *new]:
                t = time.perf_counter()
                resp = client.post("/v1/predict?top_k=5", files={
                    "file": (Path(r.relpath).name, (args.root / r.relpath).read_bytes(), "image/jpeg")})
                resp.raise_for_status()
                answers.append((ind, resp.json(), time.perf_counter() - t))
            models = client.get("/v1/models").json()
        finally:
            stop_process(proc)
    return summarise(args, enrol, known, new, answers, seen, refused, enrol_s, models)


def summarise(args: argparse.Namespace, enrol: dict, known: list, new: list, answers: list,
              seen: set[str], refused: int, enrol_s: float, models: Any) -> dict[str, Any]:
    n_known = len(known)
    k_ans, n_ans = answers[:n_known], answers[n_known:]
    lists = [[c["individual_id"] for c in a.get("candidates") or []] for _, a, _ in k_ans]
    truth = [ind for ind, _, _ in k_ans]
    top1 = [bool(lab) and lab[0] == t for lab, t in zip(lists, truth, strict=True)]
    prob = np.array([a.get("probability") or 0.0 for _, a, _ in k_ans])
    flagged_known = [bool(a.get("is_new_individual")) for _, a, _ in k_ans]
    flagged_new = [bool(a.get("is_new_individual")) for _, a, _ in n_ans]
    queried = {ind for ind, _ in [*known, *new]}
    return {
        "protocol": "fresh catalog through the public API: every photo of the sources enrolled with POST "
                    "/v1/individuals/{id}/images into an empty SQLite catalog except one held-out photo "
                    "per queried individual (and every photo of the 'new' individuals), then one POST "
                    "/v1/predict per queried individual",
        "model": args.model, "sources": args.sources, "held_out_fold": args.held_out_fold,
        "split": args.split, "calibration": str(args.calibration) if args.calibration else "packaged",
        "new_individual_target": args.new_target,
        "queried_individuals_seen_in_training": len(queried & seen),
        "catalog": {"individuals": len(enrol), "photos": sum(len(v) for v in enrol.values()),
                    "refused_at_enrolment": refused, "enrol_seconds": enrol_s},
        "known_queries": n_known, "new_queries": len(new),
        "top1": float(np.mean(top1)) if top1 else None,
        "top5": (float(np.mean([t in lab[:5] for lab, t in zip(lists, truth, strict=True)]))
                 if truth else None),
        "map5": map_at_5(lists, truth) if truth else None,
        "new_rate_on_known": float(np.mean(flagged_known)) if flagged_known else None,
        "new_recall": float(np.mean(flagged_new)) if flagged_new else None,
        "coverage_at_98": coverage_at_precision(prob, np.array(top1), 0.98) if top1 else None,
        "seconds_per_predict_mean": float(np.mean([s for *_, s in answers])) if answers else None,
        "served": {"models": [{k: m.get(k) for k in ("role", "model_id", "backend")}
                              for m in models.get("models", [])],
                   "catalog": models.get("catalog")} if isinstance(models, dict) else None,
        "load_average": os.getloadavg(),
    }


def _training_individuals(model: str, models_dir: Path | None) -> set[str]:
    from whales_identify.models._registry import trained_metadata

    meta = trained_metadata(model, models_dir) or {}
    return set(meta.get("training_individuals") or [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DATA)
    ap.add_argument("--sources", nargs="+", default=["noaa_right_whale_headcrops"])
    ap.add_argument("--model", default="efficientnet_lite0.imagenet")
    ap.add_argument("--models-dir", type=Path)
    ap.add_argument("--calibration", type=Path, help="WHALES_CALIBRATION for the service")
    ap.add_argument("--new-target", type=float, help="WHALES_NEW_INDIVIDUAL_TARGET")
    ap.add_argument("--held-out-fold", type=int, help="query only individuals of this fold")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--split", choices=("report", "calibration", "all"), default="report")
    ap.add_argument("--new-fraction", type=float, default=0.1,
                    help="share of queried individuals held out entirely (right answer: new)")
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--max-individuals", type=int, default=0, help="smaller catalog (smoke runs)")
    ap.add_argument("--gate", default="embedded")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "reid_fresh_catalog.json")
    args = ap.parse_args(argv)
    if not (args.root / "manifest.csv").is_file():
        print(f"no shared data at {args.root}", file=sys.stderr)
        return 2
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: result[k] for k in ("model", "known_queries", "top1", "top5", "map5",
                                             "new_rate_on_known", "new_recall", "coverage_at_98",
                                             "queried_individuals_seen_in_training")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
