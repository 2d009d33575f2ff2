"""The SQL `Store` shared by the SQLite and PostgreSQL backends.

A backend only says how to open a transaction (`_write`, `_read`) and which `Dialect` it speaks; the
queries live here and the record <-> row mapping in `_rows`, once for both. Each public write is
exactly one transaction, so a crash leaves either the whole record or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from integrations._rows import (
    CATALOG_COLUMNS,
    PREDICTION_COLUMNS,
    Cursor,
    Dialect,
    catalog_to_row,
    prediction_to_row,
    row_to_catalog,
    row_to_prediction,
    to_json,
)
from whales_identify.errors import NotFoundError
from whales_identify.store import REVIEW_STATES, CatalogImage, PredictionRecord, utcnow

_NO_LIMIT = 2**62  # LIMIT without a bound, spelled the same in both dialects


class PredictionNotFoundError(NotFoundError, KeyError):
    """`save_review` on an unknown prediction id (a `KeyError`, like `InMemoryStore`)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.code


def _upsert(table: str, columns: Sequence[str], key: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}")


_UPSERT_PREDICTION = _upsert("predictions", PREDICTION_COLUMNS, "prediction_id")
_UPSERT_IMAGE = _upsert("prediction_images", ("prediction_id", "jpeg"), "prediction_id")
_UPSERT_CATALOG = _upsert("catalog_images", CATALOG_COLUMNS, "image_id")
_SELECT_PREDICTIONS = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions"
_ORDER = "ORDER BY created_at, prediction_id"
_SELECT_CATALOG = f"SELECT {', '.join(CATALOG_COLUMNS)} FROM catalog_images"


