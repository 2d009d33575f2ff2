"""Exports of stored predictions: CSV (spreadsheet-safe), JSON lines and Darwin Core Archive.

CSV and JSON lines hold every prediction, rejected ones included; the Darwin Core Archive holds only
cetacean occurrences (see `integrations.darwin_core`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from integrations._rows import as_utc, to_json
from integrations.darwin_core import write_dwca
from whales_identify.records.location_privacy import LocationPolicy, apply_policy
from whales_identify.records.store import PredictionRecord, Store
from whales_identify.species import species_info

# format -> (media type, file extension)
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "dwca": ("application/zip", "zip"),
}

CSV_COLUMNS = (
    "prediction_id", "created_at", "image_sha256", "filename", "rejected", "rejection_reason",
    "cetacean_score", "gate_backend", "gate_version", "species", "scientific_name", "individual_id",
    "is_new_individual", "probability", "model_version", "review_state", "reviewer_decision", "reviewed_at",
    "reviewed_by", "observed_at", "latitude", "longitude", "location", "observer", "candidates",
    "data_generalizations", "coordinate_uncertainty_m",
)

# A cell starting with one of these is a formula in Excel, LibreOffice and Google Sheets.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

__all__ = ["EXPORT_FORMATS", "csv_safe", "iter_records", "record_to_dict", "write_csv", "write_dwca",
           "write_jsonl"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def record_to_dict(record: PredictionRecord, policy: LocationPolicy | None = None) -> dict[str, Any]:
    """A JSON-ready view of one prediction, with the species' scientific name added; with a
    `policy`, the sighting as the public may see it (and what was generalised)."""
    visible = apply_policy(record.sighting, policy)
    s = visible.sighting
    return {
        "prediction_id": record.prediction_id,
        "created_at": _iso(record.created_at),
        "image_sha256": record.image_sha256,
        "filename": record.filename,
        "rejected": record.rejected,
        "rejection_reason": record.rejection_reason,
        "cetacean_score": record.cetacean_score,
        "gate_backend": record.gate_backend,
        "gate_version": record.gate_version,
        "species": record.species,
        "scientific_name": species_info(record.species).scientific_name if record.species else None,
        "individual_id": record.individual_id,
        "is_new_individual": record.is_new_individual,
        "probability": record.probability,
        "candidates": record.candidates,
        "model_version": record.model_version,
        "review_state": record.review_state,
        "reviewer_decision": record.reviewer_decision,
        "reviewed_at": _iso(record.reviewed_at),
        "reviewed_by": record.reviewed_by,  # a fingerprint of the reviewer's key, never the key
        "observed_at": _iso(s.observed_at),
        "latitude": s.latitude,
        "longitude": s.longitude,
        "location": s.location,
        "observer": s.observer,
        "data_generalizations": visible.data_generalizations,
        "coordinate_uncertainty_m": visible.coordinate_uncertainty_m,
    }


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text: a leading = + - @ tab or CR gets a `'` in front.

    Numbers are left alone (a longitude of -70.5 stays a number); only text, which may come from an
    uploader, can carry a formula.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = to_json(value)
    return csv_safe(value)


def iter_csv(records: Iterable[PredictionRecord], policy: LocationPolicy | None = None) -> Iterator[str]:
    """CSV text, a header then one chunk per record (positions as `policy` allows; None: exact)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        row = record_to_dict(record, policy)
        writer.writerow([_csv_cell(row[c]) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def iter_jsonl(records: Iterable[PredictionRecord], policy: LocationPolicy | None = None) -> Iterator[str]:
    """One JSON object per line (positions as `policy` allows; None: exact)."""
    for record in records:
        yield json.dumps(record_to_dict(record, policy), ensure_ascii=False, default=str) + "\n"


def write_csv(records: Iterable[PredictionRecord], fh: IO[str]) -> int:
    """Write predictions as CSV (RFC 4180, UTF-8, formula-safe); return how many were written.

    Args:
        records: the predictions.
        fh: a text file opened with `newline=""`.
    """
    counted = _Counter(records)
    for chunk in iter_csv(counted):
        fh.write(chunk)
    return counted.count


class _Counter:
    def __init__(self, records: Iterable[PredictionRecord]) -> None:
        self.records, self.count = records, 0

    def __iter__(self) -> Iterator[PredictionRecord]:
        for record in self.records:
            self.count += 1
            yield record


def write_jsonl(records: Iterable[PredictionRecord], fh: IO[str]) -> int:
    """Write predictions as JSON lines; return how many were written."""
    count = 0
    for line in iter_jsonl(records):
        fh.write(line)
        count += 1
    return count


def iter_records(store: Store, since: datetime | None = None,
                 page_size: int = 500) -> Iterator[PredictionRecord]:
    """Every prediction from `since` on, oldest first, read a page at a time."""
    pages = getattr(store, "iter_predictions", None)
    if pages is not None:
        yield from pages(since=since, page_size=page_size)
        return
    offset = 0
    while True:
        page = store.list_predictions(since=since, limit=page_size, offset=offset)
        yield from page
        if len(page) < page_size:
            return
        offset += len(page)
