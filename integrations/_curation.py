"""Catalog curation in SQL, shared by SQLite and PostgreSQL: rename an individual, merge two, move one
photo to another individual, remove one photo. Each runs in the caller's transaction (one cursor),
moves the catalog generation, logging the photos it touched (`_changes.py`: every worker applies
them), and writes `catalog_audit` rows naming the caller. The rules (which ids a prediction names,
merged species) are the library's: `whales_identify.records.curation`.

A rename or a merge retires an id: `individual_aliases` (0007) records where it went, and every
stored prediction naming it is rewritten in the same transaction, so the queue and the exports show
the id the catalog knows.
"""

from __future__ import annotations

import json
from typing import Any

from integrations._changes import bump_generation
from integrations._rows import Cursor, to_json
from whales_identify.errors import ConflictError, NotFoundError
from whales_identify.records.curation import (
    check_distinct,
    merge_result,
    merged_species,
    move_result,
    named_ids,
    resolve_record,
    rewrite_ids,
)
from whales_identify.records.store import utcnow


def audit(cur: Cursor, dialect: Any, actor: str | None, action: str, individual_id: str,
          detail: dict[str, Any]) -> None:
    cur.execute(dialect.sql("INSERT INTO catalog_audit (at, actor, action, individual_id, detail) "
                            "VALUES (?, ?, ?, ?, ?)"),
                (dialect.to_db_time(utcnow()), actor, action, individual_id, to_json(detail)))


def _first_species(cur: Cursor, q: Any, individual_id: str) -> str | None:
    """The individual's species (its first photo's, as the catalog reads it); None when unknown id."""
    cur.execute(q("SELECT species FROM catalog_images WHERE individual_id = ? "
                  "ORDER BY created_at, image_id LIMIT 1"), (individual_id,))
    row = cur.fetchone()
    return None if row is None else str(row[0])


def _photos_of(cur: Cursor, q: Any, individual_id: str) -> list[str]:
    cur.execute(q("SELECT image_id FROM catalog_images WHERE individual_id = ?"), (individual_id,))
    return [str(r[0]) for r in cur.fetchall()]


def _lock(store: Any, cur: Cursor, *ids: str) -> None:
    for locked in sorted(set(ids)):  # same order in every transaction: no deadlock
        store._lock_individual(cur, locked)


def rewrite_predictions(cur: Cursor, dialect: Any, old: str, new: str, answer: bool = True,
                        only: list[str] | None = None) -> int:
    """Rewrite every prediction naming `old` (answer, candidates, decision) to `new`; returns how
    many changed. The LIKE prefilter may over-match (`_` is a wildcard): `rewrite_ids` decides."""
    q = dialect.sql
    lock = " FOR UPDATE" if dialect.name == "postgresql" else ""  # SQLite: the write lock is held
    pattern = f'%"{old}"%'
    if only is not None:
        if not only:
            return 0
        where, params = f"prediction_id IN ({', '.join('?' for _ in only)})", list(only)
    else:
        where = "individual_id = ? OR candidates LIKE ? OR reviewer_decision LIKE ?"
        params = [old, pattern, pattern]
    cur.execute(q(f"SELECT prediction_id, individual_id, candidates, reviewer_decision FROM predictions "
                  f"WHERE {where}{lock}"), params)
    n = 0
    for pid, individual_id, candidates, decision in cur.fetchall():
        found = rewrite_ids(individual_id, json.loads(candidates or "[]"),
                            None if decision is None else json.loads(decision), old, new, answer)
        if found is None:
            continue
        cur.execute(q("UPDATE predictions SET individual_id = ?, candidates = ?, reviewer_decision = ? "
                      "WHERE prediction_id = ?"), (found[0], to_json(found[1]), to_json(found[2]), pid))
        n += 1
    return n


def _retire(cur: Cursor, dialect: Any, old: str, new: str, action: str, actor: str | None) -> int:
    """Alias `old` to `new` (collapsing chains, `new` live again) and rewrite the predictions."""
    q = dialect.sql
    cur.execute(q("DELETE FROM individual_aliases WHERE alias_id = ? OR alias_id = ?"), (new, old))
    cur.execute(q("UPDATE individual_aliases SET individual_id = ? WHERE individual_id = ?"), (new, old))
    cur.execute(q("INSERT INTO individual_aliases (alias_id, individual_id, action, at, actor) "
                  "VALUES (?, ?, ?, ?, ?)"), (old, new, action, dialect.to_db_time(utcnow()), actor))
    return rewrite_predictions(cur, dialect, old, new)


