"""Where a batch job's photos are: folders (walked for image files), CSV manifests (a `filename`,
`relpath` or `path` column, relative to the CSV's folder or `root`) and ZIP archives (every entry
but folders, `__MACOSX` and hidden files, as `/v1/predict-batch` reads a ZIP).

A photo is named by a `PhotoRef` (plain data, sent to the engine's workers), read with `read_photo`.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
PATH_COLUMNS = ("filename", "relpath", "path", "file")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class PhotoRef:
    """One photo of a job: a file, or an entry of a ZIP archive (`entry`)."""

    name: str  # unique label in the results: the file's path, or `archive.zip::entry`
    path: str
    entry: str | None = None


@dataclass
class Listing:
    """What `list_photos` found: photos, sources it could not list, and ZIP entries it skipped
    (folders, `__MACOSX`, hidden files: `/v1/predict-batch` counts them as `skipped` too)."""

    photos: list[PhotoRef]
    problems: list[SourceProblem]
    skipped: int = 0


@dataclass(frozen=True)
class SourceProblem:
    """A source that could not be listed (missing folder, unreadable CSV or ZIP)."""

    source: str
    message: str


def _zip_skipped(name: str) -> bool:
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    return name.endswith("/") or any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _list_zip(path: Path) -> tuple[list[PhotoRef], int]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    refs = [PhotoRef(f"{path}::{info.filename}", str(path), info.filename)
            for info in infos if not info.is_dir() and not _zip_skipped(info.filename)]
    return refs, len(infos) - len(refs)


def _list_folder(path: Path) -> list[PhotoRef]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [PhotoRef(str(p), str(p)) for p in files]


def _list_manifest(path: Path, root: Path | None) -> list[PhotoRef]:
    base = root or path.parent
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c for c in PATH_COLUMNS if c in (reader.fieldnames or [])]
        if not columns:
            raise ValueError(f"no photo column: the CSV needs one of {', '.join(PATH_COLUMNS)}")
        refs = []
        for row in reader:
            value = (row.get(columns[0]) or "").strip()
            if value:
                file = Path(value) if Path(value).is_absolute() else base / value
                refs.append(PhotoRef(str(file), str(file)))
    return refs


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4).startswith(_ZIP_MAGIC)


def list_photos(sources: Sequence[str | Path], root: str | Path | None = None) -> Listing:
    """Expand folders, CSV manifests and ZIPs (by their bytes) into photos, each once, in order.

    Any other file is taken as one photo (a bad one ends in the results with its error).

    Args:
        sources: folders, `.csv` manifests, ZIP archives or single photos.
        root: the folder manifest paths are relative to (default: each CSV's own folder).

    Returns:
        A `Listing`; a source that cannot be listed is a problem there, never an exception.
    """
    refs: list[PhotoRef] = []
    problems: list[SourceProblem] = []
    skipped = 0
    base = Path(root) if root is not None else None
    for source in sources:
        path = Path(source)
        try:
            if path.is_dir():
                refs.extend(_list_folder(path))
            elif not path.exists():
                problems.append(SourceProblem(str(source), "no such file or folder"))
            elif path.suffix.lower() == ".csv":
                refs.extend(_list_manifest(path, base))
            elif _is_zip(path):
                found, dropped = _list_zip(path)
                refs.extend(found)
                skipped += dropped
            else:
                refs.append(PhotoRef(str(path), str(path)))
        except (OSError, ValueError, csv.Error, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            problems.append(SourceProblem(str(source), f"{type(exc).__name__}: {exc}"))
    return Listing(list(_unique(refs)), problems, skipped)


def _unique(refs: Iterable[PhotoRef]) -> Iterable[PhotoRef]:
    seen: set[str] = set()
    for ref in refs:
        if ref.name not in seen:
            seen.add(ref.name)
            yield ref


def read_photo(ref: PhotoRef, limit: int) -> bytes:
    """The photo's bytes; more than `limit` bytes raises `ValueError` (never a silent truncation)."""
    if ref.entry is None:
        with open(ref.path, "rb") as fh:
            data = fh.read(limit + 1)
    else:
        with zipfile.ZipFile(ref.path) as archive, archive.open(ref.entry) as fh:
            data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"the photo is larger than the limit of {limit} bytes")
    return data


def hash_photo(ref: PhotoRef, limit: int) -> str | None:
    """sha256 of the photo's bytes (the resume key), or None when it cannot be read."""
    try:
        return hashlib.sha256(read_photo(ref, limit)).hexdigest()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, RuntimeError, EOFError):
        return None
