"""What verifying fewer candidates per query costs in accuracy, exactly, on stored query records.

A query verifies the `global_candidates` best individuals by global cosine and the
`vote_candidates` best by LNBNN vote (`MatchConfig`); verification is most of a query's time. An
individual that is not verified has 0 inliers, and a verified one's inliers do not depend on which
others are verified, so a smaller budget G:V is simulated exactly by zeroing the inliers of every
individual outside the top G by cosine and the top V by vote (vote > 0) of each record. The
records keep the 40 best of each score and every individual with inliers (`harness.KEEP`), so any
G, V <= 40 is exact; the records as stored are the budget they were scored with (30:80).

Each budget is refitted and reported like `reid_compare_fusions.py` (repeated splits of
individuals, fit on the calibration part, mean ± SE on the reported part), with the given fusion
and open-set rule, and the paired count of known queries whose top-1 turns right / wrong under
one calibration fitted on all records of the stored budget.

Usage: python scripts/reid_fewer_verified.py R.npz [R2.npz ...] [--budgets 15:30 10:20]
       [--fusion linear] [--open-set threshold] [--rate 0.10] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid_compare_fusions import mean_se_cells, write_report  # noqa: E402

from whales_identify.evaluation.metrics import QueryRecord, fit_calibration  # noqa: E402
from whales_identify.evaluation.records import merge_records  # noqa: E402
from whales_identify.evaluation.repeated import repeated_splits  # noqa: E402
from whales_identify.reid.matching import rank  # noqa: E402

COLUMNS = ("top1", "top5", "map5", "coverage_at_98", "open_set.new_rate_on_known", "open_set.new_recall")
LIMIT = 40  # harness.KEEP: the records hold the 40 best individuals by each score


def with_budget(records: list[QueryRecord], global_candidates: int,
                vote_candidates: int) -> list[QueryRecord]:
    """The records as if each query had verified only its top `global_candidates` by cosine and
    top `vote_candidates` by vote (the others keep their cosine and vote, with 0 inliers)."""
    if max(global_candidates, vote_candidates) > LIMIT:
        raise ValueError(f"the records hold the {LIMIT} best by each score: a budget above it is not exact")
    out = []
    for q in records:
        s = q.scores
        finite = np.isfinite(s.cos)
        keep = np.zeros(len(s.cos), bool)
        keep[[i for i in np.argsort(-s.cos, kind="stable")[:global_candidates] if finite[i]]] = True
        by_vote = np.argsort(-s.vote, kind="stable")[:vote_candidates]
        keep[[i for i in by_vote if finite[i] and s.vote[i] > 0]] = True
        scores = dataclasses.replace(s, inliers=np.where(keep, s.inliers, 0.0))
        out.append(dataclasses.replace(q, scores=scores))
    return out


def _top1(records: list[QueryRecord], cal) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Whether each query's top-1 under `cal` is its whale, as the matcher ranks (`matching.rank`)."""
    firsts = [rank(q.scores, cal, 1).candidates for q in records]
    return np.array([bool(c) and c[0].individual_id == q.individual_id for c, q in zip(firsts, records,
                                                                                        strict=True)])


def add_refit_options(ap: argparse.ArgumentParser) -> None:
    """How each variant is refitted and where the report goes (shared with `reid_compare_runs.py`)."""
    ap.add_argument("--fusion", default="linear")
    ap.add_argument("--open-set", default="threshold")
    ap.add_argument("--rate", type=float, default=0.10, help="new-individual rate on known queries the "
                                                             "open-set cut is fitted to (negative: none)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path, nargs="+", help="record files of one run (folds are pooled)")
    ap.add_argument("--budgets", nargs="+",
                    default=["30:40", "20:40", "20:30", "15:30", "15:20", "10:20", "10:10"],
                    help="G:V pairs (global_candidates:vote_candidates), each <= 40")
    add_refit_options(ap)
    args = ap.parse_args(argv)
    records, meta = merge_records(args.records)
    model_id, rate = str(meta.get("model_id", "")), (None if args.rate < 0 else args.rate)
    stored = meta.get("config", {})
    stored_budget = f"{stored.get('global_candidates', '?')}:{stored.get('vote_candidates', '?')}"
    shipped = fit_calibration(records, model_id, fusion=args.fusion, open_set=args.open_set,
                              new_rate_on_known=rate)
    known = [q for q in records if q.mode == "known"]
    sources = sorted({q.source for q in records})  # each tabulated alone too (fins are not crops)
    base_hits = _top1(known, shipped)
    out = {"records": [str(p) for p in args.records], "model_id": model_id, "seeds": args.seeds,
           "fusion": args.fusion, "open_set": args.open_set, "new_rate_on_known": rate,
           "stored_budget": stored_budget, "budgets": {}}
    print(f"{model_id}: {len(records)} records ({len(known)} known), stored budget {stored_budget}; "
          f"{args.fusion} + {args.open_set} at rate {rate}; mean ± SE over {args.seeds} splits")
    print("| budget G:V | scope | " + " | ".join(COLUMNS) + " | top-1 right only here / only stored |")
    print("|---|---|" + "---|" * (len(COLUMNS) + 1))
    for label in [stored_budget, *args.budgets]:
        if label == stored_budget:
            variant = records
        else:
            g, v = (int(x) for x in label.split(":"))
            variant = with_budget(records, g, v)
        rep = repeated_splits(variant, model_id, args.seeds, fusion=args.fusion, open_set=args.open_set,
                              new_rate_on_known=rate, sources=sources)
        hits = _top1([q for q in variant if q.mode == "known"], shipped)
        paired = {"right_only_here": int((hits & ~base_hits).sum()),
                  "right_only_stored": int((~hits & base_hits).sum())}
        out["budgets"][label] = {**rep, "paired_top1_vs_stored": paired}
        scopes = [("all", rep["mean_se"])] + [(src, ps["mean_se"])
                                               for src, ps in sorted(rep["per_source"].items())]
        for scope, ms in scopes:
            pair = f"{paired['right_only_here']} / {paired['right_only_stored']}" if scope == "all" else ""
            print(f"| {label} | {scope} | " + " | ".join(mean_se_cells(ms, COLUMNS)) + f" | {pair} |")
    if args.json:
        write_report(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