def rename_individual(store: Any, cur: Cursor, old_id: str, new_id: str, actor: str | None) -> int:
    """Move every photo of `old_id` to `new_id` (which must not exist); returns the photos moved."""
    q = store.dialect.sql
    check_distinct(old_id, new_id)
    _lock(store, cur, old_id, new_id)
    cur.execute(q("SELECT 1 FROM catalog_images WHERE individual_id = ? LIMIT 1"), (new_id,))
    if cur.fetchone() is not None:
        raise ConflictError(f"individual {new_id!r} already exists; merge into it instead")
    cur.execute(q("UPDATE catalog_images SET individual_id = ? WHERE individual_id = ?"), (new_id, old_id))
    moved = int(cur.rowcount)
    if moved == 0:
        raise NotFoundError(f"no individual {old_id!r} in the catalog")
    bump_generation(cur, store.dialect, _photos_of(cur, q, new_id))
    counts = {"images": moved, "predictions": _retire(cur, store.dialect, old_id, new_id, "rename", actor)}
    audit(cur, store.dialect, actor, "rename", old_id, {"new_id": new_id, **counts})
    audit(cur, store.dialect, actor, "rename_in", new_id, {"previous_id": old_id, **counts})
    return moved


def merge_individuals(store: Any, cur: Cursor, source_id: str, target_id: str,
                      actor: str | None) -> dict[str, Any]:
    """Every photo of `source_id` joins `target_id`; `source_id` is retired (alias, predictions)."""
    q = store.dialect.sql
    check_distinct(source_id, target_id)
    _lock(store, cur, source_id, target_id)
    found = {i: _first_species(cur, q, i) for i in (source_id, target_id)}
    for individual, species in found.items():
        if species is None:
            raise NotFoundError(f"no individual {individual!r} in the catalog")
    species = merged_species(str(found[source_id]), str(found[target_id]))
    cur.execute(q("UPDATE catalog_images SET individual_id = ?, species = ? WHERE individual_id = ?"),
                (target_id, species, source_id))
    moved = int(cur.rowcount)
    cur.execute(q("UPDATE catalog_images SET species = ? WHERE individual_id = ? AND species <> ?"),
                (species, target_id, species))
    cur.execute(q("SELECT COUNT(*) FROM catalog_images WHERE individual_id = ?"), (target_id,))
    images = int(cur.fetchone()[0])
    bump_generation(cur, store.dialect, _photos_of(cur, q, target_id))  # the target's species may change
    predictions = _retire(cur, store.dialect, source_id, target_id, "merge", actor)
    counts = {"images": moved, "predictions": predictions}
    audit(cur, store.dialect, actor, "merge", source_id, {"into": target_id, **counts})
    audit(cur, store.dialect, actor, "merge_in", target_id, {"from": source_id, **counts})
    return merge_result(source_id, target_id, species, moved, images, predictions)


