"""Benchmark: the reference-equivalent pipeline against ours, as computed and as served over HTTP.

A benchmark, not a timed test: run it by hand (`make bench`) on an otherwise idle machine.

    python scripts/benchmark.py [--data ../shared/data/cetaceans] [--out reports/benchmark.json]

(a) Reference-equivalent: open_clip ViT-B-32 zero-shot gate + timm efficientnet_b4 at 512x512, eager
    fp32, one image at a time (random weights: the cost does not depend on them).
(b) Ours: the library's Embedder + gate on the shared features (compute only, like for like with (a),
    interleaved image by image so that a change in machine load hits both), then the real service
    started as a subprocess: start-to-ready, p50/p95/p99 of /v1/predict at concurrency 1 against a
    catalog of >= 2,000 photos, throughput at concurrency 1/4/16, batch ZIP images/s, peak RSS.
Levers (threads, channels_last, batch size) are measured on our embedding model and reported beside.
The served half (b) lives in `scripts/_benchmark_service.py`.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from _benchmark_service import ROOT, bench_http, import_catalog, import_floor_mb, percentiles, sqlite_copy

TARGETS = {"throughput_ratio_min": 10.0, "p95_s_max": 0.5, "catalog_photos_min": 2000,
           "peak_rss_mb_max": 1024.0, "ready_s_max": 15.0}
CLIP_PROMPTS = ["a photo of a whale", "a photo of a dolphin", "a photo of the sea", "a photo of a shark"]


def _timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def select_photos(data: Path, n_queries: int, seed: int = 0) -> tuple[list[dict], list[dict], list[str]]:
    """Query photos kept out of the catalog (one per individual, or without an id), balanced across
    sources; the catalog is every other identified cetacean photo. Returns (queries, catalog, columns)."""
    with open(data / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows, columns = list(reader), list(reader.fieldnames or [])
    cet = [r for r in rows if r["label"] == "cetacean"]
    by_id: dict[str, list[dict]] = defaultdict(list)
    for r in cet:
        if r["individual_id"].strip():
            by_id[r["individual_id"]].append(r)
    rng = random.Random(seed)
    pool: dict[str, list[dict]] = defaultdict(list)
    for photos in by_id.values():
        if len(photos) >= 2:
            held = rng.choice(photos)
            pool[held["relpath"].split("/")[1]].append(held)
    for r in cet:
        if not r["individual_id"].strip():
            pool[r["relpath"].split("/")[1]].append(r)
    for photos in pool.values():
        rng.shuffle(photos)
    queries: list[dict] = []
    while len(queries) < n_queries and any(pool.values()):
        for source in sorted(pool):
            if pool[source] and len(queries) < n_queries:
                queries.append(pool[source].pop())
    held_out = {q["relpath"] for q in queries}
    catalog = [r for r in cet if r["individual_id"].strip() and r["relpath"] not in held_out]
    return queries, catalog, columns


def load_photos(data: Path, rows: list[dict], max_side: int) -> list:
    from whales_identify.images import load_image

    images = []
    for r in rows:
        im = load_image((data / r["relpath"]).read_bytes())
        im.thumbnail((max_side, max_side))  # the service downscales to analysis_max_side too
        images.append(im)
    return images


class Reference:
    """open_clip ViT-B-32 zero-shot gate + timm efficientnet_b4 at 512x512, eager fp32."""

    def __init__(self) -> None:
        import open_clip
        import timm
        from torchvision import transforms as T

        self.clip, _, self.clip_tf = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
        self.clip.eval()
        with torch.inference_mode():
            text = self.clip.encode_text(open_clip.get_tokenizer("ViT-B-32")(CLIP_PROMPTS))
            self.text = text / text.norm(dim=-1, keepdim=True)
        self.b4 = timm.create_model("efficientnet_b4", pretrained=False, num_classes=0).eval()
        self.b4_tf = T.Compose([T.Resize((512, 512)), T.ToTensor(),
                                T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def forward(self, x_clip: torch.Tensor, x_b4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            f = self.clip.encode_image(x_clip)
            gate = (100.0 * (f / f.norm(dim=-1, keepdim=True)) @ self.text.T).softmax(dim=-1)
            return gate, self.b4(x_b4)

    def __call__(self, image) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
        return self.forward(self.clip_tf(image).unsqueeze(0), self.b4_tf(image).unsqueeze(0))


def build_ours(settings):  # type: ignore[no-untyped-def]
    """The embedder and gate as the service builds them (same settings, same library calls)."""
    from whales_identify.embed import create_embedder
    from whales_identify.gate import create_gate

    embedder = create_embedder(settings.embedding_model, settings.models_dir,
                               backend=settings.inference_backend, batch_size=settings.batch_size,
                               threads=settings.inference_threads)
    gate = create_gate(settings.gate, embedder=embedder, models_dir=settings.models_dir,
                       threshold=settings.gate_threshold, inference_backend=settings.inference_backend,
                       threads=settings.inference_threads)
    return embedder, gate


def run_ours(embedder, gate, images: list) -> None:  # type: ignore[no-untyped-def]
    from whales_identify.gate import shares_features

    features = embedder.features(images)
    shared = shares_features(gate, embedder)
    gate(images, features=features if shared else None)


def bench_compute(images: list, settings, warmup: int = 2) -> dict:  # type: ignore[no-untyped-def]
    """(a) and ours, one image at a time, interleaved; then the levers on our embedding model."""
    ref, (embedder, gate) = Reference(), build_ours(settings)
    x_clip, x_b4 = ref.clip_tf(images[0]).unsqueeze(0), ref.b4_tf(images[0]).unsqueeze(0)
    for im in images[:warmup]:
        ref(im), run_ours(embedder, gate, [im])
    ref_t, ours_t, clip_t, b4_t = [], [], [], []
    for im in images:
        ref_t.append(_timed(ref, im))
        ours_t.append(_timed(run_ours, embedder, gate, [im]))
    with torch.inference_mode():
        for _ in range(3):
            clip_t.append(_timed(ref.clip.encode_image, x_clip))
            b4_t.append(_timed(ref.b4, x_b4))
    r, o = percentiles(ref_t), percentiles(ours_t)
    result = {
        "reference": {"pipeline": "open_clip ViT-B-32 (pretrained=None) zero-shot gate + timm "
                                  "efficientnet_b4 (num_classes=0) at 512x512, eager fp32, batch 1",
                      "per_image_s": r, "images_per_s": 1.0 / r["mean"],
                      "clip_forward_s": float(np.median(clip_t)), "b4_forward_s": float(np.median(b4_t))},
        "ours_compute": {"pipeline": f"{embedder.model_id} on {embedder.backend} (as served) + the "
                                     f"{gate.backend} gate on {getattr(gate, 'feature_model_id', None)} "
                                     f"features (shared when it is the same model and framing), batch 1, "
                                     f"preprocessing included",
                         "embedding_backend": embedder.backend,
                         "gate_backend": gate.backend, "gate_version": getattr(gate, "version", None),
                         "per_image_s": o, "images_per_s": 1.0 / o["mean"]},
        # each image's reference time over ours: robust to load that changes during the run
        "paired_ratio_median": float(np.median(np.asarray(ref_t) / np.asarray(ours_t))),
    }
    del ref
    gc.collect()
    result["levers"] = bench_levers(embedder, gate, images, settings.models_dir)
    return result


def bench_levers(embedder, gate, images: list, models_dir, reps: int = 12) -> dict:  # type: ignore[no-untyped-def]
    """Forward-only images/s of our embedding model under cheap settings (variants timed in turns, so
    a change in machine load hits all of them), batched gate+embedding, and thread settings."""
    from whales_identify.models import create_model
    from whales_identify.transforms import to_batch

    # the PyTorch model whatever the served backend: the levers are measured from eager fp32 up
    model = create_model(embedder.model_id, models_dir)
    x1 = to_batch(images[:1], embedder.cfg)
    variants = {"batch1_eager_fp32": lambda: model(x1)}
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x1_cl = x1.contiguous(memory_format=torch.channels_last)
    variants["batch1_channels_last"] = lambda: cl_model(x1_cl)
    ort_info, ort_run = onnx_runtime_variant(model, images, embedder.cfg, models_dir)
    if ort_run is not None:
        variants["batch1_onnxruntime_fp32"] = lambda: ort_run(x1.numpy())
    times: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for fn in variants.values():
            fn()
        for _ in range(reps):
            for name, fn in variants.items():
                times[name].append(_timed(fn))
        out: dict = {f"{k}_images_per_s": 1.0 / float(np.median(v)) for k, v in times.items()}
        for bs in (4, 16):
            xb = to_batch([images[i % len(images)] for i in range(bs)], embedder.cfg)
            model(xb)
            t = float(np.median([_timed(model, xb) for _ in range(3)]))
            out[f"batch{bs}_eager_fp32_images_per_s"] = bs / t
    batch = [images[i % len(images)] for i in range(16)]
    run_ours(embedder, gate, batch)
    t = float(np.median([_timed(run_ours, embedder, gate, batch) for _ in range(3)]))
    out["gate_embedding_batch16_preprocessing_included_images_per_s"] = 16 / t
    out["onnxruntime"] = ort_info
    out["threads"] = {policy: thread_probe(embedder.model_id, policy) for policy in ("default", "PASSIVE")}
    return out


def onnx_runtime_variant(model, images: list, cfg, models_dir):  # type: ignore[no-untyped-def]
    """The served ONNX export (`whales models export-onnx`, verified on load; exported to a temporary
    folder if the models folder has none) run by ONNX Runtime as the service runs it; its features
    are compared with PyTorch's on the benchmark photos."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return {"available": False, "reason": f"not installed: {exc.name}"}, None
    from whales_identify.errors import ModelNotAvailableError
    from whales_identify.models._onnx import export_onnx, load_onnx_session
    from whales_identify.transforms import to_batch

    threads = torch.get_num_threads()
    try:
        session, meta = load_onnx_session(cfg.model_id, models_dir, threads=threads)
    except ModelNotAvailableError:
        models_dir = tempfile.mkdtemp(prefix="whales-onnx-")
        export_onnx(cfg.model_id, models_dir)
        session, meta = load_onnx_session(cfg.model_id, models_dir, threads=threads)
    x = to_batch(images, cfg)
    with torch.inference_mode():
        ref = model(x).numpy()
    got = session.run(None, {meta["input_name"]: x.numpy()})[0]
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    info = {"available": True, "version": ort.__version__, "images_compared": len(images),
            "max_abs_feature_diff": float(np.abs(ref - got).max()), "min_cosine_to_torch": float(cos.min()),
            "note": "fp32 ONNX Runtime gives the same features (to float rounding), so every "
                    "evaluation result holds unchanged; int8 was not tried"}
    return info, lambda arr: session.run(None, {meta["input_name"]: arr})