class SqlStore:
    """`whales_identify.store.Store` over SQL; subclasses provide connections and transactions."""

    dialect: Dialect

    # --- backend hooks
    def _write(self) -> AbstractContextManager[Cursor]:
        """One read-write transaction: committed on normal exit, rolled back on any exception."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _q(self, query: str) -> str:
        return self.dialect.sql(query)

    def ping(self) -> None:
        with self._read() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_versions(self) -> list[int]:
        """Applied migration versions, ascending."""
        with self._read() as cur:
            cur.execute("SELECT version FROM schema_migrations ORDER BY version")
            return [int(r[0]) for r in cur.fetchall()]

    # --- predictions
    def save_prediction(self, record: PredictionRecord, image_jpeg: bytes | None = None) -> None:
        if record.review_state not in REVIEW_STATES:
            raise ValueError(f"unknown review state {record.review_state!r}")
        row = prediction_to_row(record, self.dialect)
        with self._write() as cur:
            cur.execute(self._q(_UPSERT_PREDICTION), row)
            if image_jpeg is not None:
                cur.execute(self._q(_UPSERT_IMAGE), (record.prediction_id, bytes(image_jpeg)))

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        with self._read() as cur:
            cur.execute(self._q(f"{_SELECT_PREDICTIONS} WHERE prediction_id = ?"), (prediction_id,))
            row = cur.fetchone()
        return None if row is None else row_to_prediction(row, self.dialect)

    def get_prediction_image(self, prediction_id: str) -> bytes | None:
        with self._read() as cur:
            cur.execute(self._q("SELECT jpeg FROM prediction_images WHERE prediction_id = ?"),
                        (prediction_id,))
            row = cur.fetchone()
        return None if row is None else bytes(row[0])

    def save_review(self, prediction_id: str, state: str, decision: dict[str, Any]) -> PredictionRecord:
        if state not in REVIEW_STATES:
            raise ValueError(f"unknown review state {state!r}")
        with self._write() as cur:
            cur.execute(self._q("UPDATE predictions SET review_state = ?, reviewer_decision = ?, "
                                "reviewed_at = ? WHERE prediction_id = ?"),
                        (state, to_json(decision), self.dialect.to_db_time(utcnow()), prediction_id))
            if cur.rowcount == 0:
                raise PredictionNotFoundError(prediction_id)
            cur.execute(self._q(f"{_SELECT_PREDICTIONS} WHERE prediction_id = ?"), (prediction_id,))
            row = cur.fetchone()
        return row_to_prediction(row, self.dialect)

    def list_predictions(self, since: datetime | None = None, limit: int | None = None,
                         offset: int = 0) -> list[PredictionRecord]:
        where, params = self._since(since)
        with self._read() as cur:
            cur.execute(self._q(f"{_SELECT_PREDICTIONS}{where} {_ORDER} LIMIT ? OFFSET ?"),
                        (*params, _NO_LIMIT if limit is None else max(0, int(limit)), max(0, int(offset))))
            rows = cur.fetchall()
        return [row_to_prediction(r, self.dialect) for r in rows]

    def iter_predictions(self, since: datetime | None = None,
                         page_size: int = 500) -> Iterator[PredictionRecord]:
        """All predictions from `since` on, fetched a page at a time (keyset paging, stable under inserts)."""
        where, params = self._since(since)
        after: tuple[Any, str] | None = None
        while True:
            clause, args = where, list(params)
            if after is not None:
                clause += " AND" if clause else " WHERE"
                clause += " (created_at > ? OR (created_at = ? AND prediction_id > ?))"
                args += [after[0], after[0], after[1]]
            with self._read() as cur:
                cur.execute(self._q(f"{_SELECT_PREDICTIONS}{clause} {_ORDER} LIMIT ?"),
                            (*args, page_size))
                rows = cur.fetchall()
            for row in rows:
                yield row_to_prediction(row, self.dialect)
            if len(rows) < page_size:
                return
            after = (rows[-1][1], rows[-1][0])

    def count_predictions(self, since: datetime | None = None) -> int:
        """How many predictions were stored from `since` on (all when None)."""
        where, params = self._since(since)
        with self._read() as cur:
            cur.execute(self._q(f"SELECT COUNT(*) FROM predictions{where}"), params)
            return int(cur.fetchone()[0])

    def _since(self, since: datetime | None) -> tuple[str, tuple[Any, ...]]:
        if since is None:
            return "", ()
        return " WHERE created_at >= ?", (self.dialect.to_db_time(since),)

    # --- catalog
    def add_catalog_images(self, images: Sequence[CatalogImage]) -> None:
        rows = [catalog_to_row(image, self.dialect) for image in images]
        if not rows:
            return
        with self._write() as cur:
            cur.executemany(self._q(_UPSERT_CATALOG), rows)

    def list_catalog_images(self, model_id: str | None = None) -> list[CatalogImage]:
        where, params = ("", ()) if model_id is None else (" WHERE model_id = ?", (model_id,))
        out: list[CatalogImage] = []
        with self._read() as cur:
            cur.execute(self._q(f"{_SELECT_CATALOG}{where} ORDER BY created_at, image_id"), params)
            # in chunks: the raw rows (blobs) of a large catalog are never all held at once
            while rows := cur.fetchmany(256):
                out.extend(row_to_catalog(r, self.dialect) for r in rows)
        return out

    def get_catalog_image(self, image_id: str) -> CatalogImage | None:
        with self._read() as cur:
            cur.execute(self._q(f"{_SELECT_CATALOG} WHERE image_id = ?"), (image_id,))
            row = cur.fetchone()
        return None if row is None else row_to_catalog(row, self.dialect)

    def remove_individual(self, individual_id: str) -> int:
        with self._write() as cur:
            cur.execute(self._q("DELETE FROM catalog_images WHERE individual_id = ?"), (individual_id,))
            return int(cur.rowcount)

    def catalog_stats(self) -> dict[str, Any]:
        """Images, individuals and species per embedding model, without loading any embedding."""
        with self._read() as cur:
            cur.execute("SELECT model_id, COUNT(*), COUNT(DISTINCT individual_id), COUNT(DISTINCT species), "
                        "MAX(created_at) FROM catalog_images GROUP BY model_id ORDER BY model_id")
            rows = cur.fetchall()
        # `latest` lets another process tell that the catalog changed (see the service's catalog sync).
        models = {r[0]: {"images": int(r[1]), "individuals": int(r[2]), "species": int(r[3]),
                         "latest": None if r[4] is None else str(r[4])} for r in rows}
        return {"images": sum(m["images"] for m in models.values()), "models": models}