def _catalog_photo(cur: Cursor, q: Any, image_id: str, columns: str) -> tuple[Any, ...]:
    """The named columns of one catalog photo, or NotFoundError (a 404 naming it)."""
    cur.execute(q(f"SELECT {columns} FROM catalog_images WHERE image_id = ?"), (image_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFoundError(f"no catalog photo {image_id!r}")
    return tuple(row)


def move_image(store: Any, cur: Cursor, image_id: str, target_id: str, create: bool,
               actor: str | None) -> dict[str, Any]:
    """One photo to another individual (an existing one, or a new one with `create`); the decision
    of the review that enrolled it follows it."""
    q = store.dialect.sql
    row = _catalog_photo(cur, q, image_id, "individual_id, species, filename, source")
    source_id, own_species, filename, source = str(row[0]), str(row[1]), row[2], str(row[3] or "")
    check_distinct(source_id, target_id)
    _lock(store, cur, source_id, target_id)
    target_species = _first_species(cur, q, target_id)
    if create and target_species is not None:
        raise ConflictError(f"individual {target_id!r} already exists; move without `create`")
    if not create and target_species is None:
        raise NotFoundError(f"no individual {target_id!r} in the catalog; set `create` to make it")
    species = target_species or own_species
    cur.execute(q("UPDATE catalog_images SET individual_id = ?, species = ? WHERE image_id = ? "
                  "AND individual_id = ?"), (target_id, species, image_id, source_id))
    if cur.rowcount == 0:
        raise ConflictError(f"catalog photo {image_id!r} was changed meanwhile; try again")
    revive(cur, store.dialect, [target_id])
    bump_generation(cur, store.dialect, [image_id])
    reviewed = [source[len("review:"):]] if source.startswith("review:") else []
    predictions = rewrite_predictions(cur, store.dialect, source_id, target_id, answer=False, only=reviewed)
    cur.execute(q("SELECT COUNT(*) FROM catalog_images WHERE individual_id = ?"), (source_id,))
    left = int(cur.fetchone()[0])
    detail = {"image_id": image_id, "filename": filename, "predictions": predictions}
    audit(cur, store.dialect, actor, "move_image_out", source_id, {"to": target_id, **detail})
    audit(cur, store.dialect, actor, "move_image_in", target_id, {"from": source_id, **detail})
    return move_result(image_id, source_id, target_id, species, left, create, predictions)


def remove_image(store: Any, cur: Cursor, image_id: str, actor: str | None) -> tuple[str, int]:
    """Delete one catalog photo; returns (its individual, photos the individual has left)."""
    q = store.dialect.sql
    row = _catalog_photo(cur, q, image_id, "individual_id, filename, source")
    individual_id = str(row[0])
    store._lock_individual(cur, individual_id)
    cur.execute(q("DELETE FROM catalog_images WHERE image_id = ?"), (image_id,))
    if cur.rowcount == 0:
        raise NotFoundError(f"no catalog photo {image_id!r} (removed meanwhile)")
    bump_generation(cur, store.dialect, [image_id])
    cur.execute(q("SELECT COUNT(*) FROM catalog_images WHERE individual_id = ?"), (individual_id,))
    left = int(cur.fetchone()[0])
    audit(cur, store.dialect, actor, "remove_image", individual_id,
          {"image_id": image_id, "filename": row[1], "source": row[2]})
    return individual_id, left


def resolve_retired(cur: Cursor, dialect: Any, record: Any) -> Any:
    """The prediction with every retired id it names replaced by the current one (one indexed
    look-up; `whales_identify.records.curation.resolve_record`)."""
    ids = sorted(named_ids(record.individual_id, record.candidates, record.reviewer_decision))
    if not ids:
        return record
    cur.execute(dialect.sql(f"SELECT alias_id, individual_id FROM individual_aliases "
                            f"WHERE alias_id IN ({', '.join('?' for _ in ids)})"), ids)
    found = {str(r[0]): str(r[1]) for r in cur.fetchall()}
    return resolve_record(record, found) if found else record


def resolve(cur: Cursor, dialect: Any, individual_id: str) -> str | None:
    cur.execute(dialect.sql("SELECT individual_id FROM individual_aliases WHERE alias_id = ?"),
                (individual_id,))
    row = cur.fetchone()
    return None if row is None else str(row[0])


def revive(cur: Cursor, dialect: Any, individual_ids: list[str]) -> None:
    """Ids that get photos are live: a retired id used again (a photo moved or enrolled under it)
    no longer points at where it went, or its new predictions would be stored under that other id."""
    if individual_ids:
        cur.execute(dialect.sql(f"DELETE FROM individual_aliases WHERE alias_id IN "
                                f"({', '.join('?' for _ in individual_ids)})"), tuple(individual_ids))


def aliases_of(cur: Cursor, dialect: Any, individual_id: str) -> list[str]:
    cur.execute(dialect.sql("SELECT alias_id FROM individual_aliases WHERE individual_id = ? "
                            "ORDER BY alias_id"), (individual_id,))
    return [str(r[0]) for r in cur.fetchall()]


def list_audit(cur: Cursor, dialect: Any, individual_id: str) -> list[dict[str, Any]]:
    cur.execute(dialect.sql("SELECT at, actor, action, detail FROM catalog_audit WHERE individual_id = ? "
                            "ORDER BY at"), (individual_id,))
    return [{"at": dialect.from_db_time(r[0]), "actor": r[1], "action": r[2],
             "detail": None if r[3] is None else json.loads(r[3])} for r in cur.fetchall()]
