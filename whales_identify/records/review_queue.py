"""The review queue: which stored predictions a reviewer asked for, in which order, one page at a time.

`PredictionQuery` is what both store backends answer (`Store.query_predictions`): filters, a sort
(newest or oldest first) and a keyset position `after` = (created_at, prediction_id) of the last row
of the previous page, so pages stay stable while new predictions arrive. The opaque page cursor a
client sees is `encode_cursor(...)` of that position.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from whales_identify.errors import WhalesError


class InvalidCursorError(WhalesError, ValueError):
    """A page cursor that this service did not hand out (or that was altered)."""

    code = "invalid_cursor"


@dataclass(frozen=True)
class PredictionQuery:
    """Filters (all optional, combined with AND), sort and keyset position of one page."""

    review_state: str | None = None
    batch_id: str | None = None  # a /v1/predict-batch call
    job_id: str | None = None  # a `whales batch` job
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    species: str | None = None
    individual_id: str | None = None  # the model's top-1 answer
    new_individual: bool | None = None
    min_probability: float | None = None  # inclusive; predictions without a probability never match
    max_probability: float | None = None  # inclusive
    newest_first: bool = True
    after: tuple[datetime, str] | None = None
    limit: int = 50


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def matches(record: Any, q: PredictionQuery) -> bool:
    """Whether a `PredictionRecord` passes the query's filters and lies beyond its keyset position."""
    created, p = _utc(record.created_at), record.probability
    checks = [
        q.review_state is None or record.review_state == q.review_state,
        q.batch_id is None or record.batch_id == q.batch_id,
        q.job_id is None or getattr(record, "job_id", None) == q.job_id,
        q.created_from is None or created >= _utc(q.created_from),
        q.created_to is None or created < _utc(q.created_to),
        q.species is None or record.species == q.species,
        q.individual_id is None or record.individual_id == q.individual_id,
        q.new_individual is None or record.is_new_individual is q.new_individual,
        q.min_probability is None or (p is not None and p >= q.min_probability),
        q.max_probability is None or (p is not None and p <= q.max_probability),
    ]
    if q.after is not None:
        key, after = (created, record.prediction_id), (_utc(q.after[0]), q.after[1])
        checks.append(key < after if q.newest_first else key > after)
    return all(checks)


def select(records: Iterable[Any], q: PredictionQuery) -> list[Any]:
    """One page of `records` for `q`, in memory (the SQL stores do the same in one indexed query)."""
    found = sorted((r for r in records if matches(r, q)), key=lambda r: (_utc(r.created_at), r.prediction_id),
                   reverse=q.newest_first)
    return found[:max(0, q.limit)]


def encode_cursor(created_at: datetime, prediction_id: str) -> str:
    raw = json.dumps([_utc(created_at).isoformat(), prediction_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises `InvalidCursorError` for anything `encode_cursor` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, prediction_id = json.loads(raw)
        if not isinstance(prediction_id, str) or not isinstance(when, str):
            raise ValueError(cursor)
        return _utc(datetime.fromisoformat(when)), prediction_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError("the `cursor` is not one this service handed out; start again "
                                 "without it") from exc
