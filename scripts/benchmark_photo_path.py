"""The path of one photo, measured on the code tree it is run against (issue 22 §4).

    PYTHONPATH=<tree> python scripts/benchmark_photo_path.py --label before|after \
        --data ../shared/data/cetaceans --models-dir models --out reports/photo_path_benchmark.json

Two measurements, each per photo, on real photos:

- `decode`: the service's upload path up to the pixels and the EXIF sighting (`uploads.decode` and the
  EXIF read), on Happywhale boat photos (full-size uploads); also the number of `PIL.Image.open`
  calls per photo. Before: a format check, a decode and an EXIF read, each opening the bytes.
- `map`: a `Prediction` (5 candidates) to its stored record and to the JSON answer as the route
  gives it (validated against `PredictionOut` and serialised, as FastAPI does), per prediction.
- `identify`: `Identifier([photo])` with the default models (re-ID embedder + embedded gate, whose
  head reads another backbone's features: the passes are not shared), per rejected photo (the
  manifest's non-cetaceans the gate rejects) and per accepted photo (cetaceans it accepts).

Run it once per tree (the "before" tree from `git archive <commit>`), alternating, so that machine
load drifts hit both; every run is appended under its label with the load average and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from PIL import Image


def _mean_se(values: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    """Wall time per photo (mean and standard error over photos) and, where given, the CPU time of
    this process per photo (all its threads: less sensitive to the load of other processes)."""
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    out = {"mean_ms": round(1000 * statistics.fmean(values), 3), "se_ms": round(1000 * se, 3),
           "n": len(values)}
    if cpu:
        cpu_se = statistics.stdev(cpu) / len(cpu) ** 0.5 if len(cpu) > 1 else 0.0
        out.update(cpu_mean_ms=round(1000 * statistics.fmean(cpu), 3), cpu_se_ms=round(1000 * cpu_se, 3))
    return out


def _decode_run(paths: list[Path], repeats: int) -> dict[str, Any]:
    from whales_be_service.settings import Settings
    from whales_be_service.uploads import Decoded, decode

    settings = Settings(database_url="memory://", frontend_dir=None)
    if hasattr(Decoded, "sighting"):  # one open: the EXIF travels with the decoded photo
        def run(name: str, data: bytes) -> Any:
            item = decode(name, data, settings)
            return item, item.sighting
    else:
        from whales_be_service.pipeline import exif_sighting  # the old path: a third open

        def run(name: str, data: bytes) -> Any:
            return decode(name, data, settings), exif_sighting(data)

    photos = [(p.name, p.read_bytes()) for p in paths]
    opens = []
    real_open = Image.open

    def counting(*args: Any, **kwargs: Any) -> Any:
        opens.append(1)
        return real_open(*args, **kwargs)

    Image.open = counting  # type: ignore[assignment]  # only to count, one photo
    try:
        run(*photos[0])
    finally:
        Image.open = real_open  # type: ignore[assignment]
    per_photo, cpu = [], []
    for name, data in photos:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            run(name, data)
        per_photo.append((time.perf_counter() - t0) / repeats)
        cpu.append((time.process_time() - c0) / repeats)
    return {"pil_opens_per_photo": len(opens), **_mean_se(per_photo, cpu)}


def _map_run(photo: Path, repeats: int) -> dict[str, Any]:
    """Prediction -> stored record and -> the JSON answer, as the route answers (FastAPI validates
    what a route returns against `PredictionOut`, then serialises it)."""
    from types import SimpleNamespace

    import numpy as np

    from whales_be_service.schemas import PredictionOut
    from whales_be_service.settings import Settings
    from whales_be_service.uploads import decode
    from whales_identify.records.store import Sighting
    from whales_identify.results import Candidate, Prediction

    settings = Settings(database_url="memory://", frontend_dir=None, store_query_images=False)
    item = decode(photo.name, photo.read_bytes(), settings)
    cands = [Candidate(f"hw_{i}", "humpback_whale", 0.9 - i / 10, 0.5, f"img_{i}", i) for i in range(5)]
    pred = Prediction(False, None, True, 0.97, "accept", "embedded", "g1", "humpback_whale", 0.8, "hw_0",
                      False, 0.5, cands, [0, 0, item.image.width, item.image.height], "m1",
                      embedding=np.zeros(8, np.float32))
    sighting = Sighting(latitude=1.0, longitude=2.0)
    store = SimpleNamespace(save_prediction=lambda record, image_jpeg=None: None)
    try:
        from whales_be_service.mapping import prediction_out
        from whales_be_service.use_cases.predict import PredictPhotos

        photos = PredictPhotos(lambda: None, store, settings)  # type: ignore[arg-type]

        def run() -> Any:
            photos.save(pred, item, "p1", sighting)
            answer = prediction_out(pred, item, "p1", False, sighting)
            return PredictionOut.model_validate(answer.model_dump()).model_dump(mode="json")
    except ImportError:  # the tree before: record built in store_prediction, answer as a dict
        from whales_be_service.pipeline import payload, store_prediction

        state = SimpleNamespace(settings=settings, store=store, purged_at=0.0)

        def run() -> Any:
            store_prediction(state, pred, item, "p1", sighting)  # type: ignore[arg-type]
            return PredictionOut.model_validate(payload(pred, item, "p1", False, sighting)).model_dump(
                mode="json")

    for _ in range(50):
        run()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return _mean_se(times, cpu)


def _identify_run(data: Path, models_dir: Path, n: int) -> dict[str, Any]:
    from whales_identify.data import read_manifest
    from whales_identify.embed import create_embedder
    from whales_identify.gate import create_gate, shares_features
    from whales_identify.identify import Identifier
    from whales_identify.images import load_image
    from whales_identify.models.entries import DEFAULT_REID_MODEL
    from whales_identify.records.store import InMemoryStore
    from whales_identify.reid.catalog import Catalog

    embedder = create_embedder(DEFAULT_REID_MODEL, models_dir)
    gate = create_gate("embedded", embedder=embedder, models_dir=models_dir)
    identifier = Identifier(gate, embedder, Catalog(InMemoryStore(), embedder.model_id))
    rows = read_manifest(data / "manifest.csv")
    negatives = [r for r in rows if not r.is_cetacean][:n]
    positives = [r for r in rows if r.is_cetacean and "/happywhale/" in f"/{r.relpath}"][: n // 2]
    images = {r.relpath: load_image((data / r.relpath).read_bytes()) for r in negatives + positives}
    for im in list(images.values())[:3]:
        identifier([im], top_k=5)  # warm-up: sessions, caches
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for image in images.values():
        t0, c0 = time.perf_counter(), time.process_time()
        (pred,) = identifier([image], top_k=5)
        wall[pred.rejected].append(time.perf_counter() - t0)
        cpu[pred.rejected].append(time.process_time() - c0)
    return {"embedder": embedder.model_id, "embedder_backend": embedder.backend,
            "gate": getattr(gate, "version", ""), "shared_pass": shares_features(gate, embedder),
            "per_rejected_photo": _mean_se(wall[True], cpu[True]),
            "per_accepted_photo": _mean_se(wall[False], cpu[False]), "photos": len(images)}


METRICS = {"decode_per_photo": ("decode",), "map_per_prediction": ("map",),
           "identify_per_rejected_photo": ("identify", "per_rejected_photo"),
           "identify_per_accepted_photo": ("identify", "per_accepted_photo")}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per label and metric: the mean over runs of the per-photo wall and CPU means, with the standard
    error over runs (the load of the shared machine differs from run to run)."""
    out: dict[str, Any] = {}
    for label, label_runs in runs.items():
        for metric, path in METRICS.items():
            found = []
            for run in label_runs:
                node: Any = run
                for key in path:
                    node = node.get(key) if isinstance(node, dict) else None
                if node and node.get("n"):
                    found.append(node)
            if not found:
                continue
            row = {"runs": len(found)}
            for key in ("mean_ms", "cpu_mean_ms"):
                values = [f[key] for f in found if key in f]
                if values:
                    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
                    row[key] = round(statistics.fmean(values), 2)
                    row[key.replace("mean", "se")] = round(se, 2)
            out.setdefault(metric, {})[label] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="before or after (free text)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/cetaceans"))
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--decode-photos", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--identify-photos", type=int, default=80, help="non-cetaceans (and half as many "
                                                                    "cetaceans)")
    ap.add_argument("--parts", default="decode,map,identify")
    ap.add_argument("--out", type=Path, default=Path("reports/photo_path_benchmark.json"))
    ap.add_argument("--summarise-only", action="store_true", help="recompute the summary of --out")
    args = ap.parse_args()
    if args.summarise_only:
        report = json.loads(args.out.read_text())
        report["summary"] = summarise(report["runs"])
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["summary"], indent=2))
        return
    if not (args.data / "manifest.csv").is_file():
        raise SystemExit(f"{args.data}/manifest.csv not found: the shared photos are needed")
    run: dict[str, Any] = {"load_average_start": os.getloadavg()[0], "cpus": os.cpu_count()}
    import whales_identify

    tree = Path(whales_identify.__file__).resolve().parents[1]
    run["tree"] = str(tree)
    parts = args.parts.split(",")
    if "decode" in parts:
        photos = sorted((args.data / "positives" / "happywhale").glob("*.jpg"))[: args.decode_photos]
        run["decode"] = _decode_run(photos, args.repeats)
    if "map" in parts:
        run["map"] = _map_run(sorted((args.data / "positives" / "happywhale").glob("*.jpg"))[0], 2000)
    if "identify" in parts:
        run["identify"] = _identify_run(args.data, args.models_dir, args.identify_photos)
    run["load_average_end"] = os.getloadavg()[0]
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report.setdefault("command", "PYTHONPATH=<tree> python scripts/benchmark_photo_path.py --label "
                                 "<before|after> (before: git archive of the commit before the change)")
    report.setdefault("runs", {}).setdefault(args.label, []).append(run)
    report["summary"] = summarise(report["runs"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({args.label: run}, indent=2))


if __name__ == "__main__":
    main()
