"""Catalog import: a ZIP of photos plus the spreadsheet naming each photo's individual and species.

The CSV is read by the library's parser (`whales_identify.records.catalog_csv`, shared with `whales catalog
import`); every photo goes through the same enrolment as `POST /v1/individuals/{id}/images` (decode,
gate, embed, store). Planning checks everything that can be checked before any photo is embedded, so
a wrong file is refused at once with a 4xx; each row that cannot be imported is reported with its CSV
line and column instead of stopping the others.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from whales_be_service.errors import ServiceError, too_large, unsupported_media
from whales_be_service.settings import Settings
from whales_be_service.uploads import BatchItem, Decoded, decode, describe_error, is_zip, plan_archive
from whales_be_service.use_cases.enrol import EnrolPhotos
from whales_be_service.use_cases.ports import CatalogAccess
from whales_identify.records.catalog_csv import (
    CatalogCsvError,
    CatalogRow,
    RowProblem,
    decode_csv_bytes,
    match_files,
    parse_catalog_csv,
)
from whales_identify.records.sighting import merge_sightings
from whales_identify.records.store import Store

SOURCE = "import"


@dataclass
class ImportPlan:
    """What an import will do: rows paired with their ZIP entries, and rows already judged."""

    todo: list[tuple[CatalogRow, BatchItem]]
    problems: list[dict[str, Any]]
    rows: int
    already: int
    filename_column: str
    started: float = field(default_factory=time.perf_counter)


@dataclass
class ImportProgress:
    enrolled: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    created: set[str] = field(default_factory=set)


def _problem(row: CatalogRow, column: str, code: str, message: str) -> dict[str, Any]:
    return RowProblem(row.line, code, message, column, row.filename).to_dict()


class ImportCatalog:
    """The import use case. Args: store: what is enrolled already; catalog: this worker's catalog;
    enrol: the enrolment path (gate, embed, store); settings: archive and decoding limits."""

    def __init__(self, store: Store, catalog: CatalogAccess, enrol: EnrolPhotos, settings: Settings):
        self.store = store
        self.catalog = catalog
        self.enrol = enrol
        self.settings = settings

    def plan(self, archive: tuple[str, IO[bytes]], manifest: bytes,
             columns: dict[str, str] | None = None) -> ImportPlan:
        """Parse the CSV, list the ZIP and pair them; nothing is embedded yet.

        Raises:
            ServiceError: 415 when `archive` is not a ZIP, 422 (`invalid_csv`) when the CSV has no usable
                header, 413/400 from the ZIP checks of `/v1/predict-batch`.
        """
        label, fh = archive
        fh.seek(0)
        if not is_zip(fh.read(4)):
            raise unsupported_media(f"{label!r} is not a ZIP archive; send the photos zipped as `archive`")
        try:
            sheet = parse_catalog_csv(decode_csv_bytes(manifest), columns)
        except CatalogCsvError as exc:
            raise ServiceError(422, "invalid_csv", f"manifest: {exc}") from exc
        if not sheet.rows and not sheet.problems:
            raise ServiceError(422, "invalid_csv", "manifest: the CSV has a header but no rows")
        items = {it.name: it for it in plan_import_archive(self.settings, label, fh)}
        catalog = self.catalog.current()  # another worker may have enrolled some of these meanwhile
        column = sheet.columns["filename"]
        pairs, unmatched = match_files(sheet.rows, [n for n, it in items.items() if not it.skipped], column)
        problems = [p.to_dict() for p in sheet.problems + unmatched]
        known = {(im.individual_id, im.filename) for im in self.store.list_catalog_images(
            model_id=catalog.model_id)}
        species_of: dict[str, str] = {}
        todo: list[tuple[CatalogRow, BatchItem]] = []
        already = 0
        for row, name in pairs:
            item = items[name]
            conflict = _species_conflict(catalog, row, species_of)
            if item.read is None:
                problems.append(_problem(row, column, item.error_code or "failed", item.error_message or ""))
            elif conflict:
                problems.append(_problem(row, sheet.columns.get("species", "species"), "species_conflict",
                                         conflict))
            elif (row.individual_id, name) in known:
                already += 1
            else:
                species_of.setdefault(row.individual_id, row.species)
                todo.append((row, item))
        problems.sort(key=lambda p: p["line"])
        return ImportPlan(todo, problems, len(sheet.rows) + len(sheet.problems), already, column)

    def run_chunk(self, plan: ImportPlan, chunk: Sequence[tuple[CatalogRow, BatchItem]],
                  progress: ImportProgress) -> None:
        """Decode and enrol one chunk of rows (grouped by individual), recording each row's outcome."""
        groups: dict[tuple[str, str], list[tuple[CatalogRow, Decoded]]] = {}
        for row, item in chunk:
            try:
                assert item.read is not None
                decoded = decode(item.name, item.read(), self.settings)
            except Exception as exc:
                code, message = describe_error(exc)
                progress.problems.append(_problem(row, plan.filename_column, code, message))
                continue
            species = row.species
            if species == "unknown":
                existing = self.catalog.loaded().get_individual(row.individual_id)
                species = getattr(existing, "species", None) or "unknown"
            groups.setdefault((row.individual_id, species), []).append((row, decoded))
        for (individual, species), members in groups.items():
            existed = self.catalog.loaded().get_individual(individual) is not None
            decoded_items = [d for _, d in members]
            sightings = [merge_sightings(r.sighting, d.sighting) for r, d in members]
            added, refused = self.enrol.enrol(decoded_items, individual, species, sightings, source=SOURCE)
            by_name = {d.name: r for r, d in members}
            for image in added:
                row = by_name[image.filename]
                progress.enrolled.append({"line": row.line, "filename": image.filename,
                                          "individual_id": individual, "image_id": image.image_id})
            for r in refused:
                progress.problems.append(_problem(by_name[r["image_ind"]], plan.filename_column, r["code"],
                                                  r["message"]))
            if added and not existed:
                progress.created.add(individual)


