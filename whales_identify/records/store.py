"""Records and the storage protocol shared by the catalog, the service and the database sinks.

The library defines *what* is stored; `integrations/` implements *where* (SQLite, PostgreSQL).
`InMemoryStore` is the reference implementation, used by tests and by one-off CLI runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from whales_identify.errors import ConflictError, NotFoundError
from whales_identify.records.curation import InMemoryCuration
from whales_identify.records.review_queue import PredictionQuery, select

REVIEW_STATES = ("unreviewed", "confirmed", "new_individual", "not_cetacean")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Sighting:
    """Where and when a photo was taken, from EXIF or from the uploader."""

    observed_at: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    location: str | None = None
    observer: str | None = None


@dataclass(frozen=True)
class CatalogImage:
    """One reference photo of a known individual, with everything needed to match against it."""

    image_id: str
    individual_id: str
    species: str
    model_id: str  # the embedding model that produced `embedding`; never compare across models
    embedding: np.ndarray  # (D,) float32, L2-normalised
    keypoints: np.ndarray | None = None  # (K, 2) float32 pixel coordinates
    descriptors: np.ndarray | None = None  # (K, F) local descriptors
    thumbnail: bytes | None = None  # JPEG
    image_sha256: str = ""
    filename: str = ""
    source: str = ""
    sighting: Sighting = field(default_factory=Sighting)
    created_at: datetime = field(default_factory=utcnow)
    # (width, height) of the image `keypoints` are measured in (the photo downscaled for local
    # features); None for records enrolled before it was kept (see whales_identify/reid/explain.py)
    feature_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class FeatureHead:
    """What a catalog load needs to recognise a photo's local features in a cache of them
    (`Store.iter_catalog_heads`) without reading the descriptors (~60 kB a photo): their number,
    the first (strongest) row and the last of the first `keep`, and every keypoint (~4 kB). The
    two rows are given for uint8 descriptors of 128 values (RootSIFT, what a feature pack holds;
    a SQL store cuts them out of the stored bytes), else None."""

    rows: int  # descriptors stored (0: none)
    first_descriptor: np.ndarray | None  # (1, 128) uint8
    last_descriptor: np.ndarray | None  # (1, 128) uint8: row min(rows, keep) - 1
    keypoints: np.ndarray | None  # (K, 2)

    @classmethod
    def of(cls, keypoints: np.ndarray | None, descriptors: np.ndarray | None, keep: int) -> FeatureHead:
        rows, first, last = 0 if descriptors is None else len(descriptors), None, None
        d = descriptors
        if rows and d is not None and d.dtype == np.uint8 and d.shape[1:] == (128,):
            kept = min(rows, keep)
            first, last = np.array(d[:1]), np.array(d[kept - 1:kept])
        return cls(rows, first, last, None if keypoints is None else np.array(keypoints))


@dataclass(frozen=True)
class SightingRecord:
    """One catalog photo of an individual seen as a sighting: when, where, by whom (no pixels or
    features; `Store.list_sightings` reads these without loading the arrays)."""

    image_id: str
    individual_id: str
    species: str
    filename: str
    source: str
    sighting: Sighting
    created_at: datetime

    @property
    def when(self) -> datetime:
        """When the animal was seen: the photo's time, else when it was enrolled."""
        return self.sighting.observed_at or self.created_at


def sighting_order(records: Iterable[SightingRecord]) -> list[SightingRecord]:
    """Oldest first, by `when`, ties by image id (the order of an individual's history)."""
    return sorted(records, key=lambda r: (r.when, r.image_id))


@dataclass(frozen=True)
class PredictionRecord:
    """What the service answered for one photo, plus its review state."""

    prediction_id: str
    image_sha256: str
    filename: str
    rejected: bool
    rejection_reason: str | None
    cetacean_score: float
    gate_backend: str
    gate_version: str
    species: str | None
    individual_id: str | None
    is_new_individual: bool | None
    probability: float | None
    candidates: list[dict[str, Any]]
    model_version: str
    created_at: datetime = field(default_factory=utcnow)
    sighting: Sighting = field(default_factory=Sighting)
    review_state: str = "unreviewed"
    reviewer_decision: dict[str, Any] | None = None
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None  # the reviewer's name, else a fingerprint of the key (never the key)
    batch_id: str | None = None  # the /v1/predict-batch call that made it (None: a single photo)
    job_id: str | None = None  # the `whales batch` job that made it (None: the service)


