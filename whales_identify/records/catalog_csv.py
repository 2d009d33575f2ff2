"""The spreadsheet a biologist already has, read as catalog rows: one parser for the CLI and the service.

A catalog CSV names one photo per row with the animal it shows:

    filename,individual_id,species,date,latitude,longitude
    IMG_0412.jpg,hw_0042,humpback_whale,2024-07-02,64.1,-21.9

Column names are detected from common spellings (`filename`/`relpath`/`image`, `individual_id`/`id`,
`date`/`observed_at`...) or given explicitly. Optional `location` and `observer` columns are read too;
what the sheet says about a sighting overrides the photo's EXIF. A `label` column (the evaluation
manifest's) skips rows that are not `cetacean`.

`parse_catalog_csv` never raises for a bad row: every problem names its line and column, so a user can
fix the sheet and run it again. Only a file that cannot be read as a catalog at all (no header, no
filename or id column) raises `CatalogCsvError`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from whales_identify.errors import WhalesError
from whales_identify.records.sighting import InvalidSightingError, validate_sighting
from whales_identify.records.store import Sighting
from whales_identify.species import normalise_species_key

INDIVIDUAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_INDIVIDUAL_ID = re.compile(INDIVIDUAL_ID_PATTERN)
MAX_ROWS = 50_000

# Canonical column -> accepted header spellings (compared case- and space-insensitively).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "filename": ("filename", "relpath", "image", "file", "photo", "file_name", "image_name"),
    "individual_id": ("individual_id", "id", "individual", "animal_id", "individual id"),
    "species": ("species",),
    "date": ("date", "observed_at", "datetime", "date_taken"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon", "lng", "long"),
    "location": ("location", "place"),
    "observer": ("observer", "photographer"),
    "label": ("label",),
}
REQUIRED_COLUMNS = ("filename", "individual_id")
TEMPLATE_COLUMNS = ("filename", "individual_id", "species", "date", "latitude", "longitude")


class CatalogCsvError(WhalesError, ValueError):
    """The file is not a catalog CSV at all (no header, or no filename / individual id column)."""

    code = "invalid_csv"


@dataclass(frozen=True)
class CatalogRow:
    """One valid row: a photo, its individual and species, and the sighting the sheet gives."""

    line: int  # 1-based line of the CSV file (the header is line 1)
    filename: str
    individual_id: str
    species: str  # normalised key, "unknown" when the cell is empty
    sighting: Sighting


@dataclass(frozen=True)
class RowProblem:
    """Why one row is skipped; `column` is the sheet's own header name where one is to blame."""

    line: int
    code: str
    message: str
    column: str | None = None
    filename: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "column": self.column, "filename": self.filename, "code": self.code,
                "message": self.message}


