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


@pytest.mark.timeout(900)
def test_benchmark_scale_serves_small_over_http(tmp_path, data_dir):
    """`--http`: the size is served by the real service (uvicorn), the held-out real photos go to
    /v1/predict, real photos are enrolled through the API, found at once, and deleted again;
    `--removal`: on a copy of the store, an individual deleted and a photo removed, each followed by
    queries that succeed, then a restart on the changed store."""
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, "scripts/benchmark_scale.py", "--data", str(data_dir), "--sizes", "60",
         "--configs", "scale_mmap", "--queries", "3", "--enrol", "3", "--enrol-batch", "2", "--http",
         "--removal", "--real-limit", "40", "--skip-extraction", "--cache", str(tmp_path / "cache"),
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = json.loads(out.read_text())["sizes"]
    assert "error" not in run, run["error"]
    assert run["via"] == "http" and run["served_catalog"]["images"] == 60
    assert run["queries"] == 3 and sum(run["outcomes"].values()) == 3
    assert 0 < run["p50_s"] <= run["p95_s"] and run["ready_s"] > 0 and run["peak_rss_mb"] > 0
    assert 0 <= run["top1_real_queries"] <= run["top5_real_queries"] <= 1
    assert run["throughput_c4_over_c1"] > 0 and run["match_mean_s"] > 0
    pairs = run["throughput_pairs"]  # three c1/c4 pairs; the ratio reported is their mean
    assert len(pairs["c4_over_c1"]) == 3 and run["throughput_c4_over_c1_se"] >= 0
    assert abs(run["throughput_c4_over_c1"] - sum(pairs["c4_over_c1"]) / 3) < 1e-9
    enrol = run["enrol"]
    assert (enrol["single"]["photos"], enrol["batched"]["photos"]) == (2, 1)
    assert enrol["single"]["enrolled"] + enrol["single"]["refused"] == 2
    assert enrol["enrolled_photo_found_at_once"] and enrol["deleted"] == 200
    removal = run["removal"]
    for step in ("delete_individual", "remove_photo"):  # the synthetic photos' ids fit a URL path
        assert removal[step]["status"] == 200 and removal[step]["photos"] >= 1, removal
        assert len(removal[step]["next_queries_s"]) == 3 and min(removal[step]["next_queries_s"]) > 0
    assert removal["restart_ready_s"] > 0 and removal["restart_first_query_s"] > 0
    other = removal["another_worker"]  # a rename written by another process: only its photos read
    assert set(other["rename"]["synced"]) == {"change_log"}, other
    assert set(other["rename_without_change_log"]["synced"]) == {"reload"}, other
    assert set(other.get("merge", {"synced": {"change_log": 1}})["synced"]) == {"change_log"}, other
    assert not list((tmp_path / "cache").glob("removal-*.db"))  # the copy is deleted


def test_a_configuration_without_a_service_setting_is_not_served(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from _benchmark_scale_http import service_env

    env = service_env({"ivf_codes": "PQ64x4fs", "index_keypoints": 250}, Path("/x.db"), "m.t", "k")
    assert env["WHALES_VOTE_INDEX_KEYPOINTS"] == "250" and env["WHALES_DATABASE_URL"] == "sqlite:////x.db"
    with pytest.raises(ValueError, match="vote_candidates"):
        service_env({"vote_candidates": 30}, Path("/x.db"), "m.t", "k")
