"""Scale benchmark: the catalog matcher at 2k / 10k / 50k / 100k photos -> reports/benchmark_scale.json.

The catalog is the real shared photos (every identified cetacean photo, as `whales evaluate` uses
them) plus synthetic distractor individuals up to the size; the queries are the same real photos
at every size (the harness's leave-one-out protocol, reported split), so `top1_real_queries`
shows what the distractors do to accuracy.

Distractors (labelled `synthetic` in the report) are drawn from the real statistics, not images:
- embedding: a real photo's embedding turned towards another individual's photo until its cosine
  to the source equals the source's cosine to its nearest *real* other individual (hard: each
  distractor is as close to a real whale as the closest real look-alike), then spread per photo
  along real within-individual differences, at real within-individual cosines;
- local features: real RootSIFT descriptors with their keypoints, sampled across all real photos
  (so incoherent geometry, no RANSAC consensus), each under a random non-identity symmetry of the
  SIFT grid (the descriptor of the rotated / mirrored patch) plus noise: real descriptor
  statistics (so real inverted-list loads), but not copies of a query's true neighbours;
- counts: descriptors per photo and photos per individual drawn from the real ones.
Embedding the distractors from transformed photos would cost ~0.1 s each (3 h at 100k on 2 cores).

The real queries (`HELD_OUT`, one per individual) are held out of every catalog size with their
encounters, so that they can be sent as they are to the served `/v1/predict`.

Per size, in a fresh process (so RSS is that size's): ready (load from a SQLite store + build the
indexes), RSS, per-query match time (score + rank, features precomputed), top-1/top-5 of the real
queries, enrolment (single-photo `add_images` followed by a query that sees it, plus the measured
feature-extraction cost of a photo), and matching throughput with 1 and 4 threads.

With `--http` the same store is served by the real service instead (uvicorn, one process, the
configuration passed as WHALES_* settings; `_benchmark_scale_http.py`): start to `/ready`, the
server's RSS, `/v1/predict` latency of the real query photos (p50/p95, the server's own match-stage
mean from /metrics), top-1/top-5, throughput at concurrency 1 and 4 (2k), and enrolment of real
photos through `POST /v1/individuals/{id}/images` end to end (decode, gate, embed, local features,
catalog): single-photo requests, then requests of `--enrol-batch` photos.

Usage: python scripts/benchmark_scale.py [--data ../shared/data/cetaceans] [--sizes 2000 10000 50000 100000]
       [--configs baseline levers] [--queries 40] [--http --enrol 60 --enrol-batch 10]
       [--out reports/benchmark_scale.json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "efficientnet_lite0.imagenet"  # training-free: top-1 is never measured on training data
SYNTH_VERSION = "2"  # bump when the catalog recipe changes (store caches are keyed by it)
HELD_OUT = 40  # real query photos kept out of every catalog size, their encounters with them
TARGETS = {"100k": {"p95_s": 0.5, "peak_rss_mb": 3072, "ready_s": 30.0, "enrol_photos_per_s": 20.0},
           "2k": {"match_mean_s": 0.15, "p95_s": 0.25, "throughput_c4_over_c1": 1.7}}
# MatchConfig overrides per named configuration (the levers, docs/REID.md "Scale"); a
# `vote_index_dir` or `features_dir` of "CACHE" is a folder of the benchmark's cache (the index and
# the packed features are made once, by the cold start, then read)
CONFIGS: dict[str, dict] = {
    "baseline": {},
    # the vote index of `make run` before 2026-12-07: IVF-SQ8 searched whole (the default re-ranks
    # a fast-scan search with the same SQ8 codes)
    "sq8": {"ivf_codes": "SQ8"},
    "pq": {"ivf_codes": "PQ64x4fs"},
    # what the large sizes need on 2 cores: fewer descriptors per photo in the vote index (the
    # verification keeps 500), at most 1024 lists (a build ~ descriptors x lists), a saved index
    "scale": {"ivf_codes": "PQ64x4fs", "index_keypoints": 250, "ivf_max_lists": 1024,
              "vote_index_dir": "CACHE"},
    # `scale` with the verification descriptors and keypoints mapped from files, not on the heap
    "scale_mmap": {"ivf_codes": "PQ64x4fs", "index_keypoints": 250, "ivf_max_lists": 1024,
                   "vote_index_dir": "CACHE", "features_dir": "CACHE"},
    # `scale_mmap` with 4x the lists: a quarter of the codes scanned per probe (the vote search is
    # most of a query at 100k with 1024 lists), for a build ~4x as long
    "scale_mmap_4k": {"ivf_codes": "PQ64x4fs", "index_keypoints": 250, "ivf_max_lists": 4096,
                      "vote_index_dir": "CACHE", "features_dir": "CACHE"},
    # `scale_mmap` verifying the candidate budget of before 2026-12-07 (30 by cosine + 80 by vote,
    # now 20 + 30): what fewer photos verified gives at each size (in-process: no service setting)
    "scale_mmap_wide": {"ivf_codes": "PQ64x4fs", "index_keypoints": 250, "ivf_max_lists": 1024,
                        "vote_index_dir": "CACHE", "features_dir": "CACHE",
                        "global_candidates": 30, "vote_candidates": 80},
}


def match_config(name: str, cache: Path):  # type: ignore[no-untyped-def]
    from whales_identify.reid.matching import MatchConfig

    overrides = dict(CONFIGS[name])
    if overrides.get("vote_index_dir") == "CACHE":
        overrides["vote_index_dir"] = str(cache / "vote_indexes")
    if overrides.get("features_dir") == "CACHE":
        overrides["features_dir"] = str(cache / "feature_packs")
    return MatchConfig(**overrides)


def _status(key: str) -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return None


def _io() -> dict[str, float]:
    """This process's reads so far: all (`rchar`, page cache included) and from the disk."""
    got = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {"read_all": int(got["rchar"]) / 2**20, "read_from_disk": int(got["read_bytes"]) / 2**20}


