"""Labelled manifests (CSV shaped like `cetaceans/manifest.csv`) and leakage-free grouping keys."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "WHALES_DATA_DIR"
DEFAULT_DATA_DIR = Path("..") / "shared" / "data" / "cetaceans"


@dataclass(frozen=True)
class ManifestRow:
    relpath: str
    label: str  # "cetacean" | "non_cetacean"
    individual_id: str
    species: str
    note: str = ""

    @property
    def is_cetacean(self) -> bool:
        return self.label == "cetacean"

    @property
    def source(self) -> str:
        """The folder that names the data source, e.g. 'noaa_right_whale_headcrops'."""
        parts = self.relpath.split("/")
        return parts[1] if len(parts) > 2 else parts[0]


def resolve_data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The argument, else ../shared/data/cetaceans (from the project root). Callers read
    $WHALES_DATA_DIR (`DATA_ENV`) themselves: the library reads no environment."""
    return Path(path or DEFAULT_DATA_DIR)


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Rows of a manifest CSV (quote-aware: file names contain commas and brackets)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            ManifestRow(
                relpath=r["relpath"], label=r.get("label", "cetacean") or "cetacean",
                individual_id=(r.get("individual_id") or "").strip(),
                species=(r.get("species") or "").strip(), note=r.get("note") or "",
            )
            for r in csv.DictReader(fh)
        ]


def manifest_hash(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_FIN_ENCOUNTER = re.compile(r"^(?:id\d+|other)_\d+_(SB\d+-\d+|IMG|0J4A|[A-Za-z]+)")
_SEAL = re.compile(r"__sample_seals__([^_]+)__|legacy_database__new__([^_]+)__")
_SHARK = re.compile(r"__([A-Z]+\d{6})\d{2}\.")


def encounter_key(row: ManifestRow) -> str:
    """Photos likely taken in the same encounter/burst (near-duplicates) share this key.

    Aberdeen fin crops carry a survey-sequence code (`SB20-1807-...`) or a camera burst prefix
    (`IMG_49..`, `0J4A..`), grouped per animal; other sources have no such information, so each photo
    is its own encounter.
    """
    name = Path(row.relpath).name
    match = _FIN_ENCOUNTER.match(name)
    if row.source == "bottlenose_fins_aberdeen" and match:
        return f"{row.individual_id or 'unknown'}:{match.group(1)}"
    return row.relpath


def group_key(row: ManifestRow) -> str:
    """The unit that must not straddle a split: the individual, else the encounter or subject.

    Negatives are grouped by subject where the file name says it (the same seal, the same shark
    on the same day), so that a calibration split never sees a twin of a test image.
    """
    if row.individual_id:
        return f"id:{row.individual_id}"
    name = Path(row.relpath).name
    seal = _SEAL.search(name)
    if seal:
        return f"seal:{seal.group(1) or seal.group(2)}"
    shark = _SHARK.search(name)
    if shark:
        return f"shark:{shark.group(1)}"
    return f"file:{encounter_key(row)}"


def stable_fraction(key: str, salt: str = "") -> float:
    """A deterministic number in [0, 1) for a key: splits that do not depend on row order."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# Cross-fitting folds are shared by training (which fold to leave out) and evaluation (which fold
# model scores a query), so the rule lives here, below both.
FOLD_SALT = "reid-crossfit-v1"


def fold_of(row: ManifestRow, folds: int, salt: str = FOLD_SALT) -> int:
    """The cross-fitting fold of a row's individual (never straddles: keyed by `group_key`)."""
    return min(int(stable_fraction(group_key(row), salt) * folds), folds - 1)
