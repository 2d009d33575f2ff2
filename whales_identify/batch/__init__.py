"""Survey-scale batch jobs, engine-independent: where the photos are (`sources`), what is done and
the results table (`results`). The engine (Dask distributed) and the per-photo pipeline (the
service's, shared with `/v1/predict-batch`) are wired together by `whales batch` (whales_cli/
batch.py); nothing here imports them."""

from whales_identify.batch.results import (
    RESULT_COLUMNS,
    ResultsDir,
    row_from_error,
    row_from_result,
    summarise,
)
from whales_identify.batch.sources import (
    IMAGE_SUFFIXES,
    Listing,
    PhotoRef,
    SourceProblem,
    hash_photo,
    list_photos,
    read_photo,
)

__all__ = ["IMAGE_SUFFIXES", "RESULT_COLUMNS", "Listing", "PhotoRef", "ResultsDir", "SourceProblem",
           "hash_photo", "list_photos", "read_photo", "row_from_error", "row_from_result", "summarise"]
