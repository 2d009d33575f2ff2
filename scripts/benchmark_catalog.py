"""Query time of the catalog matcher at 1k / 10k / 100k reference photos -> reports/benchmark_catalog.json.

- Global search: synthetic L2-normalised embeddings (1280-d, like EfficientNet-Lite), five photos per
  individual, through the real `Catalog.score` code path with local features off (one matrix-vector
  product + a per-individual max by `np.maximum.reduceat`).
- Local re-ranking: its work is bounded by `MatchConfig` (global_candidates + vote_candidates
  individuals, at most two photos each), independent of the catalog size; timed with synthetic
  RootSIFT-shaped descriptors at the bound.
- LNBNN vote index (faiss IVF-SQ8): timed at 1k photos with synthetic descriptors (index_keypoints
  per photo). Its memory grows with the catalog (136 B per descriptor: 100k photos x 500 descriptors
  = 6.8 GB); IVF-PQ codes would shrink it several-fold.

BLAS is limited to one thread by default: on a loaded machine a 2-thread matrix-vector product was
50x slower than a 1-thread one (thread synchronisation), so workers should run single-threaded BLAS.

Usage: python scripts/benchmark_catalog.py [--sizes 1000 10000 100000] [--queries 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from whales_identify.records.store import CatalogImage, InMemoryStore
from whales_identify.reid.calibrate import Calibration
from whales_identify.reid.catalog import Catalog, MatchConfig
from whales_identify.reid.local_features import LocalFeatures, verify

DIM = 1280
MODEL = "synthetic.benchmark"


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _descriptors(rng: np.random.Generator, k: int) -> LocalFeatures:
    d = np.abs(rng.normal(size=(k, 128))) ** 2
    d = np.sqrt(d / d.sum(axis=1, keepdims=True))
    return LocalFeatures(rng.uniform(0, 224, (k, 2)).astype(np.float32),
                         np.clip(np.round(d * 255), 0, 255).astype(np.uint8))


def _catalog(n: int, rng: np.random.Generator, cfg: MatchConfig, with_local: bool) -> Catalog:
    cat = Catalog(InMemoryStore(), MODEL, config=cfg, calibration=Calibration(model_id=MODEL))
    emb = _unit(rng, n, DIM)
    recs = []
    for i in range(n):
        lf = _descriptors(rng, cfg.index_keypoints) if with_local else None
        recs.append(CatalogImage(image_id=f"img{i}", individual_id=f"ind{i // 5}", species="s",
                                 model_id=MODEL, embedding=emb[i],
                                 keypoints=lf.keypoints if lf else None,
                                 descriptors=lf.descriptors if lf else None))
    cat.add_images(recs)
    return cat


def bench_global(n: int, queries: int, rng: np.random.Generator) -> dict[str, float]:
    cat = _catalog(n, rng, MatchConfig(use_local=False), with_local=False)
    t0 = time.perf_counter()
    cat._snapshot()
    build = time.perf_counter() - t0
    q = _unit(rng, queries, DIM)
    cat.rank(cat.score(q[0], None), 5)  # warm-up
    t0 = time.perf_counter()
    for v in q:
        cat.rank(cat.score(v, None), 5)
    return {"images": n, "individuals": n // 5, "index_build_s": build,
            "global_ms_per_query": 1000 * (time.perf_counter() - t0) / queries}


def bench_rerank(queries: int, rng: np.random.Generator) -> dict[str, float]:
    cfg = MatchConfig()
    n = 2 * (cfg.global_candidates + cfg.vote_candidates)
    gallery = [_descriptors(rng, cfg.local.max_keypoints) for _ in range(n)]
    t0 = time.perf_counter()
    for _ in range(queries):
        verify(_descriptors(rng, cfg.local.max_keypoints), gallery, max_keypoints=cfg.local.max_keypoints)
    return {"verified_images_per_query_max": n, "keypoints": cfg.local.max_keypoints,
            "rerank_ms_per_query": 1000 * (time.perf_counter() - t0) / queries}


def bench_vote(n: int, queries: int, rng: np.random.Generator) -> dict[str, float]:
    cfg = MatchConfig(global_candidates=0, vote_candidates=0)
    cat = _catalog(n, rng, cfg, with_local=True)
    t0 = time.perf_counter()
    cat._snapshot().vote_index()
    build = time.perf_counter() - t0
    q = _unit(rng, queries, DIM)
    t0 = time.perf_counter()
    for v in q:
        cat.score(v, _descriptors(rng, cfg.local.max_keypoints))
    return {"images": n, "index_descriptors": n * cfg.index_keypoints, "index_build_s": build,
            "vote_ms_per_query": 1000 * (time.perf_counter() - t0) / queries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--vote-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (1: per-query latency on one core, as in a worker thread)")
    ap.add_argument("--out", type=Path, default=Path("reports") / "benchmark_catalog.json")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    with threadpool_limits(limits=args.threads):
        out = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "blas_threads": args.threads,
                        "note": "shared CPU; other jobs were running, so times are upper bounds"},
            "global": [bench_global(n, args.queries, rng) for n in args.sizes],
            "rerank": bench_rerank(max(3, args.queries // 4), rng),
            "vote": bench_vote(args.vote_size, max(3, args.queries // 4), rng),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