@runtime_checkable
class Store(Protocol):
    """Persistence for predictions (a sink) and for the catalog, on one database."""

    def ping(self) -> None: ...
    def close(self) -> None: ...

    # predictions
    def save_prediction(self, record: PredictionRecord, image_jpeg: bytes | None = None) -> None: ...
    def get_prediction(self, prediction_id: str) -> PredictionRecord | None: ...
    def get_prediction_image(self, prediction_id: str) -> bytes | None: ...
    def save_review(self, prediction_id: str, state: str, decision: dict[str, Any],
                    reviewed_by: str | None = None,
                    expected_state: str | None = None) -> PredictionRecord: ...
    def list_predictions(self, since: datetime | None = None, limit: int | None = None,
                         offset: int = 0) -> list[PredictionRecord]: ...
    def query_predictions(self, query: PredictionQuery) -> list[PredictionRecord]: ...
    def undo_review(self, prediction_id: str, expected_state: str | None = None,
                    undone_by: str | None = None) -> tuple[PredictionRecord, list[str]]: ...
    def list_undos(self, prediction_id: str) -> list[dict[str, Any]]: ...
    # catalog curation (whales_identify/records/curation.py): each one transaction, audited
    def rename_individual(self, old_id: str, new_id: str, actor: str | None = None) -> int: ...
    def merge_individuals(self, source_id: str, target_id: str,
                          actor: str | None = None) -> dict[str, Any]: ...
    def move_catalog_image(self, image_id: str, target_id: str, create: bool = False,
                           actor: str | None = None) -> dict[str, Any]: ...
    def remove_catalog_image(self, image_id: str, actor: str | None = None) -> tuple[str, int]: ...
    def resolve_individual(self, individual_id: str) -> str | None: ...
    def list_aliases(self, individual_id: str) -> list[str]: ...
    def list_catalog_audit(self, individual_id: str) -> list[dict[str, Any]]: ...

    # catalog
    def add_catalog_images(self, images: Sequence[CatalogImage]) -> None: ...
    def list_catalog_images(self, model_id: str | None = None) -> list[CatalogImage]: ...
    def iter_catalog_images(self, model_id: str | None = None,
                            page_size: int = 500) -> Iterator[CatalogImage]: ...
    def iter_catalog_heads(self, keep: int, model_id: str | None = None, page_size: int = 500
                           ) -> Iterator[tuple[CatalogImage, FeatureHead]]: ...
    def get_catalog_image(self, image_id: str) -> CatalogImage | None: ...
    def remove_individual(self, individual_id: str) -> int: ...
    def list_sightings(self, individual_id: str, model_id: str | None = None) -> list[SightingRecord]: ...
    def list_individual_images(self, individual_id: str,
                               model_id: str | None = None) -> list[CatalogImage]: ...
    def has_individual(self, individual_id: str) -> bool: ...
    def catalog_generation(self) -> int: ...
    # (the current generation, the photos changed after `since`); None: unknown, read the whole catalog
    def catalog_changes(self, since: int) -> tuple[int, list[str] | None]: ...

    # one transaction for several writes (a review enrols a photo and records the decision)
    def atomic(self) -> AbstractContextManager[None]: ...
    def purge_predictions(self, photos_before: datetime | None,
                          records_before: datetime | None) -> tuple[int, int]: ...


def enrolled_by_review(record: PredictionRecord) -> list[str]:
    """The catalog photo ids a review of `record` enrolled (kept in its decision)."""
    return [str(i) for i in (record.reviewer_decision or {}).get("enrolled_image_ids") or [] if i]