# ------------------------------------------------------------------------------ the real part
class _LazyEmbedder:
    """The embedder `compute_features` asks for; built only when the feature cache misses."""

    def __init__(self, model_id: str) -> None:
        self.model_id, self._real = model_id, None

    def __call__(self, images):  # type: ignore[no-untyped-def]
        if self._real is None:
            from whales_identify.embed import create_embedder

            self._real = create_embedder(self.model_id, ROOT / "models", threads=1)
        return self._real(images)


REAL_LIMIT = 0  # (tests) at most this many real photos: set by --real-limit


def real_part(data: Path, cache: Path):  # type: ignore[no-untyped-def]
    from whales_identify.data import read_manifest
    from whales_identify.evaluation.harness import compute_features, select_rows
    from whales_identify.reid.matching import MatchConfig

    rows = select_rows(read_manifest(data / "manifest.csv"))
    if REAL_LIMIT:  # whole individuals with 3+ photos, so that there are queries
        counts = Counter(r.individual_id for r in rows)
        keep, n = set(), 0
        for ind in sorted(i for i, c in counts.items() if c >= 3):
            if n + counts[ind] <= REAL_LIMIT:
                keep.add(ind)
                n += counts[ind]
        rows = [r for r in rows if r.individual_id in keep]
    emb, local = compute_features(rows, data, _LazyEmbedder(MODEL), MatchConfig(), cache / "features")
    return rows, np.asarray(emb, np.float32), local


# ------------------------------------------------------------------------------ distractors
def _sift_symmetries() -> list[np.ndarray]:
    """Index permutations of a 4x4x8 SIFT descriptor for the 7 non-identity rotations/mirrors of
    the patch (cells move, orientation bins turn with them)."""
    perms = []
    for mirror in (False, True):
        for quarter in range(4):
            if not mirror and quarter == 0:
                continue
            perm = np.empty(128, np.int64)
            for r in range(4):
                for c in range(4):
                    rr, cc, turn = r, (3 - c if mirror else c), quarter
                    for _ in range(turn):
                        rr, cc = cc, 3 - rr
                    for o in range(8):
                        oo = (4 - o) % 8 if mirror else o
                        oo = (oo + 2 * turn) % 8
                        perm[(rr * 4 + cc) * 8 + oo] = (r * 4 + c) * 8 + o
            perms.append(perm)
    return perms