def plan_import_archive(settings: Settings, label: str, fh: IO[bytes]) -> list[BatchItem]:
    """The ZIP checks of a batch, with the import's own photo cap (`max_import_images`)."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    if size > settings.max_archive_bytes:
        raise too_large(f"archive {label!r} is {size} bytes; the limit is {settings.max_archive_bytes}",
                        {"limit_bytes": settings.max_archive_bytes})
    items = plan_archive(fh, repr(label), settings)
    images = sum(1 for it in items if it.read is not None)
    if images > settings.max_import_images:
        raise too_large(f"the archive holds {images} images; one import takes at most "
                        f"{settings.max_import_images} (WHALES_MAX_IMPORT_IMAGES): split it",
                        {"images": images, "limit": settings.max_import_images})
    return items


def _species_conflict(catalog: Any, row: CatalogRow, species_of: dict[str, str]) -> str | None:
    """Why this row's species contradicts the catalog or an earlier row (None when it does not)."""
    if row.species == "unknown":
        return None
    earlier = species_of.get(row.individual_id)
    if earlier not in (None, "unknown", row.species):
        return f"{row.individual_id} is {earlier!r} on an earlier row, {row.species!r} here"
    existing = catalog.get_individual(row.individual_id)
    known = getattr(existing, "species", None) if existing is not None else None
    if known not in (None, "unknown", row.species):
        return f"{row.individual_id} is recorded in the catalog as {known!r}, not {row.species!r}"
    return None


def chunks(plan: ImportPlan, size: int) -> Iterator[Sequence[tuple[CatalogRow, BatchItem]]]:
    for i in range(0, len(plan.todo), size):
        yield plan.todo[i:i + size]


def result(plan: ImportPlan, progress: ImportProgress) -> dict[str, Any]:
    """The final answer (see `schemas.ImportOut`)."""
    problems = sorted(plan.problems + progress.problems, key=lambda p: p["line"])
    enrolled = sorted(progress.enrolled, key=lambda e: e["line"])
    return {"enrolled": enrolled, "problems": problems,
            "summary": {"rows": plan.rows, "enrolled": len(enrolled), "already_present": plan.already,
                        "skipped": len(problems), "individuals_created": len(progress.created),
                        "seconds": round(time.perf_counter() - plan.started, 3)}}
