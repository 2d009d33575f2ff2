"""Fit a calibration to ship (packaged, or a candidate to opt into) from stored query records, all of them.

The repeated splits (`whales evaluate --from-records R.npz --fit-calibration F ...` or
`scripts/reid_compare_fusions.py`) measure the fitting *procedure* on individuals it did not see
(fit on 30 %, report on 70 %, three salts). The file that ships is the same procedure applied to
every record: more individuals (the last partial cross-fit: 35 in a calibration part, ~110 in
all), a steadier fusion and P(new) model, and no reported number depends on it. The outside
measurement (other whales, through the API) is what judges it.

Usage: python scripts/reid_fit_shipped_calibration.py R.npz [R2.npz ...] OUT.json [--fusion logistic]
       [--open-set probability] [--new-rate-on-known 0.15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whales_identify.evaluation.metrics import fit_calibration  # noqa: E402
from whales_identify.evaluation.records import merge_records  # noqa: E402
from whales_identify.reid.calibrate import save_calibration  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path, nargs="+", help="record files of one run (folds are pooled)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--fusion", default="logistic", choices=("logistic", "linear"))
    ap.add_argument("--open-set", default="probability", choices=("probability", "threshold"))
    ap.add_argument("--new-rate-on-known", type=float, default=0.15,
                    help="share of known whales the open-set cut may call new; a negative value: "
                    "P(new) >= 0.5 or the MAP@5-optimal threshold")
    args = ap.parse_args(argv)
    records, meta = merge_records(args.records)
    model_id = str(meta["model_id"])
    rate = args.new_rate_on_known if args.new_rate_on_known >= 0 else None
    prov = {k: v for k, v in meta.items() if k != "model_id"}
    prov.update({"records": [p.name for p in args.records], "fitted_on": "all records (both splits); "
                 "the procedure is measured by the repeated splits, docs/REID.md"})
    cal = fit_calibration(records, model_id, provenance=prov, fusion=args.fusion,
                          open_set=args.open_set, new_rate_on_known=rate)
    save_calibration(cal, args.out)
    print(f"{args.out}: {model_id}, {cal.fusion} fusion, open set {cal.open_set_rule}, "
          f"P(new) target {cal.new_probability_target:.4f}, threshold "
          f"{cal.new_individual_threshold:.4f}, {len(records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
