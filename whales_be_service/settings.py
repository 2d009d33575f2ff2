"""The service's settings: one pydantic-settings class, every field read from `WHALES_<NAME>`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from integrations import dwc_eml
from integrations.base import DEFAULT_DATABASE_URL
from whales_be_service.api_keys import parse_api_keys
from whales_identify.images import DEFAULT_MAX_PIXELS
from whales_identify.models.entries import DEFAULT_REID_MODEL
from whales_identify.records.location_privacy import LocationPolicy

_DEFAULT_FRONTEND = Path(__file__).resolve().parents[1] / "frontend"
DEFAULT_ANALYSIS_MAX_SIDE = 1024  # the `whales identify` CLI downscales as the service does


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (as a container's cpuset or `taskset`
    sets it), not the machine's count; at least 1. A CPU quota (`docker --cpus`) is not seen."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def process_cores() -> int:
    """`available_cores`, shared with the other processes of the same uvicorn (WEB_CONCURRENCY);
    at least 1."""
    cores = available_cores()
    try:
        processes = max(1, int(os.environ.get("WEB_CONCURRENCY") or 1))
    except ValueError:
        processes = 1
    return max(1, cores // processes)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Configuration of `whales_be_service`; each field is the env var `WHALES_<FIELD>`.

    List fields (`api_keys`, `trusted_proxies`, `cors_origins`) take comma-separated values.
    """

    # hide_input_in_errors: a bad setting's error never echoes the values (API keys, database passwords)
    model_config = SettingsConfigDict(env_prefix="WHALES_", extra="ignore", frozen=False,
                                      populate_by_name=True, hide_input_in_errors=True)

    # components
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="Where predictions and the catalog live: sqlite:///path, postgresql://..., or "
                    "memory:// (in-process, lost at exit; tests and demos only).")
    models_dir: str | None = Field(None, description="Folder with weight files (default ./models).")
    embedding_model: str = Field(DEFAULT_REID_MODEL, description="Embedding model id (arch.tag) of the "
                                 "catalog; the gate reads its own feature model's features.")
    model_specs: CsvList = Field(
        default_factory=list,
        description="Model spec files (YAML/JSON, comma-separated) that register more embedding "
                    "models by configuration: an ONNX graph or a timm architecture with its weight "
                    "file, sha256, input size, mean/std and dimension (docs/MODELS.md). Then set "
                    "WHALES_EMBEDDING_MODEL to its id. A bad spec keeps the embedder not ready.")
    calibration: str | None = Field(
        None, description="Calibration JSON for the embedding model, written by `whales evaluate "
                          "--fit-calibration` on your own catalog (default: the packaged one for that "
                          "model). A file fitted for another model keeps the catalog from loading.")
    new_individual_target: float | None = Field(
        None, ge=0.0, le=1.0, description="A photo is called a new individual only when the calibrated "
                                          "P(new) is at least this (default: the calibration's, 0.5); "
                                          "candidates are listed either way. No effect with a "
                                          "calibration that has no P(new) (older files).")
    vote_index_dir: str | None = Field(
        None, description="Folder where the catalog's LNBNN vote index is saved once built and read back "
                          "at the next start (a start after enrolments adds the new photos to the saved "
                          "index); unset: built at every start (docs/REID.md, Scale).")
    features_dir: str | None = Field(
        None, description="Folder where the catalog's verification features (descriptors and keypoints) "
                          "are packed into files mapped read-only instead of held in RAM (~6 GB at "
                          "100k photos); workers share it, and up to three catalogs can (not a copy of "
                          "a catalog beside it: docs/API_REFERENCE.md); unset: in RAM (docs/REID.md).")
    vote_index_codes: str | None = Field(
        None, description="Codes of the faiss vote index (unset: the library's default, "
                          "PQ64x4fs,Refine(SQ8): a fast-scan search re-ranked by 8-bit codes, 168 B "
                          "per descriptor); SQ8 alone (136 B, ~4x slower search, the same neighbours); "
                          "or a fast-scan product quantiser alone such as PQ64x4fs (40 B, lower "
                          "neighbour recall: for catalogs that do not fit otherwise; docs/REID.md, "
                          "Scale).")
    vote_index_keypoints: int | None = Field(
        None, ge=16, description="Descriptors per catalog photo put into the vote index (unset: the "
                                 "library's default, 500; verification keeps its own 500). 250 halves "
                                 "the index for catalogs of 50k+ photos (docs/REID.md, Scale).")
    vote_index_max_lists: int | None = Field(
        None, ge=0, description="Most inverted lists of the faiss vote index (unset or 0: one list "
                                "per ~600 descriptors). A cap such as 1024 bounds the build time and "
                                "the coarse search at 50k+ photos (docs/REID.md, Scale).")
    inference_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="Runtime of the embedding model: onnx (the export made by `whales "
                            "models export-onnx`, no torch in the process), torch, or auto (onnx "
                            "when the export exists, else torch; same features either way).")
    gate: Literal["embedded", "clip", "off"] = Field("embedded", description="Cetacean gate backend.")
    gate_threshold: float | None = Field(None, ge=0.0, le=1.0,
                                         description="Override of the gate's calibrated threshold "
                                                     "(default: the one in the gate head's json).")
    gate_config: str | None = Field(
        None,
        description="Yaml of an operator's explicit gate overrides, per backend (threshold, "
                    "borderline band, head name; docs/GATE.md). Default: none, the head's own values.")
    warmup: bool = Field(True, description="Run one real inference before reporting ready.")

    # security
    api_keys: CsvList = Field(default_factory=list,
                              description="Keys accepted in X-API-Key by write endpoints: `key`, or "
                                          "`name:key` so that reviews and curation record the "
                                          "reviewer's name (docs/SECURITY.md).")
    cors_origins: CsvList = Field(default_factory=list, description="Origins allowed by CORS.")
    public_location_precision: str = Field(
        "0.1", description="What callers without a key see of a sighting's position: a grid size in "
                           "degrees (coordinates snapped to the cell centre; 0.1 is about 11 km), "
                           "'withheld', or 'exact' (only for data that is not sensitive). Callers with "
                           "a key see full precision. See docs/SECURITY.md.")
    public_sighting_details: bool = Field(
        False, description="Also show the place text and observer name to callers without a key.")
    require_key_for_reads: bool = Field(
        False, description="Every /v1 read (catalog, thumbnails, exports, photos) needs X-API-Key too.")

    # rate limiting (slowapi)
    rate_limit: str = Field("120/minute", description="Per-client limit, slowapi/limits syntax. A batch "
                            "costs one hit per image, so keep it at least WHALES_MAX_BATCH_IMAGES.")
    read_rate_limit: str = Field("600/minute", description="Per-client limit for read-only GETs "
                                 "(catalog pages, thumbnails), counted apart from predictions.")
    rate_limit_enabled: bool = Field(True, description="Turn rate limiting off entirely.")
    rate_limit_storage: str = Field("memory://",
                                    description="limits storage URI (redis://... to share across workers).")
    batch_counts_per_image: bool = Field(True, description="A batch costs one hit per image.")
    trusted_proxies: CsvList = Field(
        default_factory=list,
        description="Addresses/CIDRs whose X-Forwarded-For is believed (e.g. 127.0.0.1,10.0.0.0/8).")

    # input limits
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest single image file.")
    max_archive_bytes: int = Field(200 * 1024 * 1024, gt=0, description="Largest ZIP archive.")
    max_request_bytes: int = Field(256 * 1024 * 1024, gt=0, description="Largest request body.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="Most pixels in one image (bomb guard).")
    max_batch_images: int = Field(100, gt=0, description="Most images in one batch (ZIP entries too); "
                                  "at most the WHALES_RATE_LIMIT budget, which a batch draws on per image.")
    max_import_images: int = Field(2000, gt=0, description="Most photos in one catalog import "
                                   "(POST /v1/catalog/import: key required, one rate-limit hit).")
    zip_max_total_bytes: int = Field(1024 * 1024 * 1024, gt=0,
                                     description="Most uncompressed bytes in one ZIP.")
    zip_max_ratio: float = Field(100.0, gt=1.0, description="Highest compression ratio of one entry.")
    analysis_max_side: int = Field(DEFAULT_ANALYSIS_MAX_SIDE, ge=224,
                                   description="Images are downscaled to this side after decoding; "
                                               "the stored query photo uses it too.")

    # concurrency
    inference_workers: int | None = Field(
        None, ge=1, le=64, description="Threads running inference (requests in parallel); unset: one per "
                                       "core this process may use, the cores shared among WEB_CONCURRENCY "
                                       "processes, at most 8 (with WHALES_INFERENCE_THREADS set: cores / "
                                       "threads). "
                                       "On 2 cores, 2 workers of 1 thread each "
                                       "served 1.7x the requests/s of 1 worker using both cores, at the "
                                       "same latency alone (docs/DEPLOYMENT.md).")
    queue_size: int = Field(8, ge=0, description="Jobs allowed to wait for a worker (then 503).")
    inference_threads: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("WHALES_INFERENCE_THREADS", "WHALES_TORCH_THREADS"),
        description="Threads of one inference (ONNX Runtime intra-op threads, or "
                    "torch.set_num_threads; the pthreads BLAS libraries and OpenCV too, "
                    "process-wide; faiss's OpenMP vote search keeps all cores); unset: this "
                    "process's cores / inference workers, at least 1. "
                    "WHALES_TORCH_THREADS is read too.")
    catalog_refresh_s: float = Field(
        0.0, ge=0.0, description="0 (default): before every request that reads the catalog, a worker "
                                 "compares the database's catalog generation (one single-row read) with "
                                 "its own and, when another worker or replica changed it, applies the "
                                 "photos the change log names (or reads the whole catalog where it "
                                 "cannot say); N > 0: at most every N seconds (cheaper, may be N seconds "
                                 "stale).")
    batch_size: int = Field(16, ge=1, le=256, description="Images per forward pass.")
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503 when overloaded.")

    # Darwin Core Archive metadata (eml.xml of GET /v1/export?format=dwca; docs/DARWIN_CORE.md)
    dwc_license: str = Field(
        dwc_eml.DEFAULT_LICENSE, description="Licence of the published dataset: CC0-1.0, CC-BY-4.0 or "
                                             "CC-BY-NC-4.0 (the three GBIF accepts; the default matches the "
                                             "Happywhale data's terms).")
    dwc_title: str = Field(dwc_eml.DEFAULT_TITLE, min_length=1, description="Dataset title in eml.xml.")
    dwc_creator_name: str | None = Field(None, description="Person who made the dataset (eml.xml creator).")
    dwc_creator_organization: str = Field(dwc_eml.DEFAULT_ORGANIZATION, min_length=1,
                                          description="Organisation of the creator and contact.")
    dwc_creator_email: str | None = Field(None, description="E-mail address of the creator.")
    dwc_contact_name: str | None = Field(None, description="Whom to ask about the dataset (default: the "
                                         "creator).")
    dwc_contact_email: str | None = Field(None, description="E-mail address of the contact (default: the "
                                          "creator's).")
    dwc_package_uuid: str | None = Field(None, description="The dataset's UUID in packageId "
                                         "`<uuid>/v<version>`; default: derived from WHALES_DWC_TITLE, so "
                                         "it stays the same while the title does.")
    dwc_version: str = Field(dwc_eml.DEFAULT_VERSION, description="Version of the publication in "
                             "packageId; raise it each time the dataset is republished (e.g. 1.1).")

    # misc
    store_query_images: bool = Field(True, description="Keep each query photo (JPEG) for review.")
    query_image_retention_days: float = Field(
        30.0, ge=0.0, description="Delete the stored photo of a prediction nobody reviewed after this "
                                  "many days (0: keep). Reviewed photos are kept: they are evidence.")
    prediction_retention_days: float = Field(
        365.0, ge=0.0, description="Delete unreviewed predictions (the record) after this many days "
                                   "(0: keep). Reviewed predictions are kept.")
    retention_check_s: float = Field(3600.0, gt=0.0, description="How often a worker applies the "
                                     "retention settings (one indexed DELETE, after a prediction).")
    frontend_dir: str | None = Field(str(_DEFAULT_FRONTEND) if _DEFAULT_FRONTEND.is_dir() else None,
                                     description="Static web page folder served at /.")

    @field_validator("api_keys", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("vote_index_codes", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `WHALES_VOTE_INDEX_CODES=` in a compose file means "the default", not empty faiss codes
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys")
    @classmethod
    def _named_keys(cls, value: list[str]) -> list[str]:
        parse_api_keys(value)  # ValueError naming the reviewer name at fault, never a key
        return value

    @field_validator("public_location_precision")
    @classmethod
    def _precision(cls, value: str) -> str:
        LocationPolicy.parse(value)  # raises ValueError with the accepted forms
        return value

    @model_validator(mode="after")
    def _concurrency(self) -> Settings:
        """Fill in the unset concurrency: together, the workers' threads use each core once (one
        set by hand decides the other)."""
        cores = process_cores()
        if self.inference_workers is None:
            self.inference_workers = (min(cores, 8) if self.inference_threads is None
                                      else max(1, cores // self.inference_threads))
        if self.inference_threads is None:
            self.inference_threads = max(1, cores // self.inference_workers)
        return self

    @model_validator(mode="after")
    def _dataset(self) -> Settings:
        if self.dwc_license not in dwc_eml.LICENSES:
            raise ValueError(f"WHALES_DWC_LICENSE {self.dwc_license!r} is not one of "
                             f"{', '.join(dwc_eml.LICENSES)}")
        self.dataset_metadata()  # raises ValueError for a package UUID or version that cannot be used
        return self

    def dataset_metadata(self) -> dwc_eml.DatasetMetadata:
        """Title, licence, creator, contact and packageId of Darwin Core archives (eml.xml)."""
        org = self.dwc_creator_organization
        creator = dwc_eml.Party(self.dwc_creator_name, org, self.dwc_creator_email)
        contact = None
        if self.dwc_contact_name or self.dwc_contact_email:
            email = self.dwc_contact_email or self.dwc_creator_email
            contact = dwc_eml.Party(self.dwc_contact_name, org, email)
        return dwc_eml.DatasetMetadata(self.dwc_title, self.dwc_license, creator, contact,
                                       self.dwc_package_uuid, self.dwc_version)

    def location_policy(self) -> LocationPolicy:
        """The public view of sighting positions (whales_identify.records.location_privacy)."""
        return LocationPolicy.parse(self.public_location_precision, self.public_sighting_details)
