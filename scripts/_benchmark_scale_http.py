"""The served half of `scripts/benchmark_scale.py` (`--http`): one size's catalog served by the real
service (uvicorn, one process, `make run`'s defaults plus the configuration's scale settings), the
held-out real photos sent to `/v1/predict`, real photos enrolled through
`POST /v1/individuals/{id}/images`, all timed over HTTP on loopback.

Imported by `benchmark_scale.py` (run that one); kept apart so that each file stays readable.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from pathlib import Path

from _benchmark_service import (
    Server,
    _post,
    _stage_totals,
    _throughput,
    _upload_field,
    _vm,
    percentiles,
    prediction_outcome,
)

# MatchConfig field -> the service setting that carries it (settings.py); a configuration using a
# field that has no setting cannot be served and is refused rather than silently measured without it
SERVICE_ENV = {"ivf_codes": "WHALES_VOTE_INDEX_CODES", "index_keypoints": "WHALES_VOTE_INDEX_KEYPOINTS",
               "ivf_max_lists": "WHALES_VOTE_INDEX_MAX_LISTS", "vote_index_dir": "WHALES_VOTE_INDEX_DIR",
               "features_dir": "WHALES_FEATURES_DIR"}


def service_env(overrides: dict, store: Path, model_id: str, api_key: str) -> dict[str, str]:
    unserved = sorted(set(overrides) - set(SERVICE_ENV))
    if unserved:
        raise ValueError(f"no service setting for {', '.join(unserved)}: "
                         "this configuration is in-process only")
    return {"WHALES_DATABASE_URL": f"sqlite:///{store}", "WHALES_EMBEDDING_MODEL": model_id,
            "WHALES_API_KEYS": f"benchmark:{api_key}", "WHALES_RATE_LIMIT_ENABLED": "false",
            **{SERVICE_ENV[k]: str(v) for k, v in overrides.items()}}


def measure_http(data: Path, store: Path, overrides: dict, model_id: str, queries: list[tuple[str, str]],
                 enrol: list[str], enrol_batch: int, concurrency: bool, log: Path,
                 extra_env: dict[str, str] | None = None) -> dict:
    """`queries`: (relpath, individual id) of held-out real photos; `enrol`: relpaths enrolled as one
    new individual (`enrol_batch` single-photo requests spread over the list, then the others in
    requests of `enrol_batch` photos), which is deleted again through the API. `extra_env`: more WHALES_*
    settings of the served process."""
    import httpx

    key = secrets.token_hex(8)
    server = Server({**service_env(overrides, store, model_id, key), **(extra_env or {})}, log)
    payloads = [(Path(rel).name, (data / rel).read_bytes()) for rel, _ in queries]
    out: dict = {"via": "http", "server": "uvicorn whales_be_service.main:app, one process"}
    try:
        with httpx.Client(timeout=600) as client:
            ready = server.wait_ready(client, timeout_s=900)
            if ready is None:
                return {**out, "error": "not ready: " + log.read_text()[-2000:]}
            models = client.get(server.url + "/v1/models").json()
            out.update(ready_s=ready, rss_ready_mb=_vm(server.proc.pid, "VmRSS"),
                       peak_rss_at_ready_mb=_vm(server.proc.pid, "VmHWM"),
                       served_catalog=models.get("catalog"))
            field = _upload_field(client.get(server.url + "/openapi.json").json(), "/v1/predict")
            url = server.url + "/v1/predict"
            _post(client, url, field, *payloads[0])  # warm-up (the first request pays lazy imports)
            lat, hits, outcomes = [], [], Counter()
            for (name, body), (_, individual) in zip(payloads, queries, strict=True):
                t0 = time.perf_counter()
                r, _ = _post(client, url, field, name, body)
                lat.append(time.perf_counter() - t0)
                js = r.json() if r.status_code == 200 else {}
                ids = [c["individual_id"] for c in js.get("candidates", [])][:5]
                hits.append(ids.index(individual) + 1 if individual in ids else 0)
                outcomes[f"http_{r.status_code}" if r.status_code != 200 else prediction_outcome(js)] += 1
            pct = percentiles(lat)
            out.update(queries=len(lat), p50_s=pct["p50"], p95_s=pct["p95"], latency_mean_s=pct["mean"],
                       outcomes=dict(outcomes), top1_real_queries=sum(h == 1 for h in hits) / len(hits),
                       top5_real_queries=sum(h > 0 for h in hits) / len(hits))
            out["stage_mean_s"] = _stage_means(client.get(server.url + "/metrics").text)
            out["match_mean_s"] = out["stage_mean_s"].get("match")
            if concurrency:
                out.update(_throughput_pairs(url, field, payloads))
            if enrol:
                out["enrol"] = _enrol(client, server.url, data, enrol, enrol_batch, key, field)
                best = out["enrol"].get("batched") or out["enrol"]["single"]
                out["enrol_photos_per_s"] = best["photos_per_s"]
        out["peak_rss_mb"] = _vm(server.proc.pid, "VmHWM")
    finally:
        server.stop()
    return out


def _throughput_pairs(url: str, field: str, payloads: list, pairs: int = 3) -> dict:
    """Requests/s at concurrency 1 then 4, `pairs` times (96 requests each: ~15 s a pair at 2k).
    One pair's ratio ranged 1.62-1.93 over runs of one commit on this 2-core machine (2026-12-07),
    so the ratio reported is the mean of the pairs', with its standard error."""
    import statistics

    runs: dict[int, list[float]] = {1: [], 4: []}
    for _ in range(pairs):
        for c in (1, 4):
            runs[c].append(_throughput(url, field, payloads, c, requests=96)["requests_per_s"])
    ratios = [c4 / c1 for c1, c4 in zip(runs[1], runs[4], strict=True)]
    return {"throughput_c1": statistics.fmean(runs[1]), "throughput_c4": statistics.fmean(runs[4]),
            "throughput_c4_over_c1": statistics.fmean(ratios),
            "throughput_c4_over_c1_se": statistics.stdev(ratios) / len(ratios) ** 0.5 if pairs > 1 else None,
            "throughput_pairs": {"c1": runs[1], "c4": runs[4], "c4_over_c1": ratios}}


