"""How long a catalog merge and a rename take when the database holds many predictions.

Both rewrite every stored prediction that names the retired id; those rows are found by the indexed
`individual_id` column or by a LIKE scan of the `candidates` and `reviewer_decision` JSON columns, so
their cost grows with the number of predictions (docs/DATABASE.md, `individual_aliases`).

    python scripts/benchmark_curation.py --db sqlite:////tmp/bench.db --predictions 100000
    python scripts/benchmark_curation.py --db postgresql://postgres@127.0.0.1:55432/bench --predictions 100000

The database must be empty (a new SQLite file, a new PostgreSQL database or schema).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from integrations.base import open_store
from whales_identify.records.store import CatalogImage, PredictionRecord


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", required=True, help="an empty database URL")
    p.add_argument("--predictions", type=int, default=100_000)
    p.add_argument("--individuals", type=int, default=2_000)
    p.add_argument("--merges", type=int, default=3)
    p.add_argument("--out", help="write the result as JSON here")
    a = p.parse_args()
    store = open_store(a.db)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    ids = [f"hw_{i:05d}" for i in range(a.individuals)]
    store.add_catalog_images([CatalogImage(f"img_{i}", ids[i], "humpback_whale", "m", np.ones(4, np.float32))
                              for i in range(len(ids))])
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with store.atomic():
        for k in range(a.predictions):  # five candidates each, drawn from the catalog
            cands = [{"individual_id": ids[j], "species": "humpback_whale", "score": 0.5}
                     for j in rng.choice(len(ids), 5, replace=False)]
            store.save_prediction(PredictionRecord(
                f"p{k:07d}", "0" * 64, "x.jpg", False, None, 0.9, "g", "v", "humpback_whale",
                cands[0]["individual_id"], False, 0.5, cands, "m", created_at=t0 + timedelta(seconds=k)))
    report = {"db": a.db.split(":")[0], "predictions": a.predictions, "individuals": a.individuals,
              "insert_s": round(time.perf_counter() - start, 2), "merges": [],
              "load_average": os.getloadavg()[0]}
    for m in range(a.merges):
        source, target = ids[2 * m + 1], ids[2 * m + 2]
        start = time.perf_counter()
        result = store.merge_individuals(source, target, "benchmark")
        report["merges"].append({"seconds": round(time.perf_counter() - start, 3),
                                 "predictions_rewritten": result["predictions_rewritten"]})
    start = time.perf_counter()
    store.rename_individual(ids[-1], "hw_renamed", "benchmark")
    report["rename_s"] = round(time.perf_counter() - start, 3)
    store.close()
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
