"""`whales batch SOURCE... --out RESULTS`: a survey-scale job on a Dask distributed cluster.

The same pipeline as `/v1/predict` (gate, embed, match, species, open set) runs on every worker
(`_batch_worker`); this module plans the job, drives the engine, shows progress and writes results.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from whales_cli._common import emit_json, fail
from whales_identify.batch import PhotoRef, ResultsDir, hash_photo, list_photos, summarise

Sources = Annotated[list[Path], typer.Argument(help="Folders, CSV manifests (a filename/relpath/path "
                                               "column) or ZIP archives of photos.")]


def batch(
    sources: Sources,
    out: Annotated[Path, typer.Option("--out", help="Results folder: parts/ (one CSV per finished "
                                      "chunk), results.csv, summary.json, job.json (the job id).")],
    database: Annotated[str | None, typer.Option(
        "--database", "--db", help="Store URL (catalog read from it, predictions written to it; "
        "default: the service's WHALES_DATABASE_URL setting).")] = None,
    address: Annotated[str | None, typer.Option(
        "--address", help="Join an existing Dask scheduler (tcp://host:8786) instead of starting a "
        "local cluster.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Worker processes of the local cluster (default: one per core "
        "this process may use, its CPU affinity).")] = None,
    chunk_size: Annotated[int | None, typer.Option(
        "--chunk-size", min=1, help="Photos per task (default: $WHALES_BATCH_SIZE).")] = None,
    max_photos: Annotated[int | None, typer.Option(
        "--max-photos", min=1, help="Stop after this many new photos (the rest on a rerun).")] = None,
    root: Annotated[Path | None, typer.Option(
        "--root", help="Folder that manifest paths are relative to (default: the CSV's folder).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=20, help="Candidates per photo.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Identify every photo of SOURCE... on a Dask cluster; rerun to resume (done photos are skipped)."""
    try:
        from distributed import Client, LocalCluster, as_completed

        from whales_be_service.settings import Settings, available_cores
    except ImportError as exc:
        fail(f"{exc}; install the batch extra: pip install 'ecomarineai[batch]'")
    started = time.perf_counter()
    settings = Settings(**({"database_url": database} if database else {}))
    n_workers = workers or available_cores()  # the cores this process may use (its affinity)
    threads = threads_per_worker(n_workers, address)
    if threads is not None:
        settings.inference_threads = threads
    results = ResultsDir(out)
    job_id = results.job_id()
    listing = list_photos(sources, root)
    refs, problems = listing.photos, listing.problems
    for problem in problems:
        typer.echo(f"warning: {problem.source}: {problem.message}", err=True)
    pending, done_before = _pending(refs, results.done(), settings.max_upload_bytes, max_photos)
    chunks = list(_chunks(pending, chunk_size or settings.batch_size))
    wire = wire_settings(settings, address)
    summary: dict[str, Any] = {"job_id": job_id, "sources": len(sources), "photos_listed": len(refs),
                               "done_before": done_before, "processed": 0, "interrupted": False,
                               "failed_chunks": [], "zip_entries_skipped": listing.skipped}
    client = cluster = None
    t_engine = time.perf_counter()
    try:
        if chunks:
            if address:
                client = Client(address)
            else:
                cluster = _local_cluster(LocalCluster, n_workers)
                client = Client(cluster)
            summary["workers"] = len(client.scheduler_info().get("workers", {}))
            t_engine = time.perf_counter()
            futures = client.map(_run_chunk, chunks, settings=wire, job_id=job_id, top_k=top_k,
                                 pure=False)
            with _progress(len(pending)) as bar:
                for future in as_completed(futures):
                    _collect(future, results, summary, bar)
    except KeyboardInterrupt:
        summary["interrupted"] = True
        typer.echo("interrupted: finished chunks are kept; rerun the same command to resume", err=True)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    _finish(results, summary, started, t_engine, json_out)
    if summary["interrupted"]:
        raise typer.Exit(130)
    if summary["failed_chunks"] or problems:
        raise typer.Exit(1)


