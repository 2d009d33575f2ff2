"""Files a catalog load saves for the next start (the vote index, the packed verification features):
a cache that several workers share.

Each writer writes under its own temporary names and renames into place, so two workers that save
the same key at once leave one complete copy; a small json written last says that the files beside
it are complete and which settings they were made with. Every catalog change gives a new key, so
all but the newest few are deleted after each save.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

# saved copies kept beside the newest one: enough for a prefix that later enrolments extend
SAVED_KEPT = 2


def partial(path: Path) -> Path:
    """A temporary name beside `path`, unique to this writer (process and call)."""
    return path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.partial")


def list_saved(folder: Path, prefix: str, settings: str) -> list[dict[str, Any]]:
    """The metadata of the copies saved in `folder` under `prefix` with these `settings`, newest
    first (unreadable ones are skipped: a cache never fails a load)."""
    found = []
    for meta in folder.glob(f"{prefix}-*.json"):
        try:
            info = json.loads(meta.read_text())
            if info.get("settings") == settings:
                found.append((_mtime(meta), info))
        except (OSError, ValueError, TypeError):
            continue
    return [info for _, info in sorted(found, key=lambda f: f[0], reverse=True)]


def write_meta(folder: Path, prefix: str, key: str, info: dict[str, Any]) -> None:
    """The json that marks a saved copy complete: written last, under a temporary name."""
    meta = folder / f"{prefix}-{key}.json"
    tmp = partial(meta)
    try:
        tmp.write_text(json.dumps({"key": key, **info}))
        tmp.replace(meta)
    finally:
        tmp.unlink(missing_ok=True)


def prune(folder: Path, prefix: str, keep: str, suffixes: tuple[str, ...],
          newest: int = SAVED_KEPT) -> list[str]:
    """Delete the copies saved under `prefix` but `keep` and the `newest` others (by modification
    time of their json); `suffixes` name each copy's files (`{prefix}-{key}{suffix}`). A worker
    that has a deleted copy mapped keeps reading it (POSIX unlink). Returns the deleted keys."""
    metas = sorted(folder.glob(f"{prefix}-*.json"), key=_mtime, reverse=True)
    others = [m for m in metas if m.name != f"{prefix}-{keep}.json"]
    deleted = []
    for meta in others[newest:]:
        key = meta.name[len(prefix) + 1:-len(".json")]
        delete(folder, prefix, key, suffixes)
        deleted.append(key)
    return deleted


def delete(folder: Path, prefix: str, key: str, suffixes: tuple[str, ...]) -> None:
    """Delete one saved copy, its json first (so that it is never listed half deleted)."""
    for path in (folder / f"{prefix}-{key}.json", *(folder / f"{prefix}-{key}{s}" for s in suffixes)):
        path.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # deleted meanwhile by another worker's prune
        return 0.0
