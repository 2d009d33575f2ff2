"""The issue-17 scripts run against the library: the fusion comparison on stored records
(synthetic, fast) and the fresh-catalog protocol through a real service (small, slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from whales_identify.evaluation.metrics import QueryRecord
from whales_identify.evaluation.records import save_records
from whales_identify.reid.matching import Scores

ROOT = Path(__file__).resolve().parents[2]


def _records(n: int = 240) -> list[QueryRecord]:
    rng = np.random.default_rng(0)
    ids = [f"rw_{k}" for k in range(30)]
    out = []
    for q in range(n):
        truth = ids[q % 30]
        cos = rng.normal(0.3, 0.05, 30)
        mode = "new" if q % 6 == 0 else "known"
        if mode == "known":
            cos[ids.index(truth)] += 0.15
        scores = Scores(ids, ["s"] * 30, cos, rng.exponential(1.0, 30), rng.poisson(3, 30).astype(float),
                        np.arange(30), [f"im_{i}" for i in ids], [("s", 0.9)])
        out.append(QueryRecord(f"{q}.jpg", truth, "s", "src", "calibration", mode, scores, 0.01))
    return out


def test_compare_fusions_tabulates_every_variant(tmp_path):
    save_records(_records(), tmp_path / "r.npz", meta={"model_id": "m"})
    out = tmp_path / "cmp.json"
    res = subprocess.run([sys.executable, "scripts/reid_compare_fusions.py", str(tmp_path / "r.npz"),
                          "--seeds", "3", "--json", str(out)], cwd=ROOT, check=True, capture_output=True,
                         text=True, timeout=300)
    report = json.loads(out.read_text())
    assert set(report["variants"]) == {"linear+threshold", "linear+probability", "logistic+threshold",
                                       "logistic+probability"}
    for variant in report["variants"].values():
        assert len(variant["per_seed"]) == 3 and variant["mean_se"]["top1"]["n"] == 3
    assert res.stdout.count("| all |") == 4


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fresh_catalog_runs_small(tmp_path, data_dir):
    """A real service, an empty catalog, 6 individuals enrolled through the API, one query each."""
    out = tmp_path / "fresh.json"
    subprocess.run([sys.executable, "scripts/reid_fresh_catalog.py", "--root", str(data_dir),
                    "--model", "efficientnet_lite0.imagenet", "--max-individuals", "6", "--split", "all",
                    "--new-fraction", "0.2", "--out", str(out)], cwd=ROOT, check=True, capture_output=True,
                   timeout=900)
    report = json.loads(out.read_text())
    assert report["queried_individuals_seen_in_training"] == 0
    assert report["known_queries"] + report["new_queries"] >= 3
    assert report["catalog"]["photos"] > 0 and 0.0 <= report["top1"] <= report["top5"] <= 1.0
