"""Compare two or more matcher configurations on the same queries, from their stored records.

Each run is `whales evaluate ... --fit-calibration F --records-out R.npz` with one configuration
(e.g. `--vote-index-codes SQ8` against the default), over the same manifest and embedding model.
Each is refitted and reported like the shipped calibration (`reid_fewer_verified.py`: repeated
splits of individuals, fit on the calibration part, mean ± SE on the reported part), and each later
run is paired with the first: known queries whose top-1 is right only in it / only in the first,
each run ranked by a calibration fitted on all of its own records.

Usage: python scripts/reid_compare_runs.py FIRST.npz OTHER.npz [...] [--fusion linear]
       [--open-set threshold] [--rate 0.10] [--seeds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid_compare_fusions import mean_se_cells, write_report  # noqa: E402
from reid_fewer_verified import COLUMNS, _top1, add_refit_options  # noqa: E402

from whales_identify.evaluation.metrics import fit_calibration  # noqa: E402
from whales_identify.evaluation.records import load_records  # noqa: E402
from whales_identify.evaluation.repeated import repeated_splits  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path, nargs="+",
                    help="one record file per configuration; the first is the reference")
    add_refit_options(ap)
    args = ap.parse_args(argv)
    rate = None if args.rate < 0 else args.rate
    out: dict = {"fusion": args.fusion, "open_set": args.open_set, "new_rate_on_known": rate,
                 "seeds": args.seeds, "runs": {}}
    reference: tuple[list[str], np.ndarray] | None = None
    print(f"{args.fusion} + {args.open_set} at rate {rate}; mean ± SE over {args.seeds} splits")
    print("| run | vote index codes | scope | " + " | ".join(COLUMNS)
          + " | top-1 right only here / only in the first | seconds per query |")
    print("|---|---|---|" + "---|" * (len(COLUMNS) + 2))
    for path in args.records:
        records, meta = load_records(path)
        model_id = str(meta.get("model_id", ""))
        codes = str((meta.get("config") or {}).get("ivf_codes", "?"))
        known = sorted((q for q in records if q.mode == "known"), key=lambda q: q.relpath)
        hits = _top1(known, fit_calibration(records, model_id, fusion=args.fusion, open_set=args.open_set,
                                            new_rate_on_known=rate))
        keys = [q.relpath for q in known]
        if reference is None:
            reference, paired = (keys, hits), None
        else:
            if keys != reference[0]:
                raise SystemExit(f"{path}: not the same known queries as {args.records[0]}")
            paired = {"right_only_here": int((hits & ~reference[1]).sum()),
                      "right_only_first": int((~hits & reference[1]).sum()), "known_queries": len(keys)}
        sources = sorted({q.source for q in records})
        rep = repeated_splits(records, model_id, args.seeds, fusion=args.fusion, open_set=args.open_set,
                              new_rate_on_known=rate, sources=sources)
        seconds = float(np.mean([q.seconds for q in records]))
        out["runs"][str(path)] = {"model_id": model_id, "ivf_codes": codes, "config": meta.get("config"),
                                  **rep, "paired_top1_vs_first": paired, "seconds_per_query": seconds}
        scopes = [("all", rep["mean_se"])] + [(s, p["mean_se"]) for s, p in sorted(rep["per_source"].items())]
        for scope, ms in scopes:
            pair = "" if paired is None or scope != "all" else \
                f"{paired['right_only_here']} / {paired['right_only_first']}"
            secs = f"{seconds:.3f}" if scope == "all" else ""
            print(f"| {path.name} | {codes} | {scope} | " + " | ".join(mean_se_cells(ms, COLUMNS))
                  + f" | {pair} | {secs} |")
    if args.json:
        write_report(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