def check_undoable(state: str, expected_state: str | None, prediction_id: str) -> None:
    """Raise `ConflictError` unless the prediction holds a decision (the one expected, if given)."""
    if state == "unreviewed":
        raise ConflictError(f"prediction {prediction_id!r} is not reviewed (nothing to undo)")
    if expected_state is not None and state != expected_state:
        raise ConflictError(f"prediction {prediction_id!r} is {state}, not {expected_state}")


class InMemoryStore(InMemoryCuration):
    """A thread-safe `Store` that lives in memory (tests, dry runs)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: `atomic()` holds it around other writes
        self._predictions: dict[str, PredictionRecord] = {}
        self._prediction_images: dict[str, bytes] = {}
        self._catalog: dict[str, CatalogImage] = {}
        self._generation = 0
        self._undos: list[tuple[str, dict[str, Any]]] = []  # (prediction id, audit row)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def save_prediction(self, record: PredictionRecord, image_jpeg: bytes | None = None) -> None:
        with self._lock:
            self._predictions[record.prediction_id] = self._resolved(record)  # no retired ids
            if image_jpeg is not None:
                self._prediction_images[record.prediction_id] = image_jpeg

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        return self._predictions.get(prediction_id)

    def get_prediction_image(self, prediction_id: str) -> bytes | None:
        return self._prediction_images.get(prediction_id)

    def save_review(self, prediction_id: str, state: str, decision: dict[str, Any],
                    reviewed_by: str | None = None,
                    expected_state: str | None = None) -> PredictionRecord:
        if state not in REVIEW_STATES:
            raise ValueError(f"unknown review state {state!r}")
        with self._lock:
            record = self._predictions[prediction_id]
            if expected_state is not None and record.review_state != expected_state:
                raise ConflictError(f"prediction {prediction_id!r} was already reviewed "
                                    f"({record.review_state})")
            record = replace(record, review_state=state, reviewer_decision=decision,
                             reviewed_at=utcnow(), reviewed_by=reviewed_by)
            self._predictions[prediction_id] = record
            return record

    def list_predictions(self, since: datetime | None = None, limit: int | None = None,
                         offset: int = 0) -> list[PredictionRecord]:
        rows = sorted(self._predictions.values(), key=lambda r: (r.created_at, r.prediction_id))
        if since is not None:
            rows = [r for r in rows if r.created_at >= since]
        rows = rows[offset:]
        return rows[:limit] if limit is not None else rows

    def query_predictions(self, query: PredictionQuery) -> list[PredictionRecord]:
        return select(list(self._predictions.values()), query)

    def undo_review(self, prediction_id: str, expected_state: str | None = None,
                    undone_by: str | None = None) -> tuple[PredictionRecord, list[str]]:
        """Back to `unreviewed`, removing the catalog photos the review enrolled (see SqlStore);
        returns (the record before the undo, the removed catalog photo ids)."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None:
                raise NotFoundError(f"no prediction {prediction_id!r}")
            check_undoable(record.review_state, expected_state, prediction_id)
            removed = [i for i in enrolled_by_review(record) if i in self._catalog]
            for image_id in removed:
                del self._catalog[image_id]
            self._generation += 1
            self._undos.append((prediction_id, {
                "undone_at": utcnow(), "undone_by": undone_by, "review_state": record.review_state,
                "reviewer_decision": record.reviewer_decision, "reviewed_by": record.reviewed_by}))
            self._predictions[prediction_id] = replace(record, review_state="unreviewed", reviewed_at=None,
                                                       reviewer_decision=None, reviewed_by=None)
            return record, removed

    def list_undos(self, prediction_id: str) -> list[dict[str, Any]]:
        return [row for pid, row in self._undos if pid == prediction_id]

    # curation: rename, merge and move in InMemoryCuration (whales_identify/records/curation.py);
    # audit rows in `_undos`, keyed by individual
    def remove_catalog_image(self, image_id: str, actor: str | None = None) -> tuple[str, int]:
        with self._lock:
            image = self._catalog.pop(image_id, None)
            if image is None:
                raise NotFoundError(f"no catalog photo {image_id!r}")
            self._generation += 1
            self._audit(actor, "remove_image", image.individual_id,
                        {"image_id": image_id, "filename": image.filename, "source": image.source})
            return image.individual_id, sum(im.individual_id == image.individual_id
                                            for im in self._catalog.values())

    def _audit(self, actor: str | None, action: str, individual_id: str, detail: dict[str, Any]) -> None:
        self._undos.append((f"individual:{individual_id}",
                            {"at": utcnow(), "actor": actor, "action": action, "detail": detail}))

    def list_catalog_audit(self, individual_id: str) -> list[dict[str, Any]]:
        return self.list_undos(f"individual:{individual_id}")

    def add_catalog_images(self, images: Iterable[CatalogImage]) -> None:
        with self._lock:
            for image in images:
                self._catalog[image.image_id] = image
                # a retired id (rename, merge) that gets photos again is live: see records/curation.py
                self.__dict__.get("_alias_table", {}).pop(image.individual_id, None)
            self._generation += 1

    def list_catalog_images(self, model_id: str | None = None) -> list[CatalogImage]:
        return [im for im in self._catalog.values() if model_id is None or im.model_id == model_id]

    def iter_catalog_images(self, model_id: str | None = None,
                            page_size: int = 500) -> Iterator[CatalogImage]:
        """`list_catalog_images`, one record at a time (the records are in memory already)."""
        yield from self.list_catalog_images(model_id)

    def iter_catalog_heads(self, keep: int, model_id: str | None = None, page_size: int = 500
                           ) -> Iterator[tuple[CatalogImage, FeatureHead]]:
        """`iter_catalog_images` without features or thumbnails: each record with the
        `FeatureHead` of its features instead (how `Catalog.load` finds them in a feature pack)."""
        for im in self.list_catalog_images(model_id):
            yield (replace(im, keypoints=None, descriptors=None, thumbnail=None),
                   FeatureHead.of(im.keypoints, im.descriptors, keep))

    def get_catalog_image(self, image_id: str) -> CatalogImage | None:
        return self._catalog.get(image_id)

    def list_sightings(self, individual_id: str, model_id: str | None = None) -> list[SightingRecord]:
        return sighting_order(
            SightingRecord(im.image_id, im.individual_id, im.species, im.filename, im.source, im.sighting,
                           im.created_at)
            for im in list(self._catalog.values())
            if im.individual_id == individual_id and (model_id is None or im.model_id == model_id))

    def remove_individual(self, individual_id: str) -> int:
        with self._lock:
            doomed = [k for k, im in self._catalog.items() if im.individual_id == individual_id]
            for key in doomed:
                del self._catalog[key]
            self._generation += 1
            return len(doomed)

    def list_individual_images(self, individual_id: str,
                               model_id: str | None = None) -> list[CatalogImage]:
        found = [im for im in self._catalog.values() if im.individual_id == individual_id
                 and (model_id is None or im.model_id == model_id)]
        return sorted(found, key=lambda im: (im.created_at, im.image_id))

    def has_individual(self, individual_id: str) -> bool:
        return any(im.individual_id == individual_id for im in self._catalog.values())

    def catalog_generation(self) -> int:
        return self._generation

    def catalog_changes(self, since: int) -> tuple[int, list[str] | None]:
        """No change log in memory (one process: nobody else changes it): read the whole catalog."""
        return self._generation, None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """All writes inside commit together; an exception restores the state from before."""
        with self._lock:
            saved = (dict(self._predictions), dict(self._prediction_images), dict(self._catalog),
                     self._generation)
            try:
                yield
            except BaseException:
                self._predictions, self._prediction_images, self._catalog, self._generation = saved
                raise

    def purge_predictions(self, photos_before: datetime | None,
                          records_before: datetime | None) -> tuple[int, int]:
        with self._lock:
            old = [r.prediction_id for r in self._predictions.values() if r.review_state == "unreviewed"]
            created = {k: self._predictions[k].created_at for k in old}
            photos = [k for k in old if photos_before is not None and created[k] < photos_before
                      and k in self._prediction_images]
            records = [k for k in old if records_before is not None and created[k] < records_before]
            for k in photos + records:
                self._prediction_images.pop(k, None)
            for k in records:
                del self._predictions[k]
            return len(photos), len(records)