@dataclass
class CatalogSheet:
    rows: list[CatalogRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> header in the file


def _norm(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def resolve_columns(header: Sequence[str], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map canonical columns to the file's header names.

    Args:
        header: the CSV's header row.
        given: canonical name -> header name, overriding detection (e.g. `{"filename": "Photo"}`).

    Raises:
        CatalogCsvError: a required column is missing, or a given name is not in the header.
    """
    by_norm = {_norm(h): h for h in header if h is not None}
    out: dict[str, str] = {}
    for canonical, name in (given or {}).items():
        if canonical not in COLUMN_ALIASES:
            raise CatalogCsvError(f"unknown column role {canonical!r}; known: {', '.join(COLUMN_ALIASES)}")
        if _norm(name) not in by_norm:
            raise CatalogCsvError(f"column {name!r} (given for {canonical}) is not in the header "
                                  f"({', '.join(h for h in header if h)})")
        out[canonical] = by_norm[_norm(name)]
    for canonical, aliases in COLUMN_ALIASES.items():
        if canonical in out:
            continue
        found = next((by_norm[_norm(a)] for a in aliases if _norm(a) in by_norm), None)
        if found is not None:
            out[canonical] = found
    missing = [c for c in REQUIRED_COLUMNS if c not in out]
    if missing:
        raise CatalogCsvError(
            f"the CSV has no {' or '.join(missing)} column (header: {', '.join(h for h in header if h)}); "
            f"expected e.g. {','.join(TEMPLATE_COLUMNS)}")
    return out


def parse_catalog_csv(text: str, columns: Mapping[str, str] | None = None) -> CatalogSheet:
    """Read a catalog CSV's text into valid rows and per-row problems.

    Args:
        text: the file's content (a UTF-8 byte-order mark is ignored; `,` or `;` separated).
        columns: explicit canonical -> header names (see `COLUMN_ALIASES`).

    Returns:
        The valid rows and, for every other row, a `RowProblem` naming its line and column.

    Raises:
        CatalogCsvError: no header, a required column missing, or more than `MAX_ROWS` rows.
    """
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise CatalogCsvError("the CSV is empty")
    first = text.splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise CatalogCsvError(f"line 1: not a CSV header: {exc}") from exc
    cols = resolve_columns(header, columns)
    index = {c: header.index(h) for c, h in cols.items()}
    sheet = CatalogSheet(columns=cols)
    seen: dict[tuple[str, str], int] = {}
    try:
        for n, cells in enumerate(reader):
            line = reader.line_num
            if n >= MAX_ROWS:
                raise CatalogCsvError(f"the CSV has more than {MAX_ROWS} rows; split it")
            if not any(c.strip() for c in cells):
                continue
            row_or_problem = _row(line, cells, index, cols)
            if isinstance(row_or_problem, RowProblem):
                sheet.problems.append(row_or_problem)
                continue
            key = (row_or_problem.individual_id, row_or_problem.filename)
            if key in seen:
                sheet.problems.append(RowProblem(line, "duplicate_row", f"repeats line {seen[key]}",
                                                 cols["filename"], row_or_problem.filename))
                continue
            seen[key] = line
            sheet.rows.append(row_or_problem)
    except csv.Error as exc:
        raise CatalogCsvError(f"line {reader.line_num}: unreadable CSV: {exc}") from exc
    return sheet


def _row(line: int, cells: list[str], index: Mapping[str, int], cols: Mapping[str, str]
         ) -> CatalogRow | RowProblem:
    def cell(name: str) -> str:
        i = index.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    filename = cell("filename").replace("\\", "/")
    if "label" in cols and cell("label") and cell("label") != "cetacean":
        return RowProblem(line, "not_cetacean", f"label is {cell('label')!r}, not 'cetacean'",
                          cols["label"], filename or None)
    if not filename:
        return RowProblem(line, "missing_value", "no file name", cols["filename"])
    individual = cell("individual_id")
    if not individual:
        return RowProblem(line, "missing_value", "no individual id", cols["individual_id"], filename)
    if not _INDIVIDUAL_ID.match(individual):
        return RowProblem(line, "invalid_value", f"individual id {individual[:40]!r} must start with a "
                          "letter or digit and use only letters, digits, '_', '.', ':', '-' (at most 128)",
                          cols["individual_id"], filename)
    species = normalise_species_key(cell("species")) or "unknown"
    if len(species) > 64:
        return RowProblem(line, "invalid_value", "species is longer than 64 characters",
                          cols.get("species"), filename)
    try:
        sighting = validate_sighting(latitude=cell("latitude"), longitude=cell("longitude"),
                                     observed_at=cell("date"), location=cell("location"),
                                     observer=cell("observer"))
    except InvalidSightingError as exc:
        canonical = {"observed_at": "date"}.get(exc.field, exc.field)
        return RowProblem(line, "invalid_value", str(exc).split(": ", 1)[-1],
                          cols.get(canonical, canonical), filename)
    return CatalogRow(line, filename, individual, species, sighting)


def read_catalog_csv(path: str | os.PathLike[str], columns: Mapping[str, str] | None = None) -> CatalogSheet:
    """`parse_catalog_csv` of a file (UTF-8; Latin-1 when it is not valid UTF-8, as Excel may save)."""
    return parse_catalog_csv(decode_csv_bytes(Path(path).read_bytes()), columns)


def decode_csv_bytes(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def match_files(rows: Iterable[CatalogRow], names: Iterable[str], column: str = "filename"
                ) -> tuple[list[tuple[CatalogRow, str]], list[RowProblem]]:
    """Pair each row with one of `names` (ZIP entries, files under a folder).

    The row's file name matches a name exactly, else by its last path component when exactly one
    name ends that way (a ZIP made of a folder prefixes every entry with the folder's name).
    """
    names = list(names)
    exact = set(names)
    by_base: dict[str, list[str]] = {}
    for name in names:
        by_base.setdefault(PurePosixPath(name).name.lower(), []).append(name)
    pairs: list[tuple[CatalogRow, str]] = []
    problems: list[RowProblem] = []
    for row in rows:
        if row.filename in exact:
            pairs.append((row, row.filename))
            continue
        found = by_base.get(PurePosixPath(row.filename).name.lower(), [])
        if len(found) == 1:
            pairs.append((row, found[0]))
        elif not found:
            problems.append(RowProblem(row.line, "file_not_found", f"no photo named {row.filename!r}",
                                       column, row.filename))
        else:
            problems.append(RowProblem(row.line, "ambiguous_file", f"{len(found)} photos are named "
                                       f"{PurePosixPath(row.filename).name!r}; give the folder too",
                                       column, row.filename))
    return pairs, problems


def template_csv() -> str:
    """A catalog CSV with the expected header and two example rows."""
    return ("filename,individual_id,species,date,latitude,longitude\n"
            "IMG_0412.jpg,hw_0042,humpback_whale,2024-07-02,64.10,-21.90\n"
            "IMG_0413.jpg,hw_0042,humpback_whale,2024-07-02,,\n")


__all__ = ["COLUMN_ALIASES", "CatalogCsvError", "CatalogRow", "CatalogSheet", "INDIVIDUAL_ID_PATTERN",
           "RowProblem", "match_files", "parse_catalog_csv", "read_catalog_csv", "resolve_columns",
           "template_csv"]