def distractors(n: int, rows, emb: np.ndarray, local, seed: int = 0,  # type: ignore[no-untyped-def]
                chunk: int = 1000) -> Iterator[list]:
    """`n` synthetic catalog records, in lists of about `chunk` (see the module docstring)."""
    from whales_identify.records.store import CatalogImage

    rng = np.random.default_rng(seed)
    labels = np.unique([r.individual_id for r in rows], return_inverse=True)[1]
    sims = emb @ emb.T
    same = labels[:, None] == labels[None, :]
    c_nn = np.where(same, -1.0, sims).max(axis=1)  # cosine to the nearest real other individual
    iu = np.triu_indices(len(rows), 1)
    pair_mask = same[iu]
    pairs = np.stack([iu[0][pair_mask], iu[1][pair_mask]], axis=1)  # same-individual photo pairs
    c_same = sims[pairs[:, 0], pairs[:, 1]]
    group_sizes = np.bincount(labels)
    counts = np.array([len(lf.descriptors) for lf in local])
    pool_desc = np.concatenate([lf.descriptors for lf in local])
    pool_kp = np.concatenate([lf.keypoints for lf in local]).astype(np.float32)
    perms = np.stack(_sift_symmetries())

    def unit_orth(v: np.ndarray, base: np.ndarray) -> np.ndarray:
        v = v - (v @ base) * base
        return v / max(float(np.linalg.norm(v)), 1e-12)

    made, ind = 0, 0
    out: list = []
    while made < n:
        s = int(rng.integers(len(rows)))
        t = int(rng.integers(len(rows)))
        while labels[t] == labels[s]:
            t = int(rng.integers(len(rows)))
        c = float(np.clip(c_nn[s], -1.0, 0.999))
        base = c * emb[s] + np.sqrt(1 - c * c) * unit_orth(emb[t], emb[s])
        base /= np.linalg.norm(base)
        for _ in range(min(int(rng.choice(group_sizes)), n - made)):
            a, b = pairs[int(rng.integers(len(pairs)))]
            cs = float(c_same[int(rng.integers(len(c_same)))])
            e = cs * base + np.sqrt(max(0.0, 1 - cs * cs)) * unit_orth(emb[a] - emb[b], base)
            k = int(rng.choice(counts))
            take = rng.integers(len(pool_desc), size=k)
            sym = perms[rng.integers(len(perms), size=k)]
            d = np.take_along_axis(pool_desc[take].astype(np.int16), sym, axis=1)
            d = np.clip(d + rng.normal(0, 3, d.shape).round(), 0, 255).astype(np.uint8)
            out.append(CatalogImage(
                image_id=f"synthetic-{made:07d}", individual_id=f"synthetic_{ind:06d}",
                species=rows[s].species, model_id=MODEL, embedding=(e / np.linalg.norm(e)).astype(np.float32),
                keypoints=pool_kp[take], descriptors=d, source="synthetic"))
            made += 1
            if len(out) >= chunk:
                yield out
                out = []
        ind += 1
    if out:
        yield out


