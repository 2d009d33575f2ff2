"""scripts/benchmark_scale.py (reports/benchmark_scale.json, issue 18) still runs: a tiny run on a
few real photos plus synthetic distractors, its report's shape checked. The speed targets are
judged from the committed report, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_benchmark_scale_runs_small(tmp_path, data_dir):
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, "scripts/benchmark_scale.py", "--data", str(data_dir), "--sizes", "40", "90",
         "--configs", "scale", "--configs-small", "baseline", "--queries", "4", "--enrol", "2",
         "--real-limit", "40", "--skip-extraction", "--cache", str(tmp_path / "cache"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    keys = {"machine", "targets", "configs", "distractors", "sizes", "checks", "catalog_builds"}
    assert keys <= set(report)
    assert len(report["machine"]["loadavg_at_end"]) == 3
    runs = {(s["requested_photos"], s["config"]): s for s in report["sizes"]}
    assert set(runs) == {(40, "scale"), (40, "baseline"), (90, "scale")}
    for (n, config), s in runs.items():
        assert "error" not in s, s
        assert s["catalog_photos"] == n and s["individuals"] >= 1
        for key in ("p95_s", "p50_s", "match_mean_s", "peak_rss_mb", "ready_s", "enrol_photos_per_s",
                    "top1_real_queries", "throughput_c1"):
            assert np.isfinite(s[key]) and s[key] >= 0, key
        assert s["match_mean_s"] > 0 and s["peak_rss_mb"] > 0 and 0 <= s["top1_real_queries"] <= 1
        assert len(s["loadavg_before"]) == 3
        assert (s["cold_start"] is not None) == (config == "scale")
    assert runs[(40, "baseline")]["throughput_c4"] > 0  # 4 threads at the smallest size
    build = report["catalog_builds"]["90"]
    assert 20 <= build["real_photos"] <= 40 and build["synthetic_photos"] == 90 - build["real_photos"]
