"""The review queue's SQL, shared by SQLite and PostgreSQL (`SqlStore.query_predictions`,
`SqlStore.undo_review`).

A page is one indexed query: the filters become a WHERE clause and the keyset position a row
comparison on (created_at, prediction_id), so a page costs the same at the start and deep in the
queue (indexes `predictions_queue` and `predictions_batch`, migration 0005).
"""

from __future__ import annotations

import json
from typing import Any

from integrations._changes import bump_generation
from integrations._rows import PREDICTION_COLUMNS, Cursor, row_to_prediction, to_json
from whales_identify.errors import ConflictError
from whales_identify.records.review_queue import PredictionQuery
from whales_identify.records.store import PredictionRecord, check_undoable, enrolled_by_review, utcnow

_SELECT = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions"
_FILTERS = (  # (PredictionQuery field, SQL condition)
    ("review_state", "review_state = ?"), ("batch_id", "batch_id = ?"), ("job_id", "job_id = ?"),
    ("created_from", "created_at >= ?"), ("created_to", "created_at < ?"), ("species", "species = ?"),
    ("individual_id", "individual_id = ?"),
    ("new_individual", "is_new_individual = ?"), ("min_probability", "probability >= ?"),
    ("max_probability", "probability <= ?"),
)


def query_sql(q: PredictionQuery, dialect: Any) -> tuple[str, list[Any]]:
    """The SELECT for one page of `q`, with its parameters."""
    where: list[str] = []
    params: list[Any] = []
    for name, condition in _FILTERS:
        value = getattr(q, name)
        if value is None:
            continue
        where.append(condition)
        params.append(dialect.to_db_time(value) if name.startswith("created_") else value)
    if q.after is not None:
        op = "<" if q.newest_first else ">"
        when = dialect.to_db_time(q.after[0])
        where.append(f"(created_at {op} ? OR (created_at = ? AND prediction_id {op} ?))")
        params += [when, when, q.after[1]]
    direction = "DESC" if q.newest_first else "ASC"
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"{_SELECT}{clause} ORDER BY created_at {direction}, prediction_id {direction} LIMIT ?"
    return dialect.sql(sql), [*params, max(0, int(q.limit))]


def query_predictions(cur: Cursor, q: PredictionQuery, dialect: Any) -> list[PredictionRecord]:
    sql, params = query_sql(q, dialect)
    cur.execute(sql, params)
    return [row_to_prediction(r, dialect) for r in cur.fetchall()]


def undo_review(cur: Cursor, prediction_id: str, expected_state: str | None, undone_by: str | None,
                dialect: Any) -> tuple[PredictionRecord, list[str]]:
    """In the caller's transaction: put the prediction back to `unreviewed` by a conditional UPDATE
    (of concurrent undos and reviews exactly one wins, the others raise `ConflictError`), delete the
    catalog photos its review enrolled (an individual the review created goes with its last photo),
    bump the catalog generation and write a `review_undos` audit row. Returns (the record as it
    was before the undo, the catalog photo ids removed)."""
    from integrations._sql import PredictionNotFoundError

    q = dialect.sql
    cur.execute(q(f"{_SELECT} WHERE prediction_id = ?"), (prediction_id,))
    row = cur.fetchone()
    if row is None:
        raise PredictionNotFoundError(prediction_id)
    before = row_to_prediction(row, dialect)
    check_undoable(before.review_state, expected_state, prediction_id)
    cur.execute(q("UPDATE predictions SET review_state = 'unreviewed', reviewer_decision = NULL, "
                  "reviewed_at = NULL, reviewed_by = NULL WHERE prediction_id = ? AND review_state = ?"),
                (prediction_id, before.review_state))
    if cur.rowcount == 0:
        raise ConflictError(f"prediction {prediction_id!r} was changed by another reviewer meanwhile")
    removed: list[str] = []
    for image_id in enrolled_by_review(before):  # only photos this review enrolled
        cur.execute(q("DELETE FROM catalog_images WHERE image_id = ? AND source = ?"),
                    (image_id, f"review:{prediction_id}"))
        if cur.rowcount:
            removed.append(image_id)
    bump_generation(cur, dialect, removed)
    cur.execute(q("INSERT INTO review_undos (prediction_id, undone_at, undone_by, review_state, "
                  "reviewer_decision, reviewed_by, reviewed_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                (prediction_id, dialect.to_db_time(utcnow()), undone_by, before.review_state,
                 to_json(before.reviewer_decision), before.reviewed_by,
                 dialect.to_db_time(before.reviewed_at)))
    return before, removed


def list_undos(cur: Cursor, prediction_id: str, dialect: Any) -> list[dict[str, Any]]:
    """The audit rows of a prediction's undone decisions, oldest first."""
    cur.execute(dialect.sql("SELECT undone_at, undone_by, review_state, reviewer_decision, reviewed_by "
                            "FROM review_undos WHERE prediction_id = ? ORDER BY undone_at"), (prediction_id,))
    return [{"undone_at": dialect.from_db_time(r[0]), "undone_by": r[1], "review_state": r[2],
             "reviewer_decision": None if r[3] is None else json.loads(r[3]), "reviewed_by": r[4]}
            for r in cur.fetchall()]
