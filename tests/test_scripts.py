"""The benchmark scripts still run against the library they measure (a renamed method once broke
scripts/benchmark_catalog.py silently): a tiny run of each cheap one, output checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_catalog_runs_small(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "scripts/benchmark_catalog.py", "--sizes", "200", "--queries", "4",
                    "--vote-size", "150", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    report = json.loads(out.read_text())
    assert report["global"][0]["images"] == 200 and report["global"][0]["global_ms_per_query"] > 0
    assert report["rerank"]["verified_images_per_query_max"] > 0
    assert report["vote"]["index_descriptors"] > 0 and report["vote"]["vote_ms_per_query"] > 0


def test_quickstart_timing_runs_small(tmp_path, data_dir):
    """docs/QUICKSTART.md's timing: a real service, a 6-photo import, 2 new photos identified."""
    out = tmp_path / "quickstart.json"
    subprocess.run([sys.executable, "scripts/quickstart_timing.py", "--data", str(data_dir), "--photos", "6",
                    "--queries", "2", "--per-individual", "2", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["import_summary"]["rows"] == 6 and 3 <= report["catalog_individuals"] <= 6
    assert report["import_summary"]["enrolled"] + report["import_summary"]["skipped"] == 6
    assert report["identify"]["answered"] == 2 and report["import_s"] > 0


def test_benchmark_photo_path_runs_small(tmp_path, data_dir):
    """scripts/benchmark_photo_path.py on this tree: one PIL open per uploaded photo, and a summary."""
    out = tmp_path / "photo_path.json"
    subprocess.run([sys.executable, "scripts/benchmark_photo_path.py", "--label", "now",
                    "--data", str(data_dir), "--parts", "decode,map", "--decode-photos", "2",
                    "--repeats", "1", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    report = json.loads(out.read_text())
    (run,) = report["runs"]["now"]
    assert run["decode"]["pil_opens_per_photo"] == 1 and run["decode"]["n"] == 2
    assert report["summary"]["decode_per_photo"]["now"]["cpu_mean_ms"] > 0
