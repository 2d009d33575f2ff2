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