def held_out(rows) -> tuple[list[int], set[str]]:  # type: ignore[no-untyped-def]
    """The real queries (row indices) and the photos no catalog holds: each query's encounter.

    Queries are spread evenly over the reported split's known queries (the calibration split's in
    tiny test runs that have none), one per individual, from individuals with another encounter,
    so that the same photos can be sent to the served `/v1/predict` at every size without finding
    themselves, and the in-process measure needs no exclusion.
    """
    from whales_identify.data import encounter_key
    from whales_identify.evaluation.harness import query_plan

    encounters: dict[str, set[str]] = {}
    for r in rows:
        encounters.setdefault(r.individual_id, set()).add(encounter_key(r))
    known = [i for i, m in query_plan(rows, None, fit=False) if m == "known"] or \
        [i for i, m in query_plan(rows, None, fit=True) if m == "known"]
    order = known[::max(1, len(known) // HELD_OUT)] + known
    picks: list[int] = []
    for i in order:
        ind = rows[i].individual_id
        if len(encounters[ind]) >= 2 and all(rows[j].individual_id != ind for j in picks):
            picks.append(i)
        if len(picks) == HELD_OUT:
            break
    keys = {encounter_key(rows[i]) for i in picks}
    return picks, {r.relpath for r in rows if encounter_key(r) in keys}


def real_records(rows, emb: np.ndarray, local) -> list:  # type: ignore[no-untyped-def]
    """Every real photo but the held-out queries' encounters, as catalog records."""
    from whales_identify.records.store import CatalogImage

    _, excluded = held_out(rows)
    return [CatalogImage(image_id=r.relpath, individual_id=r.individual_id, species=r.species,
                         model_id=MODEL, embedding=emb[i], keypoints=local[i].keypoints,
                         descriptors=local[i].descriptors, filename=r.relpath, source=r.source)
            for i, r in enumerate(rows) if r.relpath not in excluded]


def store_path(cache: Path, size: int, n_real: int) -> Path:
    key = hashlib.sha256(f"{MODEL}|{size}|{n_real}|{SYNTH_VERSION}".encode()).hexdigest()[:12]
    return cache / f"scale-{size}-{key}.db"


def build_store(data: Path, cache: Path, size: int) -> dict:
    """The SQLite catalog of `size` photos (real + distractors), built once and kept in `cache`."""
    from integrations.sqlite import SQLiteStore

    rows, emb, local = real_part(data, cache)
    path = store_path(cache, size, len(rows))
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return {**json.loads(meta.read_text()), "reused_from_cache": True}
    partial = path.with_suffix(".partial.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = SQLiteStore(partial)
    real = real_records(rows, emb, local)[:size]
    store.add_catalog_images(real)
    n_syn = 0
    for batch in distractors(size - len(real), rows, emb, local):
        store.add_catalog_images(batch)
        n_syn += len(batch)
    store.close()
    info = {"photos": size, "real_photos": len(real), "synthetic_photos": n_syn,
            "build_s": time.perf_counter() - t0, "db_mb": partial.stat().st_size / 2**20}
    partial.rename(path)
    meta.write_text(json.dumps(info, indent=2))
    return {**info, "reused_from_cache": False}


# ------------------------------------------------------------------------------ one size
def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}


def measure(data: Path, cache: Path, size: int, config: str, n_queries: int, n_enrol: int,
            threads: bool) -> dict:
    """One size, one configuration, in this (fresh) process."""
    from threadpoolctl import threadpool_limits

    from integrations.sqlite import SQLiteStore
    from whales_identify.reid.catalog import Catalog

    rows, emb, local = real_part(data, cache)
    path = store_path(cache, size, len(rows))
    cfg = match_config(config, cache)
    rss_start = _status("VmRSS")
    with threadpool_limits(limits=1):  # one BLAS thread per request, as in the service's workers
        t0, c0 = time.perf_counter(), time.process_time()
        catalog = Catalog(SQLiteStore(path), MODEL, config=cfg).load()
        loaded, loaded_cpu = time.perf_counter() - t0, time.process_time() - c0
        catalog.warm_index()
        ready, ready_cpu = time.perf_counter() - t0, time.process_time() - c0
        rss_ready = _status("VmRSS")
        # mapped features count in RSS as file pages (the kernel may drop them): split it
        rss_ready_split = {k: _status(k) for k in ("RssAnon", "RssFile")}
        io_ready = _io()
        peak_ready = _status("VmHWM")
        plan = query_subset(rows, {s.individual_id for s in catalog.list_individuals()}, n_queries)

        def one(i: int) -> tuple[float, int, float]:
            q0, c0 = time.perf_counter(), time.thread_time()
            res = catalog.rank(catalog.score(emb[i], local[i]), 5)
            ids = [c.individual_id for c in res.candidates]
            hit = ids.index(rows[i].individual_id) + 1 if rows[i].individual_id in ids else 0
            return time.perf_counter() - q0, hit, time.thread_time() - c0

        one(plan[0])  # warm-up
        t1 = time.perf_counter()
        results = [one(p) for p in plan]
        c1 = len(plan) / (time.perf_counter() - t1)
        lat = [r[0] for r in results]
        out = {"catalog_photos": len(catalog), "individuals": catalog.stats()["individuals"],
               "config": config, "match_config": CONFIGS[config],
               "load_s": loaded, "ready_s": ready, "load_cpu_s": loaded_cpu, "ready_cpu_s": ready_cpu,
               "rss_start_mb": rss_start, "rss_ready_mb": rss_ready,
               "rss_ready_split_mb": rss_ready_split, "io_at_ready_mb": io_ready,
               "peak_rss_at_ready_mb": peak_ready,
               "queries": len(plan), "match_mean_s": float(np.mean(lat)), **{
                   f"{k}_s": v for k, v in _percentiles(lat).items() if k != "mean"},
               # CPU seconds of the query's thread: what the machine's load does not inflate
               "match_cpu_mean_s": float(np.mean([r[2] for r in results])),
               "match_cpu_p95_s": float(np.percentile([r[2] for r in results], 95)),
               "top1_real_queries": float(np.mean([r[1] == 1 for r in results])),
               "top5_real_queries": float(np.mean([r[1] > 0 for r in results])),
               "throughput_c1": c1}
        if threads:
            with ThreadPoolExecutor(4) as pool:
                t1 = time.perf_counter()
                list(pool.map(one, plan))
                out["throughput_c4"] = len(plan) / (time.perf_counter() - t1)
            out["throughput_c4_over_c1"] = out["throughput_c4"] / c1
        out["enrol"] = _enrol(catalog, rows, emb, local, n_enrol)
    out["peak_rss_mb"] = _status("VmHWM")
    out["rss_end_mb"] = {k: _status(k) for k in ("VmRSS", "RssAnon", "RssFile")}
    return out


def query_subset(rows, in_catalog: set[str], n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """`n` of the held-out queries, evenly spread, whose individual this catalog size holds."""
    plan = [i for i in held_out(rows)[0] if rows[i].individual_id in in_catalog]
    return [plan[j] for j in np.linspace(0, len(plan) - 1, min(n, len(plan))).astype(int)]


def _enrol(catalog, rows, emb, local, n: int) -> dict:  # type: ignore[no-untyped-def]
    """`n` single-photo enrolments of real photos as a new individual, each followed by the
    snapshot and vote index that the next query searches (so the photo is matchable at once).
    Catalog side only (store write included); the feature extraction per photo is measured once
    by the parent."""
    from whales_identify.records.store import CatalogImage

    run = uuid.uuid4().hex[:8]
    t0, c0 = time.perf_counter(), time.process_time()
    for j in range(n):
        i = j * 7 % len(rows)
        catalog.add_images([CatalogImage(
            image_id=f"enrol-{run}-{j}", individual_id=f"enrol_test_{run}", species=rows[i].species,
            model_id=MODEL, embedding=emb[i], keypoints=local[i].keypoints,
            descriptors=local[i].descriptors)])
        catalog.warm_index()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    catalog.remove_individual(f"enrol_test_{run}")  # the cached store stays as built
    return {"photos": n, "seconds": seconds, "cpu_seconds": cpu, "catalog_photos_per_s": n / seconds}


def measure_served(args: argparse.Namespace, size: int, config: str) -> dict:
    """One size, one configuration, served over HTTP by the real service (`_benchmark_scale_http`)."""
    from _benchmark_scale_http import measure_http, measure_removal

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # the server runs on `make run`'s defaults
        os.environ.pop(name, None)
    rows, emb, local = real_part(args.data, args.cache)
    real = real_records(rows, emb, local)[:size]  # the real part of this size's store
    plan = query_subset(rows, {r.individual_id for r in real}, args.queries)
    overrides = {k: v for k, v in vars(match_config(config, args.cache)).items()
                 if k in CONFIGS[config]}
    enrol = [r.filename for r in real[::max(1, len(real) // max(1, args.enrol))]][:args.enrol]
    serve_env = dict(kv.split("=", 1) for kv in args.serve_env)
    store = store_path(args.cache, size, len(rows))
    try:
        out = measure_http(args.data, store, overrides, MODEL,
                           [(rows[i].relpath, rows[i].individual_id) for i in plan], enrol,
                           args.enrol_batch, concurrency=size <= 2500,
                           log=args.cache / f"served-{size}-{config}.log", extra_env=serve_env)
        if args.removal:
            started = datetime.now(UTC).isoformat(timespec="seconds")
            out["removal"] = {"measured_at": started, **measure_removal(
                args.data, store, overrides, MODEL, [(rows[i].relpath, rows[i].individual_id) for i in plan],
                log=args.cache / f"removal-{size}-{config}.log", extra_env=serve_env)}
    finally:  # the served predictions would pile up in the cached catalog run after run
        if store.is_file():
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(store) as db:
                db.execute("DELETE FROM prediction_images")
                db.execute("DELETE FROM predictions")
    return {"catalog_photos": size, "serve_env": serve_env,
            "individuals": (out.get("served_catalog") or {}).get("individuals"),
            "config": config, "match_config": CONFIGS[config], **out}


def prepare(data: Path, cache: Path, size: int, config: str) -> dict:
    """Where the configuration saves its vote index: load the catalog once so that the index is
    built and saved (the cold start), timed; the measuring process then reads it back."""
    from integrations.sqlite import SQLiteStore
    from whales_identify.reid.catalog import Catalog

    rows, _, _ = real_part(data, cache)
    t0, c0 = time.perf_counter(), time.process_time()
    catalog = Catalog(SQLiteStore(store_path(cache, size, len(rows))), MODEL,
                      config=match_config(config, cache)).load()
    loaded = time.perf_counter() - t0
    catalog.warm_index()
    return {"cold_load_s": loaded, "cold_ready_s": time.perf_counter() - t0,
            "cold_ready_cpu_s": time.process_time() - c0, "cold_peak_rss_mb": _status("VmHWM")}


def extraction_cost(data: Path, n: int = 12) -> dict:
    """Seconds per photo to decode, embed and extract local features (what enrolment adds on
    top of the catalog's own work), one thread."""
    import torch
    from PIL import Image

    from whales_identify.data import read_manifest
    from whales_identify.embed import create_embedder
    from whales_identify.evaluation.harness import select_rows
    from whales_identify.reid.local_features import extract
    from whales_identify.reid.matching import MatchConfig

    torch.set_num_threads(1)
    rows = select_rows(read_manifest(data / "manifest.csv"))[::97][:n]
    embedder, cfg = create_embedder(MODEL, ROOT / "models", threads=1), MatchConfig()
    embedder([Image.open(data / rows[0].relpath).convert("RGB")])
    t0, c0 = time.perf_counter(), time.process_time()
    for r in rows:
        im = Image.open(data / r.relpath).convert("RGB")
        embedder([im])
        extract(im, cfg.local)
    return {"photos": len(rows), "seconds_per_photo": (time.perf_counter() - t0) / len(rows),
            "cpu_seconds_per_photo": (time.process_time() - c0) / len(rows)}


# ------------------------------------------------------------------------------ driver
def _run_key(s: dict) -> tuple:
    return (s.get("requested_photos", 0), s.get("config", ""), _label(s))


def _label(s: dict) -> str:
    """How a run was made beside its configuration: "" (in-process) or "+http[settings]"."""
    if s.get("via", "in_process") == "in_process":
        return ""
    env = ",".join(f"{k}={v}" for k, v in sorted((s.get("serve_env") or {}).items()))
    return "+http" + (f"[{env}]" if env else "")


def _child(args: argparse.Namespace, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--data", str(args.data), "--cache", str(args.cache),
           "--real-limit", str(args.real_limit), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "returncode": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# the match-time targets judged on the query thread's CPU time too (the wall time on a machine
# shared with other jobs measures the queue for the cores as well)
CPU_TWIN = {"match_mean_s": "match_cpu_mean_s", "p95_s": "match_cpu_p95_s"}


def check(sizes: list[dict]) -> dict:
    """Each target of the issue against every configuration measured at that size (no run at a
    size: no entry, which is itself the answer)."""
    out = {}
    for label, n, targets in (("2k", 2000, TARGETS["2k"]), ("100k", 100_000, TARGETS["100k"])):
        runs = [s for s in sizes if "error" not in s and abs(s["catalog_photos"] - n) <= 0.1 * n]
        pairs = [*targets.items(), *((CPU_TWIN[k], v) for k, v in targets.items() if k in CPU_TWIN)]
        for key, limit in pairs:
            for s in runs:
                value = s.get(key)
                if value is None:
                    continue
                higher_is_better = key in ("enrol_photos_per_s", "throughput_c4_over_c1")
                ok = value >= limit if higher_is_better else value <= limit
                out[f"{label}:{key}:{s['config']}{_label(s)}@{s['catalog_photos']}"] = {
                    "value": value, "target": limit, "met": bool(ok)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cetaceans")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 50000, 100000])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                    help="configurations measured at every size (--configs-small: at the smallest only)")
    ap.add_argument("--configs-small", nargs="*", default=[], choices=list(CONFIGS))
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--enrol", type=int, default=10)
    ap.add_argument("--http", action="store_true",
                    help="serve each size with the real service (uvicorn, one process) and measure over "
                         "HTTP: ready, RSS, /v1/predict latency, enrolment through the API")
    ap.add_argument("--serve-env", nargs="*", default=[], metavar="WHALES_X=V",
                    help="(--http) more settings of the served process, e.g. WHALES_INFERENCE_WORKERS=2")
    ap.add_argument("--removal", action="store_true",
                    help="(--http) also time a deleted individual, a removed photo and a restart after them, "
                         "on a copy of the cached store")
    ap.add_argument("--enrol-batch", type=int, default=10,
                    help="(--http) photos per enrolment request after as many single-photo ones")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "benchmark_scale",
                    help="features and the built catalogs, kept between runs")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmark_scale.json")
    ap.add_argument("--merge-only", action="store_true", help="only recompute the report's derived fields")
    ap.add_argument("--real-limit", type=int, default=0, help="(tests) use only this many real photos")
    ap.add_argument("--skip-extraction", action="store_true", help="(tests) no model: enrol = catalog side")
    ap.add_argument("--build", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # SIZE CONFIG (child process)
    ap.add_argument("--prepare", nargs=2, help=argparse.SUPPRESS)  # SIZE CONFIG (child process)
    args = ap.parse_args()
    global REAL_LIMIT
    REAL_LIMIT = args.real_limit
    if args.build:
        print(json.dumps(build_store(args.data, args.cache, args.build)))
        return
    if args.prepare:
        print(json.dumps(prepare(args.data, args.cache, int(args.prepare[0]), args.prepare[1])))
        return
    if args.measure and args.http:
        print(json.dumps(measure_served(args, int(args.measure[0]), args.measure[1])))
        return
    if args.measure:
        size, config = int(args.measure[0]), args.measure[1]
        print(json.dumps(measure(args.data, args.cache, size, config, args.queries, args.enrol,
                                 threads=size <= 2500)))
        return
    if not (args.data / "manifest.csv").is_file():
        sys.exit(f"no shared photos at {args.data} (see ../shared/data/README.md)")
    extraction = None if args.skip_extraction or args.merge_only else extraction_cost(args.data)
    sizes, builds = [], {}
    for n in [] if args.merge_only else args.sizes:
        builds[str(n)] = _child(args, "--build", str(n))
        for config in args.configs + (args.configs_small if n == min(args.sizes) else []):
            cold = (_child(args, "--prepare", str(n), config)
                    if CONFIGS[config].get("vote_index_dir") else None)
            load = os.getloadavg()
            res = _child(args, "--measure", str(n), config, "--queries", str(args.queries),
                         "--enrol", str(args.enrol), "--enrol-batch", str(args.enrol_batch),
                         *(["--http", "--serve-env", *args.serve_env] if args.http else []),
                         *(["--removal"] if args.removal else []))
            res.update({"requested_photos": n, "config": config, "cold_start": cold,
                        "via": "http" if args.http else "in_process",
                        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "loadavg_before": list(load),
                        "loadavg_after": list(os.getloadavg())})
            sizes.append(res)
            print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}), file=sys.stderr)
    commands = ["python scripts/benchmark_scale.py " + " ".join(sys.argv[1:])]
    if args.out.is_file():  # keep the sizes and configurations this run did not measure
        done = {_run_key(s) for s in sizes}
        old = json.loads(args.out.read_text())
        commands = [*old.get("commands", []), *commands]
        kept = [s for s in old.get("sizes", []) if _run_key(s) not in done]
        removals = {_run_key(s): {"measured_at": s.get("measured_at"), **s["removal"]}
                    for s in old.get("sizes", []) if "removal" in s}
        for s in sizes:  # a run without --removal keeps the last removal measurement (timestamped)
            if "removal" not in s and _run_key(s) in removals:
                s["removal"] = removals[_run_key(s)]
        sizes = kept + sizes
        sizes.sort(key=_run_key)
        builds = {**old.get("catalog_builds", {}), **builds}
        extraction = extraction or old.get("feature_extraction")
    for res in sizes:  # enrolment = the catalog's work + extracting the photo's features
        if "enrol" in res and res.get("via", "in_process") == "in_process":
            per = 1 / res["enrol"]["catalog_photos_per_s"] + (
                extraction["seconds_per_photo"] if extraction else 0.0)
            res["enrol_photos_per_s"] = 1 / per
            if "cpu_seconds" in res["enrol"] and extraction and "cpu_seconds_per_photo" in extraction:
                res["enrol_cpu_photos_per_s"] = 1 / (res["enrol"]["cpu_seconds"] / res["enrol"]["photos"]
                                                     + extraction["cpu_seconds_per_photo"])
    report = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "commands": commands,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "loadavg_at_end": list(os.getloadavg()),
                          "note": "2 shared cores, other jobs running: times are upper bounds"},
              "model": MODEL, "targets": TARGETS, "configs": CONFIGS,
              "distractors": "synthetic (see scripts/benchmark_scale.py): real-statistics embeddings "
                             "and descriptors, no images",
              "feature_extraction": extraction, "catalog_builds": builds, "sizes": sizes,
              "checks": check(sizes)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
