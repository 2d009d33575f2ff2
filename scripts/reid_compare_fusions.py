"""Compare fusions and open-set rules on the same stored query records, over repeated splits.

The records come from `whales evaluate ... --fit-calibration F --records-out R.npz` (plain or
cross-fitted); nothing is matched again. Each variant is refitted on the calibration part of each
split (`--seeds` salts of the split of individuals) and reported on the other part: mean ± SE.

Usage: python scripts/reid_compare_fusions.py R.npz [--seeds 3] [--source noaa_right_whale_headcrops]
       [--rates 0.1 0.15] [--json reports/reid_fusion_comparison.json]

`--rates R...` adds, per rate, each fusion with its open-set cut fitted so that at most that share
of the calibration part's known queries is called new (`--new-rate-on-known`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whales_identify.evaluation.records import merge_records  # noqa: E402
from whales_identify.evaluation.repeated import repeated_splits  # noqa: E402

VARIANTS = (("linear", "threshold"), ("linear", "probability"), ("logistic", "threshold"),
            ("logistic", "probability"))
COLUMNS = ("top1", "top5", "map5", "top5_global", "coverage_at_98", "open_set.new_rate_on_known",
           "open_set.new_recall", "open_set.map5_with_new_label")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path, nargs="+", help="record files of one run (folds are pooled)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--source", help="also tabulate this source alone")
    ap.add_argument("--rates", type=float, nargs="*", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    variants = [(f, o, None) for f, o in VARIANTS] + [
        (f, o, r) for r in args.rates for f, o in VARIANTS if (f, o) != ("linear", "probability")]
    records, meta = merge_records(args.records)
    model_id = str(meta.get("model_id", ""))
    out = {"records": [str(p) for p in args.records], "model_id": model_id, "seeds": args.seeds,
           "variants": {}}
    print(f"{model_id}: {len(records)} query records, {args.seeds} splits; mean ± SE, reported part")
    print("| fusion | open set | rate | scope | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|---|" + "---|" * len(COLUMNS))
    for fusion, open_set, rate in variants:
        rep = repeated_splits(records, model_id, args.seeds, fusion=fusion, open_set=open_set,
                              sources=[args.source] if args.source else None, new_rate_on_known=rate)
        key = f"{fusion}+{open_set}" + ("" if rate is None else f"@{rate:g}")
        out["variants"][key] = rep
        scopes = [("all", rep["mean_se"])]
        if args.source and args.source in rep["per_source"]:
            scopes.append((args.source, rep["per_source"][args.source]["mean_se"]))
        for scope, ms in scopes:
            print(f"| {fusion} | {open_set} | {'-' if rate is None else rate} | {scope} | "
                  + " | ".join(mean_se_cells(ms, COLUMNS)) + " |")
    if args.json:
        write_report(args.json, out)
    return 0


def mean_se_cells(mean_se: dict, columns: tuple[str, ...]) -> list[str]:
    """Table cells `mean ± SE` of a `repeated_splits` summary ("-" where a column is missing)."""
    return [f"{mean_se[c]['mean']:.3f} ± {mean_se[c]['se']:.3f}" if c in mean_se else "-" for c in columns]


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
