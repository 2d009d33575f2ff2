"""Predict: decode one photo once, identify it, store the prediction, answer with `PredictionOut`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol

from whales_be_service import metrics
from whales_be_service.errors import ServiceError
from whales_be_service.mapping import prediction_out, prediction_record
from whales_be_service.schemas import PredictionOut
from whales_be_service.settings import Settings
from whales_be_service.uploads import Decoded, decode, encode_jpeg
from whales_be_service.use_cases.ports import Identify
from whales_identify.identify import outcome
from whales_identify.records.sighting import merge_sightings
from whales_identify.records.store import Sighting, Store, utcnow
from whales_identify.results import Prediction

log = logging.getLogger("whales_be_service")


def new_prediction_id() -> str:
    return uuid.uuid4().hex


def store_unavailable(settings: Settings, what: str) -> ServiceError:
    """503 naming the component; the database's own message goes to the log, not to the client."""
    return ServiceError(503, "store_unavailable", f"{what}: the database is unavailable; retry shortly",
                        {"component": "store"}, {"Retry-After": str(settings.retry_after_s)})


class RetentionClock(Protocol):
    purged_at: float  # monotonic time of this worker's last purge (0: never)


class Retention:
    """Applies the retention settings after a prediction is stored, at most every `retention_check_s`
    per worker (`clock` keeps the time of the last purge across requests)."""

    def __init__(self, store: Store, settings: Settings, clock: RetentionClock):
        self.store = store
        self.settings = settings
        self.clock = clock

    def __call__(self) -> None:
        s = self.settings
        if not (s.query_image_retention_days or s.prediction_retention_days):
            return
        now = time.monotonic()
        if self.clock.purged_at and now - self.clock.purged_at < s.retention_check_s:
            return
        self.clock.purged_at = now
        wall = utcnow()
        days = s.query_image_retention_days, s.prediction_retention_days
        photos_before, records_before = (wall - timedelta(days=d) if d else None for d in days)
        try:
            photos, records = self.store.purge_predictions(photos_before, records_before)
        except Exception:  # retention never fails a prediction; it is retried at the next check
            log.warning("retention purge failed", exc_info=True)
            return
        if photos or records:
            log.info("retention: deleted %d query photos and %d unreviewed predictions", photos, records)


class PredictPhotos:
    """Identifies decoded photos and stores each prediction (the single path; batches reuse it).

    Args:
        identifier: returns the identifier in step with the catalog (called once per chunk, since
            another worker may change the catalog meanwhile).
        store: where predictions (and, per settings, their photo) are kept.
        settings: decoding limits, `store_query_images`.
        after_store: run after each stored prediction (the retention purge).
    """

    def __init__(self, identifier: Callable[[], Identify], store: Store, settings: Settings,
                 after_store: Callable[[], None] = lambda: None):
        self.identifier = identifier
        self.store = store
        self.settings = settings
        self.after_store = after_store

    def decode(self, name: str, data: bytes) -> tuple[Decoded, float]:
        """The photo decoded once, and the seconds it took (a failure is counted as `failed`)."""
        t0 = time.perf_counter()
        try:
            return decode(name, data, self.settings), time.perf_counter() - t0
        except Exception:
            metrics.record_prediction("failed", {"decode": time.perf_counter() - t0})
            raise

    def identify(self, items: Sequence[tuple[Decoded, float]], top_k: int, mask: bool = False,
                 given: Sighting | None = None, job_id: str | None = None,
                 batch_id: str | None = None) -> list[PredictionOut]:
        """Identify, store and describe decoded photos (one identifier call for all of them)."""
        preds = self.identifier()([d.image for d, _ in items], top_k=top_k)
        out = []
        for (item, t_decode), pred in zip(items, preds, strict=True):
            sighting = merge_sightings(given, item.sighting) if given is not None else item.sighting
            prediction_id = new_prediction_id()
            self.save(pred, item, prediction_id, sighting, job_id, batch_id)
            metrics.record_prediction(outcome(pred), {"decode": t_decode, **pred.timings})
            out.append(prediction_out(pred, item, prediction_id, mask, sighting))
        return out

    def save(self, pred: Prediction, item: Decoded, prediction_id: str, sighting: Sighting,
             job_id: str | None = None, batch_id: str | None = None) -> None:
        record = prediction_record(pred, item, prediction_id, sighting, job_id, batch_id)
        jpeg = encode_jpeg(item.image) if self.settings.store_query_images else None
        try:
            self.store.save_prediction(record, image_jpeg=jpeg)
        except Exception as exc:
            log.exception("could not store prediction %s", prediction_id)
            raise store_unavailable(self.settings, "the prediction could not be stored") from exc
        self.after_store()

    def __call__(self, name: str, data: bytes, top_k: int = 5, mask: bool = False,
                 given: Sighting | None = None) -> PredictionOut:
        """Decode, identify, store and describe one uploaded photo; fields the uploader gave win
        over the photo's EXIF."""
        return self.identify([self.decode(name, data)], top_k, mask, given)[0]
