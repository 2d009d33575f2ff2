"""A batch job's results folder: one CSV part per finished chunk (written atomically, so Ctrl-C or a
crash never leaves half a row), merged into `results.csv`; `job.json` keeps the job id, so that a
rerun resumes the same job. A photo is done when its content hash is in a part.

Rows are flat: the answer of `/v1/predict-batch` for one photo (`results` or `errors` entry), with
the photo's sha256 and the job id.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RESULT_COLUMNS = (
    "name", "sha256", "status", "error_code", "error_message", "prediction_id", "rejected",
    "rejection_reason", "is_cetacean", "cetacean_score", "gate_band", "species", "species_score",
    "individual_id", "is_new_individual", "probability", "top_candidate", "top_score", "candidates",
    "model_version", "job_id",
)
RESULTS_FILE = "results.csv"
JOB_FILE = "job.json"
PARTS = "parts"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def row_from_result(result: Mapping[str, Any], sha256: str, job_id: str) -> dict[str, str]:
    """One `/v1/predict-batch` `results` entry as a results row."""
    candidates = list(result.get("candidates") or [])
    top = candidates[0] if candidates else {}
    row = {"name": result["image_ind"], "sha256": sha256, "status": "ok", "job_id": job_id,
           "top_candidate": top.get("individual_id"), "top_score": top.get("score"),
           "candidates": json.dumps([[c["individual_id"], round(float(c["score"]), 4)]
                                     for c in candidates])}
    for key in ("prediction_id", "rejected", "rejection_reason", "is_cetacean", "cetacean_score",
                "gate_band", "species", "species_score", "individual_id", "is_new_individual",
                "probability", "model_version"):
        row[key] = result.get(key)
    return {c: _cell(row.get(c)) for c in RESULT_COLUMNS}


def row_from_error(error: Mapping[str, Any], sha256: str, job_id: str) -> dict[str, str]:
    """One `/v1/predict-batch` `errors` entry (a bad file) as a results row."""
    row = {"name": error["image_ind"], "sha256": sha256, "status": "error", "job_id": job_id,
           "error_code": error.get("code"), "error_message": error.get("message")}
    return {c: _cell(row.get(c)) for c in RESULT_COLUMNS}


def summarise(rows: Iterable[Mapping[str, str]], skipped: int = 0) -> dict[str, int]:
    """The counts of `/v1/predict-batch`'s `summary` (images, accepted, rejected, failed, skipped:
    ZIP entries that are no photos)."""
    counts = {"images": 0, "accepted": 0, "rejected": 0, "failed": 0, "skipped": skipped}
    for row in rows:
        counts["images"] += 1
        if row["status"] != "ok":
            counts["failed"] += 1
        elif row["rejected"] == "true":
            counts["rejected"] += 1
        else:
            counts["accepted"] += 1
    return counts


class ResultsDir:
    """The `--out` folder of a job (created when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.parts = self.path / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)
        self._run = uuid.uuid4().hex[:8]
        self._written = 0

    def job_id(self) -> str:
        """The job's id: read from `job.json`, or made and saved by the first run."""
        file = self.path / JOB_FILE
        if file.exists():
            return str(json.loads(file.read_text(encoding="utf-8"))["job_id"])
        job_id = "batch-" + uuid.uuid4().hex[:12]
        self.write_json(JOB_FILE, {"job_id": job_id})
        return job_id

    def write_json(self, name: str, payload: Mapping[str, Any]) -> Path:
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target

    def rows(self) -> list[dict[str, str]]:
        """Every row of every finished part, oldest part first."""
        out: list[dict[str, str]] = []
        for part in sorted(self.parts.glob("*.csv"), key=lambda p: (p.stat().st_mtime_ns, p.name)):
            with open(part, newline="", encoding="utf-8") as fh:
                out.extend(csv.DictReader(fh))
        return out

    def done(self) -> set[str]:
        """Content hashes already answered (bad files included: their error is their answer)."""
        return {row["sha256"] for row in self.rows() if row["sha256"]}

    def write_part(self, rows: Iterable[Mapping[str, str]]) -> Path:
        """Write one finished chunk's rows as a new part, atomically (a rename)."""
        self._written += 1
        return _write_csv(self.parts / f"part-{self._run}-{self._written:06d}.csv", rows)

    def merge(self) -> tuple[Path, list[dict[str, str]]]:
        """`results.csv`: every part's rows, one per photo name (the latest answer), sorted by name."""
        latest: dict[str, dict[str, str]] = {}
        for row in self.rows():
            latest[row["name"]] = row
        rows = [latest[k] for k in sorted(latest)]
        return _write_csv(self.path / RESULTS_FILE, rows), rows


def _write_csv(target: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    """Write to a temporary name, then rename: a reader sees the whole file or none."""
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, target)
    return target
