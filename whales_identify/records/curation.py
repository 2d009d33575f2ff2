"""Catalog curation that changes which id a record carries: merge two individuals, rename one, move
one photo. The rules live here once: `InMemoryCuration` applies them in memory and
integrations/_curation.py in SQL, each in one transaction.

An id that leaves the catalog by a merge or a rename is *retired*: it stays resolvable through an
alias (the id that carries its photos now), and every stored prediction that names it (the model's
answer, its candidates, a reviewer's decision) is rewritten to the new id, so that the review queue
and the exports (Darwin Core `organismID`) show the id the catalog knows. A rewritten decision keeps
the ids it had before in `previous_individual_ids`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from whales_identify.errors import ConflictError, NotFoundError

UNKNOWN_SPECIES = "unknown"


def rewrite_ids(individual_id: str | None, candidates: list[dict[str, Any]],
                decision: dict[str, Any] | None, old: str, new: str, answer: bool = True
                ) -> tuple[str | None, list[dict[str, Any]], dict[str, Any] | None] | None:
    """A prediction's (answer, candidates, decision) with `old` replaced by `new`, or None when it
    does not name `old`. `answer=False` (a photo moved) leaves the model's answer and candidates
    alone: only the reviewer's decision follows the photo. Of two merged candidates the better
    ranked one stays (candidates are best first)."""
    changed = False
    if answer and individual_id == old:
        individual_id, changed = new, True
    if answer and any(c.get("individual_id") == old for c in candidates):
        seen: set[Any] = set()
        kept = []
        for c in candidates:
            c = {**c, "individual_id": new} if c.get("individual_id") == old else c
            if c.get("individual_id") not in seen:
                seen.add(c.get("individual_id"))
                kept.append(c)
        candidates, changed = kept, True
    if decision is not None and decision.get("individual_id") == old:
        previous = [*decision.get("previous_individual_ids", []), old]
        decision, changed = {**decision, "individual_id": new, "previous_individual_ids": previous}, True
    return (individual_id, candidates, decision) if changed else None


def named_ids(individual_id: str | None, candidates: list[dict[str, Any]],
              decision: dict[str, Any] | None) -> set[str]:
    """Every individual id a prediction names (answer, candidates, decision)."""
    ids = {individual_id, (decision or {}).get("individual_id")}
    ids.update(c.get("individual_id") for c in candidates)
    return {str(i) for i in ids if i}


def resolve_record(record: Any, aliases: dict[str, str]) -> Any:
    """`record` (a PredictionRecord) with every retired id it names replaced by where that id lives
    on (`aliases`: retired id -> current id). A worker or a `whales batch` job that matched against
    a catalog from before a rename or merge thereby stores the current ids."""
    fields = (record.individual_id, record.candidates, record.reviewer_decision)
    for old, new in aliases.items():
        found = rewrite_ids(*fields, old, new)
        fields = found if found is not None else fields
    return replace(record, individual_id=fields[0], candidates=fields[1], reviewer_decision=fields[2])


def merged_species(source: str, target: str) -> str:
    """The species of a merged individual: the target's, unless only the source's is known. Two
    different known species are refused: that is two animals, not a duplicate."""
    if source == target or source == UNKNOWN_SPECIES:
        return target
    if target == UNKNOWN_SPECIES:
        return source
    raise ConflictError(f"the two individuals have different species ({source} and {target}); "
                        "correct the species first if they really are one animal")


def check_distinct(source: str, target: str) -> None:
    if source == target:
        raise ConflictError(f"{source!r} is already that individual")


def merge_result(source: str, target: str, species: str, moved: int, images: int,
                 predictions: int) -> dict[str, Any]:
    return {"individual_id": target, "merged_id": source, "species": species, "moved_images": moved,
            "images": images, "predictions_rewritten": predictions}


def move_result(image_id: str, source: str, target: str, species: str, left: int, created: bool,
                predictions: int) -> dict[str, Any]:
    return {"image_id": image_id, "from_individual_id": source, "individual_id": target,
            "species": species, "remaining_images": left, "created": created,
            "predictions_rewritten": predictions}


class InMemoryCuration:
    """Rename, merge, move and aliases for `InMemoryStore`, which provides `_lock`, `_catalog`,
    `_predictions`, `_generation`, `_audit` and `has_individual`."""

    def _aliases(self: Any) -> dict[str, tuple[str, str]]:  # retired id -> (current id, action)
        return self.__dict__.setdefault("_alias_table", {})

    def resolve_individual(self: Any, individual_id: str) -> str | None:
        """The id a retired id (merged or renamed away) lives on as; None when it is not retired."""
        found = self._aliases().get(individual_id)
        return found[0] if found else None

    def list_aliases(self: Any, individual_id: str) -> list[str]:
        """The retired ids whose photos this individual carries now."""
        return sorted(a for a, (current, _) in self._aliases().items() if current == individual_id)

    def _resolved(self: Any, record: Any) -> Any:
        """The record with retired ids replaced (see `resolve_record`), for `save_prediction`."""
        table = self._aliases()
        ids = named_ids(record.individual_id, record.candidates, record.reviewer_decision)
        found = {i: table[i][0] for i in ids if i in table}
        return resolve_record(record, found) if found else record

    def _retire(self: Any, old: str, new: str, action: str) -> int:
        """Alias `old` to `new` (collapsing chains) and rewrite every prediction naming `old`."""
        aliases = self._aliases()
        aliases.pop(new, None)  # the new id is live (again)
        for alias, (current, how) in list(aliases.items()):
            if current == old:
                aliases[alias] = (new, how)
        aliases[old] = (new, action)
        return self._rewrite(old, new, answer=True)

    def _rewrite(self: Any, old: str, new: str, answer: bool, only: set[str] | None = None) -> int:
        n = 0
        for pid, r in list(self._predictions.items()):
            if only is not None and pid not in only:
                continue
            found = rewrite_ids(r.individual_id, r.candidates, r.reviewer_decision, old, new, answer)
            if found is not None:
                self._predictions[pid] = replace(r, individual_id=found[0], candidates=found[1],
                                                 reviewer_decision=found[2])
                n += 1
        return n

    def _photos(self: Any, individual_id: str) -> list[Any]:
        return sorted((im for im in self._catalog.values() if im.individual_id == individual_id),
                      key=lambda im: (im.created_at, im.image_id))

    def rename_individual(self: Any, old_id: str, new_id: str, actor: str | None = None) -> int:
        with self._lock:
            check_distinct(old_id, new_id)
            if self.has_individual(new_id):
                raise ConflictError(f"individual {new_id!r} already exists; merge into it instead")
            moved = self._photos(old_id)
            if not moved:
                raise NotFoundError(f"no individual {old_id!r} in the catalog")
            for im in moved:
                self._catalog[im.image_id] = replace(im, individual_id=new_id)
            self._generation += 1
            counts = {"images": len(moved), "predictions": self._retire(old_id, new_id, "rename")}
            self._audit(actor, "rename", old_id, {"new_id": new_id, **counts})
            self._audit(actor, "rename_in", new_id, {"previous_id": old_id, **counts})
            return len(moved)

    def merge_individuals(self: Any, source_id: str, target_id: str,
                          actor: str | None = None) -> dict[str, Any]:
        with self._lock:
            check_distinct(source_id, target_id)
            source, target = self._photos(source_id), self._photos(target_id)
            for individual, photos in ((source_id, source), (target_id, target)):
                if not photos:
                    raise NotFoundError(f"no individual {individual!r} in the catalog")
            species = merged_species(source[0].species, target[0].species)
            for im in source + target:
                self._catalog[im.image_id] = replace(im, individual_id=target_id, species=species)
            self._generation += 1
            predictions = self._retire(source_id, target_id, "merge")
            result = merge_result(source_id, target_id, species, len(source), len(source) + len(target),
                                  predictions)
            counts = {"images": len(source), "predictions": predictions}
            self._audit(actor, "merge", source_id, {"into": target_id, **counts})
            self._audit(actor, "merge_in", target_id, {"from": source_id, **counts})
            return result

    def move_catalog_image(self: Any, image_id: str, target_id: str, create: bool = False,
                           actor: str | None = None) -> dict[str, Any]:
        with self._lock:
            image = self._catalog.get(image_id)
            if image is None:
                raise NotFoundError(f"no catalog photo {image_id!r}")
            check_distinct(image.individual_id, target_id)
            target = self._photos(target_id)
            if create and target:
                raise ConflictError(f"individual {target_id!r} already exists; move without `create`")
            if not create and not target:
                raise NotFoundError(f"no individual {target_id!r} in the catalog; set `create` to make it")
            species = target[0].species if target else image.species
            self._catalog[image_id] = replace(image, individual_id=target_id, species=species)
            self._aliases().pop(target_id, None)  # a retired id used again is live (as in the stores)
            self._generation += 1
            reviewed = {pid for pid, r in self._predictions.items()
                        if image_id in (r.reviewer_decision or {}).get("enrolled_image_ids", [])}
            predictions = self._rewrite(image.individual_id, target_id, answer=False, only=reviewed)
            left = len(self._photos(image.individual_id))
            detail = {"image_id": image_id, "filename": image.filename, "predictions": predictions}
            self._audit(actor, "move_image_out", image.individual_id, {"to": target_id, **detail})
            self._audit(actor, "move_image_in", target_id, {"from": image.individual_id, **detail})
            return move_result(image_id, image.individual_id, target_id, species, left, create, predictions)
