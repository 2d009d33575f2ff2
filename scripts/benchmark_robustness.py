"""Gate robustness on the held-out part: TPR/TNR under JPEG q20, noise, blur, 128 px, rotation, crops.

    python scripts/benchmark_robustness.py --root ../shared/data/cetaceans

Writes reports/robustness.json. Uses the committed head and threshold yaml, the same split as
`whales gate calibrate` (salt and fraction read from the head's metadata), at most --cap items per
source (stable choice) to bound cost on a 2-core machine; features are cached under /tmp/gate_cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from whales_identify.gate import create_gate, load_gate_config
from whales_identify.train import gate as gt
from whales_identify.train.gate_synthetic import PERTURBATIONS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("../shared/data/cetaceans"))
    p.add_argument("--manifest", type=Path, default=None, help="default: ROOT/manifest.csv")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--config", type=Path, default=None,
                   help="yaml of gate overrides (default: the head's own threshold and band)")
    p.add_argument("--out", type=Path, default=Path("reports/robustness.json"))
    p.add_argument("--cap", type=int, default=150, help="max held-out items per source")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = args.manifest or args.root / "manifest.csv"
    if not manifest.is_file():
        print(f"no manifest at {manifest}: nothing to benchmark", file=sys.stderr)
        return 2
    overrides = load_gate_config(args.config) if args.config else None
    gate = create_gate("embedded", models_dir=args.models_dir, config=overrides)
    split = gate.head.meta.get("split", {})
    items = gt.cap_per_source(gt.test_part(manifest, args.root, split.get("salt", gt.SPLIT_SALT),
                                           split.get("test_fraction", 0.5)), args.cap)
    t0 = time.time()
    result = gt.benchmark_robustness(items, gate.embedder, gate.head, gate.threshold,
                                     ["clean", *PERTURBATIONS], progress=sys.stderr.isatty())
    report = {"head": gate.version, "threshold": gate.threshold, "feature_model_id": gate.feature_model_id,
              "items": len(items), "cap_per_source": args.cap, "seconds": round(time.time() - t0, 1),
              "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": "python scripts/benchmark_robustness.py " + " ".join(argv or sys.argv[1:]),
              "perturbations": result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'view':16s} {'TPR':>7s} {'TNR':>7s}  worst source")
    for view, r in result.items():
        worst = min(r["per_source"].items(), key=lambda kv: kv[1]["rate"])
        name, w = worst
        print(f"{view:16s} {r['tpr']:7.4f} {r['tnr']:7.4f}  {name} {w['metric']}={w['rate']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
