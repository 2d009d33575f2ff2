"""The SQL `Store` shared by the SQLite and PostgreSQL backends.

A backend only says how to open a transaction (`_begin`, `_open_read`) and which `Dialect` it speaks;
the queries live here and the record <-> row mapping in `_rows`, once for both. Each public write is
exactly one transaction, so a crash leaves either the whole record or nothing; `atomic()` joins
several writes of one thread into one transaction (a review enrols a photo and records the decision).

Every write to `catalog_images` also adds one to `catalog_generation` in the same transaction, so a
process can tell cheaply whether its in-memory catalog is current (`catalog_generation()`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from integrations import _curation, _queue
from integrations._changes import bump_generation, changes_since, current_generation
from integrations._rows import (
    CATALOG_COLUMNS,
    CATALOG_HEAD_COLUMNS,
    PREDICTION_COLUMNS,
    SIGHTING_COLUMNS,
    Cursor,
    Dialect,
    catalog_to_row,
    prediction_to_row,
    row_to_catalog,
    row_to_catalog_head,
    row_to_prediction,
    row_to_sighting,
    to_json,
)
from whales_identify.errors import ConflictError, NotFoundError
from whales_identify.records.review_queue import PredictionQuery
from whales_identify.records.store import (
    REVIEW_STATES,
    CatalogImage,
    FeatureHead,
    PredictionRecord,
    SightingRecord,
    sighting_order,
    utcnow,
)

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
_UNREVIEWED_BEFORE = ("SELECT prediction_id FROM predictions "
                      "WHERE review_state = 'unreviewed' AND created_at < ?")


class SqlStore:
    """`whales_identify.records.store.Store` over SQL; subclasses provide connections and transactions."""

    dialect: Dialect

    # --- backend hooks
    def _begin(self) -> AbstractContextManager[Cursor]:
        """One new read-write transaction: committed on normal exit, rolled back on any exception."""
        raise NotImplementedError

    def _open_read(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    # --- transactions: a thread inside `atomic()` reuses its cursor for every read and write
    def _joined(self) -> Cursor | None:
        local = self.__dict__.setdefault("_atomic_local", threading.local())
        return getattr(local, "cursor", None)

    @contextmanager
    def _joined_or(self, open_cursor: Callable[[], AbstractContextManager[Cursor]]) -> Iterator[Cursor]:
        joined = self._joined()
        if joined is not None:
            yield joined
            return
        with open_cursor() as cur:
            yield cur

    def _write(self) -> AbstractContextManager[Cursor]:
        return self._joined_or(self._begin)

    def _read(self) -> AbstractContextManager[Cursor]:
        return self._joined_or(self._open_read)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every store call of this thread inside the block is one transaction (nested: joins)."""
        if self._joined() is not None:
            yield
            return
        with self._begin() as cur:
            self._atomic_local.cursor = cur
            try:
                yield
            finally:
                self._atomic_local.cursor = None

    def _lock_individual(self, cur: Cursor, individual_id: str) -> None:
        """Serialise transactions that create or check one individual id (SQLite: the write lock)."""

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
        with self._write() as cur:
            # matched against a catalog from before a rename or merge: store the current ids
            record = _curation.resolve_retired(cur, self.dialect, record)
            cur.execute(self._q(_UPSERT_PREDICTION), prediction_to_row(record, self.dialect))
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

    def save_review(self, prediction_id: str, state: str, decision: dict[str, Any],
                    reviewed_by: str | None = None,
                    expected_state: str | None = None) -> PredictionRecord:
        """Record a decision; with `expected_state`, only while the prediction is still in it (a
        conditional UPDATE, so of concurrent reviewers in any process exactly one wins)."""
        if state not in REVIEW_STATES:
            raise ValueError(f"unknown review state {state!r}")
        query = ("UPDATE predictions SET review_state = ?, reviewer_decision = ?, reviewed_at = ?, "
                 "reviewed_by = ? WHERE prediction_id = ?")
        params: tuple[Any, ...] = (state, to_json(decision), self.dialect.to_db_time(utcnow()), reviewed_by,
                                   prediction_id)
        if expected_state is not None:
            query, params = query + " AND review_state = ?", (*params, expected_state)
        with self._write() as cur:
            cur.execute(self._q(query), params)
            if cur.rowcount == 0:
                cur.execute(self._q("SELECT review_state FROM predictions WHERE prediction_id = ?"),
                            (prediction_id,))
                found = cur.fetchone()
                if found is None:
                    raise PredictionNotFoundError(prediction_id)
                raise ConflictError(f"prediction {prediction_id!r} was already reviewed ({found[0]})")
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

    def query_predictions(self, query: PredictionQuery) -> list[PredictionRecord]:
        """One page of the review queue (integrations/_queue.py): filters, sort, keyset position."""
        with self._read() as cur:
            return _queue.query_predictions(cur, query, self.dialect)

    def undo_review(self, prediction_id: str, expected_state: str | None = None,
                    undone_by: str | None = None) -> tuple[PredictionRecord, list[str]]:
        """Undo a review in one transaction; returns (the record before, the catalog photo ids removed)."""
        with self._write() as cur:
            return _queue.undo_review(cur, prediction_id, expected_state, undone_by, self.dialect)

    def list_undos(self, prediction_id: str) -> list[dict[str, Any]]:
        with self._read() as cur:
            return _queue.list_undos(cur, prediction_id, self.dialect)

    def rename_individual(self, old_id: str, new_id: str, actor: str | None = None) -> int:
        """Curation (integrations/_curation.py): every photo of `old_id` to `new_id`, audited."""
        with self._write() as cur:
            return _curation.rename_individual(self, cur, old_id, new_id, actor)

    def remove_catalog_image(self, image_id: str, actor: str | None = None) -> tuple[str, int]:
        """Curation: delete one photo; returns (its individual, photos left), audited."""
        with self._write() as cur:
            return _curation.remove_image(self, cur, image_id, actor)

    def merge_individuals(self, source_id: str, target_id: str, actor: str | None = None) -> dict[str, Any]:
        """Curation: every photo of `source_id` joins `target_id`; `source_id` retired, audited."""
        with self._write() as cur:
            return _curation.merge_individuals(self, cur, source_id, target_id, actor)

    def move_catalog_image(self, image_id: str, target_id: str, create: bool = False,
                           actor: str | None = None) -> dict[str, Any]:
        """Curation: one photo to another (or, with `create`, a new) individual, audited."""
        with self._write() as cur:
            return _curation.move_image(self, cur, image_id, target_id, create, actor)

    def resolve_individual(self, individual_id: str) -> str | None:
        """Where a retired id (merged or renamed away) lives on; None when it is not retired."""
        with self._read() as cur:
            return _curation.resolve(cur, self.dialect, individual_id)

    def list_aliases(self, individual_id: str) -> list[str]:
        with self._read() as cur:
            return _curation.aliases_of(cur, self.dialect, individual_id)

    def list_catalog_audit(self, individual_id: str) -> list[dict[str, Any]]:
        with self._read() as cur:
            return _curation.list_audit(cur, individual_id=individual_id, dialect=self.dialect)

    def count_predictions(self, since: datetime | None = None) -> int:
        """How many predictions were stored from `since` on (all when None)."""
        where, params = self._since(since)
        with self._read() as cur:
            cur.execute(self._q(f"SELECT COUNT(*) FROM predictions{where}"), params)
            return int(cur.fetchone()[0])

    def purge_predictions(self, photos_before: datetime | None,
                          records_before: datetime | None) -> tuple[int, int]:
        """Delete the stored photos, then the records, of *unreviewed* predictions made before the
        given times (retention); reviewed ones are evidence for the catalog and are kept."""
        photos = records = 0
        with self._write() as cur:
            if photos_before is not None:
                cur.execute(self._q(f"DELETE FROM prediction_images WHERE prediction_id IN "
                                    f"({_UNREVIEWED_BEFORE})"), (self.dialect.to_db_time(photos_before),))
                photos = max(0, int(cur.rowcount))
            if records_before is not None:
                # their photos go too (ON DELETE CASCADE)
                cur.execute(self._q("DELETE FROM predictions WHERE review_state = 'unreviewed' "
                                    "AND created_at < ?"), (self.dialect.to_db_time(records_before),))
                records = max(0, int(cur.rowcount))
        return photos, records

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
            _curation.revive(cur, self.dialect, sorted({image.individual_id for image in images}))
            bump_generation(cur, self.dialect, (image.image_id for image in images))

    def list_catalog_images(self, model_id: str | None = None) -> list[CatalogImage]:
        where, params = ("", ()) if model_id is None else (" WHERE model_id = ?", (model_id,))
        out: list[CatalogImage] = []
        with self._read() as cur:
            cur.execute(self._q(f"{_SELECT_CATALOG}{where} ORDER BY created_at, image_id"), params)
            # in chunks: the raw rows (blobs) of a large catalog are never all held at once
            while rows := cur.fetchmany(256):
                out.extend(row_to_catalog(r, self.dialect) for r in rows)
        return out

    def iter_catalog_images(self, model_id: str | None = None,
                            page_size: int = 500) -> Iterator[CatalogImage]:
        """The catalog a page at a time (keyset paging on the index of model, time and id): a
        100k-photo catalog is never all held as full records, and no read (nor SQLite's connection
        lock) stays open while the caller works. Per model, the order of `list_catalog_images`."""
        for row in self._catalog_pages(CATALOG_COLUMNS, model_id, page_size):
            yield row_to_catalog(row, self.dialect)

    def iter_catalog_heads(self, keep: int, model_id: str | None = None, page_size: int = 500
                           ) -> Iterator[tuple[CatalogImage, FeatureHead]]:
        """`iter_catalog_images` without thumbnails or features (~90 % of a row's bytes): each
        record with its features' `FeatureHead` (how `Catalog.load` finds them in a feature pack)."""
        for row in self._catalog_pages(CATALOG_HEAD_COLUMNS, model_id, page_size, (keep, keep)):
            yield row_to_catalog_head(row, self.dialect)

    def _catalog_pages(self, columns: Sequence[str], model_id: str | None, page_size: int,
                       column_args: tuple[Any, ...] = ()) -> Iterator[Sequence[Any]]:
        keys = ("model_id", "created_at", "image_id") if model_id is None else ("created_at", "image_id")
        fixed = "" if model_id is None else "model_id = ? AND "
        cols = [CATALOG_COLUMNS.index(k) for k in keys]
        select = f"SELECT {', '.join(columns)} FROM catalog_images"
        after: tuple[Any, ...] | None = None
        while True:
            where = f"({', '.join(keys)}) > ({', '.join('?' for _ in keys)})" if after else "1 = 1"
            args = ([] if model_id is None else [model_id]) + list(after or ())
            with self._read() as cur:
                cur.execute(self._q(f"{select} WHERE {fixed}{where} ORDER BY {', '.join(keys)} "
                                    "LIMIT ?"), (*column_args, *args, page_size))
                rows = cur.fetchall()
            if rows:
                after = tuple(rows[-1][c] for c in cols)
            yield from rows
            if len(rows) < page_size:
                return

    def get_catalog_image(self, image_id: str) -> CatalogImage | None:
        with self._read() as cur:
            cur.execute(self._q(f"{_SELECT_CATALOG} WHERE image_id = ?"), (image_id,))
            row = cur.fetchone()
        return None if row is None else row_to_catalog(row, self.dialect)

    def list_sightings(self, individual_id: str, model_id: str | None = None) -> list[SightingRecord]:
        """One individual's photos as sightings, oldest first (metadata columns only, indexed)."""
        where, params = " WHERE individual_id = ?", (individual_id,)
        if model_id is not None:
            where, params = where + " AND model_id = ?", (individual_id, model_id)
        with self._read() as cur:
            cur.execute(self._q(f"SELECT {', '.join(SIGHTING_COLUMNS)} FROM catalog_images{where}"), params)
            return sighting_order(row_to_sighting(r, self.dialect) for r in cur.fetchall())

    def remove_individual(self, individual_id: str) -> int:
        with self._write() as cur:
            self._lock_individual(cur, individual_id)
            # RETURNING: the photos this statement deleted (on PostgreSQL a SELECT before it could miss
            # one enrolled meanwhile, and another worker would keep it)
            cur.execute(self._q("DELETE FROM catalog_images WHERE individual_id = ? RETURNING image_id"),
                        (individual_id,))
            removed = [str(r[0]) for r in cur.fetchall()]
            bump_generation(cur, self.dialect, removed)  # even when nothing was removed: one write, one step
            return len(removed)

    def list_individual_images(self, individual_id: str,
                               model_id: str | None = None) -> list[CatalogImage]:
        """One individual's photos, oldest first (an indexed look-up, not a catalog scan)."""
        where, params = " WHERE individual_id = ?", (individual_id,)
        if model_id is not None:
            where, params = where + " AND model_id = ?", (individual_id, model_id)
        with self._read() as cur:
            cur.execute(self._q(f"{_SELECT_CATALOG}{where} ORDER BY created_at, image_id"), params)
            rows = cur.fetchall()
        return [row_to_catalog(r, self.dialect) for r in rows]

    def has_individual(self, individual_id: str) -> bool:
        """Whether any photo of `individual_id` is enrolled; inside `atomic()` the id stays locked
        (on PostgreSQL) until the transaction ends, so check-then-create is safe across processes."""
        with self._read() as cur:
            self._lock_individual(cur, individual_id)
            cur.execute(self._q("SELECT 1 FROM catalog_images WHERE individual_id = ? LIMIT 1"),
                        (individual_id,))
            return cur.fetchone() is not None

    def catalog_generation(self) -> int:
        """How many catalog writes the database has seen (one row, read by primary key)."""
        with self._read() as cur:
            return current_generation(cur)

    def catalog_changes(self, since: int) -> tuple[int, list[str] | None]:
        """The current catalog generation and the photos changed since generation `since` (None:
        the change log cannot say; read the whole catalog). `integrations/_changes.py`."""
        with self._read() as cur:
            return changes_since(cur, self.dialect, since)

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
