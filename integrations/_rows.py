"""How records look in each SQL dialect: value adapters and the record <-> row mapping, written once.

SQLite keeps times as fixed-width UTC ISO 8601 text, PostgreSQL as TIMESTAMPTZ; both keep numpy
arrays as raw bytes plus dtype and shape, and candidates/decisions as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from whales_identify.records.store import (
    CatalogImage,
    FeatureHead,
    PredictionRecord,
    Sighting,
    SightingRecord,
    utcnow,
)


class Cursor(Protocol):
    """The DB-API subset both drivers share."""

    rowcount: int

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...



# ---------------------------------------------------------------------------------------- dialects


def _iso_utc(value: datetime) -> str:
    # Fixed width (always microseconds, always +00:00) so that text order is time order in SQLite.
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Dialect:
    name: str
    types: dict[str, str]
    placeholder: str
    timestamps_as_text: bool
    has_migrations_table: str  # a query that returns one row when schema_migrations exists

    def sql(self, query: str) -> str:
        return query if self.placeholder == "?" else query.replace("?", self.placeholder)

    def to_db_time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return _iso_utc(value) if self.timestamps_as_text else as_utc(value)

    def from_db_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return as_utc(value)


SQLITE = Dialect("sqlite", {"timestamp": "TEXT", "blob": "BLOB", "real": "REAL", "bool": "INTEGER"},
                 "?", timestamps_as_text=True,
                 has_migrations_table="SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'")
POSTGRES = Dialect("postgresql", {"timestamp": "TIMESTAMPTZ", "blob": "BYTEA", "real": "DOUBLE PRECISION",
                                  "bool": "BOOLEAN"}, "%s", timestamps_as_text=False,
                   has_migrations_table="SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL")


# ------------------------------------------------------------------------------------ row mapping


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return _iso_utc(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default, ensure_ascii=False)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def encode_array(array: np.ndarray | None) -> tuple[bytes | None, str | None, str | None]:
    """Raw bytes, numpy dtype string (with byte order) and JSON shape."""
    if array is None:
        return None, None, None
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise TypeError("object arrays cannot be stored")
    return np.ascontiguousarray(array).tobytes(), array.dtype.str, json.dumps(list(array.shape))


def decode_array(data: Any, dtype: str | None, shape: str | None) -> np.ndarray | None:
    if data is None or dtype is None or shape is None:
        return None
    return np.frombuffer(bytes(data), dtype=np.dtype(dtype)).reshape(_shape(shape)).copy()


@lru_cache(maxsize=4096)
def _shape(text: str) -> tuple[int, ...]:
    """A stored shape (a catalog load decodes three per photo, and most photos share them)."""
    return tuple(json.loads(text))


PREDICTION_COLUMNS = (
    "prediction_id", "created_at", "image_sha256", "filename", "rejected", "rejection_reason",
    "cetacean_score", "gate_backend", "gate_version", "species", "individual_id", "is_new_individual",
    "probability", "candidates", "model_version", "observed_at", "latitude", "longitude", "location",
    "observer", "review_state", "reviewer_decision", "reviewed_at", "reviewed_by", "job_id",
    "batch_id",
)
CATALOG_COLUMNS = (
    "image_id", "individual_id", "species", "model_id", "embedding", "embedding_dtype", "embedding_shape",
    "keypoints", "keypoints_dtype", "keypoints_shape", "descriptors", "descriptors_dtype",
    "descriptors_shape", "thumbnail", "image_sha256", "filename", "source", "observed_at", "latitude",
    "longitude", "location", "observer", "created_at", "feature_width", "feature_height",
)


SIGHTING_COLUMNS = ("image_id", "individual_id", "species", "filename", "source", "observed_at", "latitude",
                    "longitude", "location", "observer", "created_at")


def row_to_sighting(row: Sequence[Any], dialect: Dialect) -> SightingRecord:
    r = dict(zip(SIGHTING_COLUMNS, row, strict=True))
    return SightingRecord(image_id=r["image_id"], individual_id=r["individual_id"], species=r["species"],
                          filename=r["filename"], source=r["source"], sighting=_sighting_from(r, dialect),
                          created_at=dialect.from_db_time(r["created_at"]) or utcnow())


def _sighting_values(sighting: Sighting, dialect: Dialect) -> dict[str, Any]:
    return {"observed_at": dialect.to_db_time(sighting.observed_at),
            "latitude": _opt_float(sighting.latitude), "longitude": _opt_float(sighting.longitude),
            "location": sighting.location, "observer": sighting.observer}


def _sighting_from(row: dict[str, Any], dialect: Dialect) -> Sighting:
    return Sighting(observed_at=dialect.from_db_time(row["observed_at"]),
                    latitude=_opt_float(row["latitude"]), longitude=_opt_float(row["longitude"]),
                    location=row["location"], observer=row["observer"])


def prediction_to_row(record: PredictionRecord, dialect: Dialect) -> tuple[Any, ...]:
    values = {
        "prediction_id": record.prediction_id, "created_at": dialect.to_db_time(record.created_at),
        "image_sha256": record.image_sha256, "filename": record.filename, "rejected": bool(record.rejected),
        "rejection_reason": record.rejection_reason, "cetacean_score": float(record.cetacean_score),
        "gate_backend": record.gate_backend, "gate_version": record.gate_version, "species": record.species,
        "individual_id": record.individual_id, "is_new_individual": _opt_bool(record.is_new_individual),
        "probability": _opt_float(record.probability), "candidates": to_json(list(record.candidates)),
        "model_version": record.model_version, **_sighting_values(record.sighting, dialect),
        "review_state": record.review_state, "reviewer_decision": to_json(record.reviewer_decision),
        "reviewed_at": dialect.to_db_time(record.reviewed_at), "reviewed_by": record.reviewed_by,
        "job_id": record.job_id,
        "batch_id": record.batch_id,
    }
    return tuple(values[c] for c in PREDICTION_COLUMNS)


def row_to_prediction(row: Sequence[Any], dialect: Dialect) -> PredictionRecord:
    r = dict(zip(PREDICTION_COLUMNS, row, strict=True))
    return PredictionRecord(
        prediction_id=r["prediction_id"], image_sha256=r["image_sha256"], filename=r["filename"],
        rejected=bool(r["rejected"]), rejection_reason=r["rejection_reason"],
        cetacean_score=float(r["cetacean_score"]), gate_backend=r["gate_backend"],
        gate_version=r["gate_version"], species=r["species"], individual_id=r["individual_id"],
        is_new_individual=_opt_bool(r["is_new_individual"]), probability=_opt_float(r["probability"]),
        candidates=json.loads(r["candidates"]), model_version=r["model_version"],
        created_at=dialect.from_db_time(r["created_at"]) or utcnow(), sighting=_sighting_from(r, dialect),
        review_state=r["review_state"],
        reviewer_decision=None if r["reviewer_decision"] is None else json.loads(r["reviewer_decision"]),
        reviewed_at=dialect.from_db_time(r["reviewed_at"]), reviewed_by=r["reviewed_by"],
        job_id=r["job_id"],
        batch_id=r["batch_id"],
    )


def catalog_to_row(image: CatalogImage, dialect: Dialect) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "image_id": image.image_id, "individual_id": image.individual_id, "species": image.species,
        "model_id": image.model_id, "thumbnail": None if image.thumbnail is None else bytes(image.thumbnail),
        "image_sha256": image.image_sha256, "filename": image.filename, "source": image.source,
        **_sighting_values(image.sighting, dialect), "created_at": dialect.to_db_time(image.created_at),
        "feature_width": None if image.feature_size is None else int(image.feature_size[0]),
        "feature_height": None if image.feature_size is None else int(image.feature_size[1]),
    }
    for name in ("embedding", "keypoints", "descriptors"):
        values[name], values[f"{name}_dtype"], values[f"{name}_shape"] = encode_array(getattr(image, name))
    if values["embedding"] is None:
        raise ValueError(f"catalog image {image.image_id!r} has no embedding")
    return tuple(values[c] for c in CATALOG_COLUMNS)


# `CATALOG_COLUMNS` as `Store.iter_catalog_heads` selects them: no thumbnail, and of the descriptors
# only the first row and the last of the first `keep` (a `?` bound to keep, twice), as 128-byte rows
# (uint8 RootSIFT, the layout a feature pack holds); the rest of the blob is never copied out
_KEPT = "(CASE WHEN length(descriptors) < 128 * ? THEN length(descriptors) / 128 ELSE ? END)"
CATALOG_HEAD_COLUMNS = (*("substr(descriptors, 1, 128)" if c == "descriptors" else
                          "NULL" if c == "thumbnail" else c for c in CATALOG_COLUMNS),
                        f"substr(descriptors, 1 + 128 * ({_KEPT} - 1), 128)")
_CATALOG_AT = {c: i for i, c in enumerate(CATALOG_COLUMNS)}


def row_to_catalog_head(row: Sequence[Any], dialect: Dialect) -> tuple[CatalogImage, FeatureHead]:
    """A row selected with `CATALOG_HEAD_COLUMNS`: the record without features, and their head."""
    values, last = list(row[:-1]), row[-1]
    at = _CATALOG_AT
    first, dtype, shape = (values[at[c]] for c in ("descriptors", "descriptors_dtype", "descriptors_shape"))
    keypoints = decode_array(*(values[at[c]] for c in ("keypoints", "keypoints_dtype", "keypoints_shape")))
    dims = list(_shape(shape)) if shape is not None else [0]
    ends: list[np.ndarray | None] = [None, None]
    if first is not None and last is not None and np.dtype(dtype) == np.uint8 and dims[1:] == [128]:
        ends = [np.frombuffer(bytes(b), np.uint8).reshape(1, 128).copy() if len(b) == 128 else None
                for b in (first, last)]
    for c in ("keypoints", "descriptors"):
        values[at[c]] = None
    return row_to_catalog(values, dialect), FeatureHead(int(dims[0]), ends[0], ends[1], keypoints)


def row_to_catalog(row: Sequence[Any], dialect: Dialect) -> CatalogImage:
    r = dict(zip(CATALOG_COLUMNS, row, strict=True))
    arrays = {n: decode_array(r[n], r[f"{n}_dtype"], r[f"{n}_shape"])
              for n in ("embedding", "keypoints", "descriptors")}
    return CatalogImage(
        image_id=r["image_id"], individual_id=r["individual_id"], species=r["species"],
        model_id=r["model_id"], embedding=arrays["embedding"], keypoints=arrays["keypoints"],
        descriptors=arrays["descriptors"],
        thumbnail=None if r["thumbnail"] is None else bytes(r["thumbnail"]),
        image_sha256=r["image_sha256"], filename=r["filename"], source=r["source"],
        sighting=_sighting_from(r, dialect), created_at=dialect.from_db_time(r["created_at"]) or utcnow(),
        feature_size=(None if r["feature_width"] is None or r["feature_height"] is None
                      else (int(r["feature_width"]), int(r["feature_height"]))),
    )
