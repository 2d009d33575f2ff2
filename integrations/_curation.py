"""Catalog curation in SQL (issue 23 #2), shared by SQLite and PostgreSQL: rename an individual and
remove one photo. Each is one transaction in the caller's cursor that also moves the catalog
generation (every worker reloads) and writes a `catalog_audit` row naming the key's fingerprint."""

from __future__ import annotations

from typing import Any

from integrations._rows import Cursor, to_json
from whales_identify.errors import ConflictError, NotFoundError
from whales_identify.records.store import utcnow

_BUMP_GENERATION = "UPDATE catalog_generation SET generation = generation + 1 WHERE id = 1"


def audit(cur: Cursor, dialect: Any, actor: str | None, action: str, individual_id: str,
          detail: dict[str, Any]) -> None:
    cur.execute(dialect.sql("INSERT INTO catalog_audit (at, actor, action, individual_id, detail) "
                            "VALUES (?, ?, ?, ?, ?)"),
                (dialect.to_db_time(utcnow()), actor, action, individual_id, to_json(detail)))


def rename_individual(store: Any, cur: Cursor, old_id: str, new_id: str, actor: str | None) -> int:
    """Move every photo of `old_id` to `new_id` (which must not exist); returns the photos moved."""
    q = store.dialect.sql
    for locked in sorted((old_id, new_id)):  # same order in every transaction: no deadlock
        store._lock_individual(cur, locked)
    cur.execute(q("SELECT 1 FROM catalog_images WHERE individual_id = ? LIMIT 1"), (new_id,))
    if cur.fetchone() is not None:
        raise ConflictError(f"individual {new_id!r} already exists; merging is not supported here")
    cur.execute(q("UPDATE catalog_images SET individual_id = ? WHERE individual_id = ?"), (new_id, old_id))
    moved = int(cur.rowcount)
    if moved == 0:
        raise NotFoundError(f"no individual {old_id!r} in the catalog")
    cur.execute(_BUMP_GENERATION)
    audit(cur, store.dialect, actor, "rename", old_id, {"new_id": new_id, "images": moved})
    return moved


def remove_image(store: Any, cur: Cursor, image_id: str, actor: str | None) -> tuple[str, int]:
    """Delete one catalog photo; returns (its individual, photos the individual has left)."""
    q = store.dialect.sql
    cur.execute(q("SELECT individual_id, filename, source FROM catalog_images WHERE image_id = ?"),
                (image_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFoundError(f"no catalog photo {image_id!r}")
    individual_id = str(row[0])
    store._lock_individual(cur, individual_id)
    cur.execute(q("DELETE FROM catalog_images WHERE image_id = ?"), (image_id,))
    if cur.rowcount == 0:
        raise NotFoundError(f"no catalog photo {image_id!r} (removed meanwhile)")
    cur.execute(_BUMP_GENERATION)
    cur.execute(q("SELECT COUNT(*) FROM catalog_images WHERE individual_id = ?"), (individual_id,))
    left = int(cur.fetchone()[0])
    audit(cur, store.dialect, actor, "remove_image", individual_id,
          {"image_id": image_id, "filename": row[1], "source": row[2]})
    return individual_id, left


def list_audit(cur: Cursor, dialect: Any, individual_id: str) -> list[dict[str, Any]]:
    import json

    cur.execute(dialect.sql("SELECT at, actor, action, detail FROM catalog_audit WHERE individual_id = ? "
                            "ORDER BY at"), (individual_id,))
    return [{"at": dialect.from_db_time(r[0]), "actor": r[1], "action": r[2],
             "detail": None if r[3] is None else json.loads(r[3])} for r in cur.fetchall()]