def _local_cluster(factory: Any, n_workers: int) -> Any:
    """Worker processes that ignore SIGINT (they inherit it at start): Ctrl-C in a terminal reaches
    the whole process group, and only this process should act on it, closing the cluster cleanly."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return factory(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_chunk(chunk: Sequence[tuple[PhotoRef, str]], settings: dict[str, Any], job_id: str,
               top_k: int) -> dict[str, Any]:
    from whales_cli._batch_worker import process_chunk  # imported on the worker

    return process_chunk(chunk, settings, job_id, top_k)


def threads_per_worker(n_workers: int, address: str | None) -> int | None:
    """A local cluster's worker processes share the cores: cores // workers threads each, unless
    WHALES_INFERENCE_THREADS (or _TORCH_THREADS) is set; None (their own settings) on a cluster
    joined with --address. Read from the environment, since Settings fills an unset count in."""
    from whales_be_service.settings import available_cores

    if address is not None or _threads_set_in_env():
        return None
    return max(1, available_cores() // n_workers)


def wire_settings(settings: Any, address: str | None) -> dict[str, Any]:
    """The settings sent to every worker (no API keys). A joined cluster's workers size their own
    threads (their cores, their WHALES_INFERENCE_*): the counts filled in for this machine stay here."""
    own = {"inference_workers", "inference_threads"} if address and not _threads_set_in_env() else set()
    return dict(settings.model_dump(mode="json", exclude={"api_keys", *own}))


def _threads_set_in_env() -> bool:
    return any(os.environ.get(k) for k in ("WHALES_INFERENCE_THREADS", "WHALES_TORCH_THREADS"))


def _pending(refs: Sequence[PhotoRef], done: set[str], limit: int,
             max_photos: int | None) -> tuple[list[tuple[PhotoRef, str]], int]:
    """(photo, sha256) still to do, and how many were skipped as done by an earlier run."""
    pending: list[tuple[PhotoRef, str]] = []
    skipped = 0
    for ref in refs:
        digest = hash_photo(ref, limit) or ""  # unreadable: the worker reports why, every run
        if digest and digest in done:
            skipped += 1
            continue
        if max_photos is not None and len(pending) >= max_photos:
            break
        pending.append((ref, digest))
    return pending, skipped


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="photo", desc="whales batch", smoothing=0.1, mininterval=0.5,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")


def _collect(future: Any, results: ResultsDir, summary: dict[str, Any], bar: Any) -> None:
    """Write one finished chunk; a chunk that failed as a whole (store down, worker lost) is
    reported and left undone, so that the next run retries it."""
    try:
        out = future.result()
    except Exception as exc:
        summary["failed_chunks"].append(f"{type(exc).__name__}: {exc}")
        typer.echo(f"chunk failed (its photos are retried by the next run): {exc}", err=True)
        return
    results.write_part(out["rows"])
    summary["processed"] += len(out["rows"])
    bar.update(len(out["rows"]))


def _finish(results: ResultsDir, summary: dict[str, Any], started: float, t_engine: float,
            json_out: bool) -> None:
    path, rows = results.merge()
    seconds = time.perf_counter() - started
    engine_s = time.perf_counter() - t_engine
    summary.update({"summary": summarise(rows, summary["zip_entries_skipped"]), "results": str(path),
                    "seconds": round(seconds, 3),
                    "photos_per_s": round(summary["processed"] / engine_s, 3) if engine_s > 0 else None})
    results.write_json("summary.json", summary)
    if json_out:
        emit_json(summary)
        return
    counts = summary["summary"]
    typer.echo(f"job {summary['job_id']}: {counts['images']} photo(s) in {path} "
               f"({counts['accepted']} accepted, {counts['rejected']} rejected, {counts['failed']} "
               f"failed); {summary['processed']} processed now, {summary['done_before']} done before")
