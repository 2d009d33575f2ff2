"""The catalog generation and its change log, shared by SQLite and PostgreSQL.

Every transaction that changes `catalog_images` calls `bump_generation` once: the generation moves
by one (0002) and a `catalog_changes` row (0008) names the photos the write touched, in the same
transaction. `changes_since` answers which photos changed after a generation a worker's memory
reflects, so that it applies those instead of reading the whole catalog; `None` where the log
cannot say (rows pruned, a write touching more than `MAX_LOGGED_IDS` photos, a database older
than the log): the caller then reads the whole catalog, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from integrations._rows import Cursor, Dialect

# A worker more writes behind than this reads the whole catalog (as after a restart); the log
# stays a few hundred kB at most.
KEPT_GENERATIONS = 1000
# A write touching more photos is logged as "read the whole catalog": reading them one by one
# would cost about as much (`Catalog.refresh`), and the row stays small.
MAX_LOGGED_IDS = 2000

_BUMP = "UPDATE catalog_generation SET generation = generation + 1 WHERE id = 1"
_LOG = ("INSERT INTO catalog_changes (generation, image_ids) "
        "SELECT generation, ? FROM catalog_generation WHERE id = 1")
# rows too old to keep, and rows at or past the new generation: there are none unless the generation
# was set back by hand, and the new row must not collide with them (every catalog write would fail)
_PRUNE = ("DELETE FROM catalog_changes WHERE generation <= (SELECT generation FROM catalog_generation "
          "WHERE id = 1) - ? OR generation >= (SELECT generation FROM catalog_generation WHERE id = 1)")
_CURRENT = "SELECT generation FROM catalog_generation WHERE id = 1"


def bump_generation(cur: Cursor, dialect: Dialect, image_ids: Iterable[str]) -> None:
    """In the caller's transaction: one step of the catalog generation, logging `image_ids` (every
    photo the write added, removed, relabelled or replaced; none is a valid step too)."""
    ids = sorted(set(image_ids))
    cur.execute(_BUMP)
    cur.execute(dialect.sql(_PRUNE), (KEPT_GENERATIONS,))
    cur.execute(dialect.sql(_LOG), (json.dumps(ids) if len(ids) <= MAX_LOGGED_IDS else None,))


def current_generation(cur: Cursor) -> int:
    cur.execute(_CURRENT)
    row = cur.fetchone()
    return int(row[0]) if row else 0


def changes_since(cur: Cursor, dialect: Dialect, since: int) -> tuple[int, list[str] | None]:
    """(the current generation, the photos changed after `since` up to it), or (current, None)
    when the log does not cover every step between them. Each generation's row commits with it, and
    generations commit in order (the bump locks the row), so every step up to the one read is there
    unless pruned."""
    current = current_generation(cur)
    if current == since:
        return current, []
    if current < since:  # another database, or one restored from a backup
        return current, None
    cur.execute(dialect.sql("SELECT generation, image_ids FROM catalog_changes "
                            "WHERE generation > ? AND generation <= ? ORDER BY generation"), (since, current))
    rows = cur.fetchall()
    if len(rows) != current - since or any(r[1] is None for r in rows):
        return current, None
    ids: dict[str, None] = {}
    for _, logged in rows:
        ids.update(dict.fromkeys(json.loads(logged)))
    return current, (list(ids) if len(ids) <= MAX_LOGGED_IDS else None)
