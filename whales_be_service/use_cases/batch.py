"""Batch: every photo of a planned batch through the single path, in chunks of `batch_size`; each
ends in `results` or `errors`."""

from __future__ import annotations

import time

from whales_be_service import metrics
from whales_be_service.schemas import BatchError, BatchOut, BatchSummary, PredictionOut
from whales_be_service.uploads import BatchPlan, Decoded, describe_error
from whales_be_service.use_cases.predict import PredictPhotos, new_prediction_id


class PredictBatch:
    """Args: photos: the single-photo path; batch_size: photos per identifier call."""

    def __init__(self, photos: PredictPhotos, batch_size: int):
        self.photos = photos
        self.batch_size = batch_size

    def __call__(self, plan: BatchPlan, top_k: int = 5, job_id: str | None = None) -> BatchOut:
        """`job_id` (a `whales batch` job) is stored with each prediction."""
        started = time.perf_counter()
        results: list[PredictionOut] = []
        errors: list[BatchError] = []
        skipped = 0
        pending: list[tuple[Decoded, float]] = []
        batch_id = new_prediction_id()  # the review queue's `batch_id` filter

        def flush() -> None:
            if pending:
                results.extend(self.photos.identify(pending, top_k, job_id=job_id, batch_id=batch_id))
                pending.clear()

        for entry in plan.items:
            if entry.read is None:
                skipped += entry.skipped
                errors.append(BatchError(image_ind=entry.name, code=entry.error_code or "failed",
                                         message=entry.error_message or ""))
                continue
            t0 = time.perf_counter()
            try:
                data = entry.read()
            except Exception as exc:
                metrics.record_prediction("failed", {"decode": time.perf_counter() - t0})
                errors.append(_error(entry.name, exc))
                continue
            try:
                pending.append(self.photos.decode(entry.name, data))
            except Exception as exc:  # counted as failed by `decode`
                errors.append(_error(entry.name, exc))
            if len(pending) >= self.batch_size:
                flush()
        flush()
        accepted = sum(1 for r in results if not r.rejected)
        summary = BatchSummary(images=len(plan.items) - skipped, accepted=accepted,
                               rejected=len(results) - accepted, failed=len(errors) - skipped,
                               skipped=skipped, seconds=round(time.perf_counter() - started, 3),
                               batch_id=batch_id)
        return BatchOut(results=results, errors=errors, summary=summary)


def _error(name: str, exc: BaseException) -> BatchError:
    code, message = describe_error(exc)
    return BatchError(image_ind=name, code=code, message=message)