def _stage_means(text: str) -> dict[str, float]:
    return {k: s / n for k, (s, n) in _stage_totals(text).items() if n}


def _enrol(client, base: str, data: Path, relpaths: list[str], batch: int, key: str,  # type: ignore[no-untyped-def]
           predict_field: str) -> dict:
    """Enrol `relpaths` as a new individual, timed per mode; check that the service finds it at once;
    delete it."""
    individual = f"enrol_test_{uuid.uuid4().hex[:8]}"
    url, headers = f"{base}/v1/individuals/{individual}/images", {"X-API-Key": key}
    files = [(Path(rel).name, (data / rel).read_bytes()) for rel in relpaths]
    # the one-photo requests take every step-th photo, the batched ones the others: both modes get
    # the same mix of sources (a full-resolution photo costs ~5x a 224 px crop to gate and extract)
    step = max(1, len(files) // max(1, batch))
    picked = set(range(0, len(files), step)[:batch])
    singles, rest = [f for i, f in enumerate(files) if i in picked], [f for i, f in enumerate(files)
                                                                       if i not in picked]
    out: dict = {"individual": individual}
    try:
        for mode, groups in (("single", [[f] for f in singles]),
                             ("batched", [rest[i:i + batch] for i in range(0, len(rest), batch)])):
            if not groups:
                continue
            enrolled, refused, t0 = 0, 0, time.perf_counter()
            for group in groups:
                r = client.post(url, headers=headers, files=[("files", f) for f in group],
                                data={"species": "right_whale"})
                r.raise_for_status()
                enrolled += len(r.json()["enrolled"])
                refused += len(r.json()["refused"])
            seconds = time.perf_counter() - t0
            out[mode] = {"requests": len(groups), "photos": sum(map(len, groups)), "enrolled": enrolled,
                         "refused": refused, "seconds": seconds,
                         "photos_per_s": sum(map(len, groups)) / seconds}
        # the enrolled photo is also in the catalog under its real whale (an exact tie): top-5, not top-1
        r = client.post(base + "/v1/predict", files={predict_field: files[0]})
        ids = [c["individual_id"] for c in r.json().get("candidates", [])[:5]] if r.status_code == 200 else []
        out["enrolled_photo_found_at_once"] = individual in ids
    finally:
        out["deleted"] = client.delete(f"{base}/v1/individuals/{individual}", headers=headers).status_code
    return out


def measure_removal(data: Path, store: Path, overrides: dict, model_id: str, queries: list[tuple[str, str]],
                    log: Path, extra_env: dict[str, str] | None = None) -> dict:
    """A curator's removals at this size, on a copy of the store (the cached one stays as built): one
    individual deleted (`DELETE /v1/individuals/{id}`) and one photo of another removed (`DELETE
    /v1/images/{id}`, a curation: the worker reloads the catalog); each timed, then the next queries;
    then a restart on the changed store (the saved vote index is read and the removed photos masked)."""
    import httpx

    copy = store.with_name(f"removal-{store.name}")
    _copy_uncached(store, copy)
    key = secrets.token_hex(8)
    env = {**service_env(overrides, copy, model_id, key), **(extra_env or {})}
    headers = {"X-API-Key": key}
    payloads = [(Path(rel).name, (data / rel).read_bytes()) for rel, _ in queries[:3]]
    asked = {individual for _, individual in queries}
    out: dict = {"on": "a copy of the store"}
    try:
        with httpx.Client(timeout=900) as client:
            server = Server(env, log)
            try:
                out["ready_s"] = server.wait_ready(client, timeout_s=900)
                field = _upload_field(client.get(server.url + "/openapi.json").json(), "/v1/predict")
                url = server.url + "/v1/predict"
                _post(client, url, field, *payloads[0])  # warm-up
                listing = server.url + "/v1/individuals"
                first = client.get(listing, params={"limit": 200}).json()
                tail = {"limit": 200, "offset": max(0, first["total"] - 200)}
                last = client.get(listing, params=tail).json()
                spare = sorted((i for i in first["items"] if i["individual_id"] not in asked),
                               key=lambda i: -i["n_images"])
                targets = {"delete_individual": f"{listing}/{spare[0]['individual_id']}"}
                for ind in last["items"]:
                    if ind["individual_id"] in asked or ind["n_images"] < 2 or ind == spare[0]:
                        continue
                    images = client.get(f"{listing}/{ind['individual_id']}").json()["images"]
                    clean = [im["image_id"] for im in images if "/" not in im["image_id"]]
                    if clean:  # (the benchmark's real photos are stored under their paths: no URL)
                        targets["remove_photo"] = f"{server.url}/v1/images/{clean[0]}"
                        break
                out["remove_photo"] = {"skipped": "no photo id without '/' among the last individuals"}
                for step, target in targets.items():
                    t0 = time.perf_counter()
                    r = client.delete(target, headers=headers)
                    took = time.perf_counter() - t0
                    after = _timed_queries(client, url, field, payloads)
                    photos = spare[0]["n_images"] if step == "delete_individual" else 1
                    out[step] = {"status": r.status_code, "photos": photos, "request_s": took,
                                 "next_queries_s": after}
                out["another_worker"] = _another_workers_changes(
                    copy, spare[1:], lambda: _timed_queries(client, url, field, payloads),
                    lambda: _syncs(client.get(server.url + "/metrics").text))
            finally:
                server.stop()
            restart = Server(env, log)
            try:
                out["restart_ready_s"] = restart.wait_ready(client, timeout_s=900)
                t0 = time.perf_counter()
                _post(client, restart.url + "/v1/predict", field, *payloads[0])[0].raise_for_status()
                out["restart_first_query_s"] = time.perf_counter() - t0
                out["restart_peak_rss_mb"] = _vm(restart.proc.pid, "VmHWM")
            finally:
                restart.stop()
    finally:
        copy.unlink(missing_ok=True)
    return out


def _timed_queries(client, url: str, field: str, payloads: list) -> list[float]:  # type: ignore[no-untyped-def]
    took = []
    for name, body in payloads:
        t0 = time.perf_counter()
        _post(client, url, field, name, body)[0].raise_for_status()
        took.append(time.perf_counter() - t0)
    return took


def _another_workers_changes(store_path: Path, spare: list[dict], queries, syncs) -> dict:  # type: ignore[no-untyped-def]
    """Curation written to the database by another process (as another worker or replica would),
    then the served worker's next queries: the first applies the photos the change log names
    (`integrations/_changes.py`). Last, the same with the log emptied (a database from before it):
    the whole catalog is read again, as every such change did before. `syncs`: the served worker's
    `whales_catalog_sync_duration_seconds` (how it read each change, and how long that took)."""
    from integrations import open_store

    other = open_store(f"sqlite:///{store_path}")
    out: dict = {"how": "written by a second connection to the database; the served process finds "
                        "the generation moved at its next request"}
    try:
        by_species: dict[str, list[dict]] = {}
        for ind in spare[1:-1]:  # the first and the last are renamed
            by_species.setdefault(ind["species"], []).append(ind)
        pair = next((v[:2] for v in by_species.values() if len(v) >= 2), None)
        steps = [("rename", lambda: other.rename_individual(spare[0]["individual_id"],
                                                            spare[0]["individual_id"] + "_renamed")),
                 ("rename_without_change_log", lambda: _unlogged(other, lambda: other.rename_individual(
                     spare[-1]["individual_id"], spare[-1]["individual_id"] + "_renamed")))]
        if pair is not None:
            steps.insert(1, ("merge", lambda: other.merge_individuals(pair[0]["individual_id"],
                                                                      pair[1]["individual_id"])))
        for step, write in steps:
            before = syncs()
            t0 = time.perf_counter()
            write()
            out[step] = {"write_s": time.perf_counter() - t0, "next_queries_s": queries()}
            after = syncs()
            out[step]["synced"] = {how: {"count": n - before.get(how, (0, 0.0))[0],
                                         "seconds": t - before.get(how, (0, 0.0))[1]}
                                   for how, (n, t) in after.items() if n != before.get(how, (0, 0.0))[0]}
    finally:
        other.close()
    return out


def _syncs(metrics_text: str) -> dict[str, tuple[int, float]]:
    """{how: (count, seconds)} of `whales_catalog_sync_duration_seconds`."""
    import re

    found: dict[str, list[float]] = {}
    for kind, how, value in re.findall(
            r'^whales_catalog_sync_duration_seconds_(count|sum)\{how="(\w+)"\} (\S+)$', metrics_text, re.M):
        found.setdefault(how, [0, 0.0])[0 if kind == "count" else 1] = float(value)
    return {how: (int(v[0]), float(v[1])) for how, v in found.items()}


def _unlogged(store, write) -> None:  # type: ignore[no-untyped-def]
    write()
    with store._write() as cur:  # noqa: SLF001 (the benchmark's own copy of the store)
        cur.execute("DELETE FROM catalog_changes")


def _copy_uncached(source: Path, target: Path, chunk: int = 64 << 20) -> None:
    """Copy a file without leaving the copy in the page cache: a plain copy of the 6.4 GB 100k store
    evicted the mapped features, and the next run's p95 at 100k read 0.92 s instead of ~0.3 s."""
    import os
    import shutil

    if not hasattr(os, "posix_fadvise"):  # not Linux: a plain copy
        shutil.copyfile(source, target)
        return
    with open(source, "rb") as src, open(target, "wb") as dst:
        done = 0
        while block := src.read(chunk):
            dst.write(block)
            dst.flush()
            os.fdatasync(dst.fileno())
            os.posix_fadvise(dst.fileno(), done, len(block), os.POSIX_FADV_DONTNEED)
            # the source's pages too: reading 6.4 GB through the cache evicted the mapped features
            # just as well (the next run's p95 at 100k: 0.67 s)
            os.posix_fadvise(src.fileno(), done, len(block), os.POSIX_FADV_DONTNEED)
            done += len(block)