_THREAD_PROBE = """
import sys, time, numpy as np, torch
from whales_identify.models import create_model
m, x, out = create_model(sys.argv[1]), torch.randn(1, 3, 224, 224), {}
with torch.inference_mode():
    for th in (1, 2):
        torch.set_num_threads(th); m(x)
    ts = {1: [], 2: []}
    for _ in range(10):
        for th in (1, 2):
            torch.set_num_threads(th); t = time.perf_counter(); m(x); ts[th].append(time.perf_counter() - t)
print(1 / np.median(ts[1]), 1 / np.median(ts[2]))
"""


def thread_probe(model_id: str, wait_policy: str) -> dict:
    """Batch-1 images/s at 1 and 2 torch threads in a fresh process with OMP_WAIT_POLICY set (it is
    read once, at start). Spinning OpenMP threads collapse when other processes share the cores."""
    env = {**os.environ}
    if wait_policy != "default":
        env["OMP_WAIT_POLICY"] = wait_policy
    proc = subprocess.run([sys.executable, "-c", _THREAD_PROBE, model_id], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    try:
        one, two = (float(v) for v in proc.stdout.split()[-2:])
    except ValueError:
        return {"error": proc.stderr[-500:]}
    return {"threads1_images_per_s": one, "threads2_images_per_s": two}


# --- report -------------------------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": list(os.getloadavg())}


def summarize(report: dict) -> dict:
    ref = report["compute"]["reference"]["images_per_s"]
    ours = report["compute"]["ours_compute"]["images_per_s"]
    http = report.get("http", {})
    thr = {c: v["requests_per_s"] for c, v in http.get("throughput", {}).items()}
    p95 = http.get("latency_c1_s", {}).get("p95")
    photos = (http.get("served_catalog") or {}).get("images", 0)
    return {
        "throughput_ratio": ours / ref,
        "throughput_ratio_batched": report["compute"]["levers"][
            "gate_embedding_batch16_preprocessing_included_images_per_s"] / ref,
        "throughput_ratio_http": (max(thr.values()) / ref) if thr else None,
        "targets": {
            "throughput_ratio>=10": ours / ref >= TARGETS["throughput_ratio_min"],
            "p95_predict_http<=0.5s_with_catalog>=2000": (p95 is not None and p95 <= TARGETS["p95_s_max"]
                                                          and photos >= TARGETS["catalog_photos_min"]),
            "peak_rss<=1GB": (http.get("peak_rss_mb") or 1e9) <= TARGETS["peak_rss_mb_max"],
            "ready<=15s": (http.get("start_to_ready_s") or 1e9) <= TARGETS["ready_s_max"],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "cetaceans")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmark.json")
    ap.add_argument("--n-compute", type=int, default=12, help="images timed for (a) and ours")
    ap.add_argument("--n-latency", type=int, default=50, help="sequential /v1/predict requests")
    ap.add_argument("--queries", type=int, default=50, help="query photos held out of the catalog")
    ap.add_argument("--zip-images", type=int, default=32)
    ap.add_argument("--catalog-max", type=int, default=None, help="fewer catalog photos (debugging)")
    ap.add_argument("--catalog-cache", type=Path, default=ROOT / "data" / "benchmark",
                    help="where the imported catalog is kept between runs")
    ap.add_argument("--catalog-only", action="store_true", help="only build the catalog cache")
    ap.add_argument("--skip-http", action="store_true")
    args = ap.parse_args()

    from whales_be_service.settings import Settings

    settings = Settings()
    if settings.inference_threads:
        torch.set_num_threads(settings.inference_threads)
    queries, catalog_rows, columns = select_photos(args.data, args.queries)
    catalog_rows = catalog_rows[:args.catalog_max]
    catalog_info = None
    if not args.skip_http:  # setup first: the catalog (reused from the cache when it is there)
        catalog_info = import_catalog(args.data, catalog_rows, columns, settings.embedding_model,
                                      args.catalog_cache)
        if args.catalog_only or catalog_info["returncode"] != 0:
            print(json.dumps(catalog_info, indent=2))
            if args.catalog_only:
                return
    images = load_photos(args.data, queries[:args.n_compute], settings.analysis_max_side)
    report: dict = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
                    "machine": machine_info(), "gpu": None,
                    "gpu_note": "no GPU was lent to the session that produced this run; the GPU "
                                "measurement (batched, half precision) was not made",
                    "targets_definition": TARGETS,
                    "environment": {k: v for k, v in sorted(os.environ.items())
                                    if k.startswith(("WHALES_", "OMP_", "MKL_"))}}
    t0 = time.perf_counter()
    report["compute"] = bench_compute(images, settings)
    report["compute"]["seconds"] = time.perf_counter() - t0
    gc.collect()
    if catalog_info is not None:
        with tempfile.TemporaryDirectory(prefix="whales-bench-") as tmp_name:
            tmp = Path(tmp_name)
            if catalog_info["returncode"] == 0:  # a copy: the run stores its predictions there
                sqlite_copy(Path(catalog_info["db"]), tmp / "bench.db")
            db = f"sqlite:///{tmp / 'bench.db'}"
            env = {"WHALES_DATABASE_URL": db, "WHALES_RATE_LIMIT_ENABLED": "false"}
            report["http"] = bench_http(args.data, queries, catalog_info, env, tmp, args.n_latency,
                                        args.zip_images)
            report["http"]["memory_floor"] = import_floor_mb()
            report["http"]["queries"] = {"n": len(queries), "by_source": dict(
                sorted({s: sum(q["relpath"].split("/")[1] == s for q in queries)
                        for s in {q["relpath"].split("/")[1] for q in queries}}.items()))}
    report["machine"]["loadavg_at_end"] = list(os.getloadavg())
    report = {**summarize(report), **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("throughput_ratio", "throughput_ratio_batched",
                                             "throughput_ratio_http", "targets")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
