"""The real evaluation on the shared data: it runs the harness and fails on a metric drop.

Runs the same protocol as the committed reports/metrics_baseline.json (a query subset of every
source against the full gallery, the packaged calibration) and compares with
`scripts/check_metrics.compare`. Features are cached under <tmp>/whales_reid_cache.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "reports" / "metrics_baseline.json"


def _check_metrics():
    spec = importlib.util.spec_from_file_location("check_metrics", ROOT / "scripts" / "check_metrics.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reid_metrics_do_not_drop(data_dir, lite0_embedder, tmp_path):
    from whales_identify.evaluation.harness import run_evaluation, write_json

    baseline = json.loads(BASELINE.read_text())
    latest = run_evaluation(data_dir / "manifest.csv", data_dir, lite0_embedder,
                            sources=baseline["sources"], limit=baseline["limit"],
                            cache_dir=Path(tempfile.gettempdir()) / "whales_reid_cache")
    write_json(latest, tmp_path / "metrics_latest.json")
    mismatches, regressions = _check_metrics().compare(latest, baseline)
    assert not mismatches, mismatches
    assert not regressions, regressions


def test_check_metrics_fails_on_a_drop():
    compare = _check_metrics().compare
    base = {"model_id": "m", "manifest_sha256": "h", "sources": ["s"], "limit": 5,
            "report": {"top1": 0.6, "map5": 0.65, "open_set": {"map5_with_new_label": 0.5},
                       "per_source": {"s": {"top1": 0.6}}}}
    same = json.loads(json.dumps(base))
    assert compare(same, base) == ([], [])
    worse = json.loads(json.dumps(base))
    worse["report"]["per_source"]["s"]["top1"] = 0.5
    assert len(compare(worse, base, 0.03)[1]) == 1
    other = dict(base, limit=None)
    assert compare(other, base)[0]
    # a source of 25 queries: one query to the other side is within tolerance, two are a drop
    base["report"]["per_source"]["s"]["n_queries"] = 25
    for drop, failed in ((1, 0), (2, 1)):
        worse = json.loads(json.dumps(base))
        worse["report"]["per_source"]["s"]["top1"] = 0.6 - drop / 25
        assert len(compare(worse, base, 0.03)[1]) == failed


def test_shipped_model_is_never_scored_on_its_training_whales(data_dir, tmp_path):
    """The default model was fine-tuned on these right whales: the plain harness refuses to report
    on them (its numbers come from the cross-fit, docs/REID.md), and says how to do it right."""
    from typer.testing import CliRunner

    from whales_cli import app
    from whales_identify.models import DEFAULT_REID_MODEL
    from whales_identify.models._registry import trained_metadata

    meta = trained_metadata(DEFAULT_REID_MODEL)
    assert meta is not None and len(meta["training_individuals"]) > 100
    res = CliRunner().invoke(app, ["evaluate", "--manifest", str(data_dir / "manifest.csv"), "--root",
                                   str(data_dir), "--sources", "noaa_right_whale_headcrops", "--limit", "5",
                                   "--latest", str(tmp_path / "latest.json")])
    assert res.exit_code == 1 and "own training data" in res.output and "--crossfit" in res.output
    assert not (tmp_path / "latest.json").exists()
