"""The saved vote indexes (`MatchConfig.vote_index_dir`): a cache of `FaissVoteIndex` builds keyed by
the photos and the settings, shared by workers (`_saved`: per-writer temporary names, a json
written last, all but the newest few deleted), so that a start reads the index instead of
building it, and a start after enrolments reads the one saved for the first photos.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whales_identify.reid import _saved
from whales_identify.reid.vote_index import _SUFFIXES, FaissVoteIndex, VoteIndex, extend
from whales_identify.reid.vote_masked import (
    MaskedVoteIndex,
    Reusable,
    photo_identities,
    photo_keys,
    plan,
    reuse,
)

log = logging.getLogger(__name__)
SAVED_INDEXES_KEPT = _saved.SAVED_KEPT


def fingerprint(image_ids: Sequence[str], parts: Sequence[np.ndarray], settings: str,
                digests: Sequence[bytes] | None = None) -> str:
    """A key for a saved index: the settings, and per image its id, descriptor count and first and
    last descriptor (cheap at 100k photos; a changed photo changes its descriptors), or its
    `digests` where given (`feature_pack.digest` of photos whose descriptors are mapped from a file:
    reading their rows here would make the whole mapping resident)."""
    h = hashlib.sha256(settings.encode())
    for identity in photo_identities(image_ids, parts, digests):
        h.update(identity)
    return h.hexdigest()[:24]


def saved_or_built(image_ids: Sequence[str], parts: Sequence[np.ndarray], directory: str,
                   settings: dict[str, Any], tag: str = "", fold_at: int = 20_000,
                   digests: Sequence[bytes] | None = None,
                   after_chunk: Callable[[], None] | None = None) -> VoteIndex:
    """`FaissVoteIndex(parts, **settings)`, read from `directory` when one was saved there for the
    same settings and these photos, or for a prefix of them (the photos enrolled after it was
    saved are added, as `extend` does; when they hold `fold_at` descriptors or more, the grown
    index is saved too, so that the next start does not add them again); a new build is saved
    (index, owners, and a small json that names its key and number of photos). `digests`: per
    photo, keys it instead of its rows (see `fingerprint`); `after_chunk`: called after each
    chunk of descriptors is added (mapped features: drop the pages just read, so that a build
    does not make the whole file resident).

    After photo removals no saved prefix matches: a saved index that holds most of the photos is
    read and the removed ones masked (`vote_masked.reuse`; each saved index keeps its photos' keys
    beside it), instead of a rebuild."""
    if not directory:  # nothing saved: no photo keys needed (a snapshot's reuse makes its own)
        return FaissVoteIndex(parts, **settings, after_chunk=after_chunk)
    tag = repr(sorted(settings.items())) + tag
    folder = Path(directory)
    saved: list[tuple[int, str]] = []
    for info in _saved.list_saved(folder, "vote", tag):
        try:
            saved.append((int(info["images"]), str(info["key"])))
        except (ValueError, KeyError, TypeError):
            continue
    # the largest saved prefix first; one covering under half the photos is not worth extending
    # (its lists were sized for fewer descriptors): a new build is made and saved instead
    candidates = sorted((c for c in saved if len(parts) / 2 <= c[0] <= len(parts)), reverse=True)
    for n, key in candidates[:3]:  # each check hashes the photos it covers
        if fingerprint(image_ids[:n], parts[:n], tag, None if digests is None else digests[:n]) != key:
            continue
        found = FaissVoteIndex.load(folder / f"vote-{key}.faiss")
        if found is None:
            continue
        if found.photos is None:  # saved before photo keys were: add them for later removals
            found.photos = photo_keys(image_ids[:n], parts[:n], None if digests is None else digests[:n])
            try:
                found.save_photos(folder / f"vote-{key}.faiss")
            except OSError:
                pass
        if n == len(parts):
            return found
        if sum(len(p) for p in parts[n:]) < fold_at:  # a few photos since: a delta tier, each start
            grown = extend(found, n, parts[n:], fold_at, after_chunk)
            if grown is not None:
                return grown
        # many photos since: the saved codes plus theirs, saved, so that the next start reads it
        # instead of adding them again (minutes at 100k photos)
        since = photo_keys(image_ids[n:], parts[n:], None if digests is None else digests[n:])
        grown = _with_photos(found.extended(parts[n:], n, after_chunk), np.concatenate([found.photos, since]))
        return _saved_index(grown, folder, fingerprint(image_ids, parts, tag, digests), tag)
    keys = photo_keys(image_ids, parts, digests)
    masked = _masked(folder, tag, keys, parts, fold_at, after_chunk)
    if masked is not None:
        return masked
    index = _with_photos(FaissVoteIndex(parts, **settings, after_chunk=after_chunk), keys)
    return _saved_index(index, folder, fingerprint(image_ids, parts, tag, digests), tag)


def _with_photos(index: FaissVoteIndex, keys: np.ndarray) -> FaissVoteIndex:
    index.photos = keys
    return index


def _masked(folder: Path, tag: str, keys: np.ndarray, parts: Sequence[np.ndarray], fold_at: int,
            after_chunk: Callable[[], None] | None) -> VoteIndex | None:
    """A saved index of most of these photos and some removed since, masked (`vote_masked.reuse`);
    where the photos added since were folded into it, the grown index is saved under a key of its
    own photos (it holds the removed ones too, so no fingerprint of the catalog names it)."""
    for info in _saved.list_saved(folder, "vote", tag)[:3]:
        try:
            path = folder / f"vote-{info['key']}.faiss"
            if int(info["images"]) < len(keys) / 2:
                continue
            photos = np.load(path.with_name(path.name + ".photos.npy"))
            owner = np.load(path.with_name(path.name + ".owner.npy"), mmap_mode="r")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        # decided from the photos' keys and the owners first: the index itself is ~1 GB at 100k
        planned = plan(photos, np.bincount(owner, minlength=len(photos)), keys)
        if planned is None:
            continue
        found = FaissVoteIndex.load(path)
        if found is None or found.photos is None:
            continue
        index = reuse(Reusable(found, found.photos), keys, parts, fold_at, after_chunk, planned)
        if index is None:
            continue
        inner = index.inner if isinstance(index, MaskedVoteIndex) else index
        if isinstance(inner, FaissVoteIndex) and inner is not found and inner.photos is not None:
            h = hashlib.sha256(tag.encode() + inner.photos.tobytes())
            _saved_index(inner, folder, "p" + h.hexdigest()[:23], tag)
        log.info("vote index: reused the saved %s, %d removed photo(s) masked", path.name,
                 int((planned[0] < 0).sum()))
        return index
    return None


def _saved_index(index: FaissVoteIndex, folder: Path, key: str, tag: str) -> FaissVoteIndex:
    # The saved index is a cache: a failed write (disk full, read-only folder) costs the next
    # start a rebuild, never this catalog load.
    try:
        index.save(folder / f"vote-{key}.faiss")
        images = len(index.photos) if index.photos is not None else int(index.owner[-1]) + 1
        _saved.write_meta(folder, "vote", key, {"images": images, "settings": tag})
        prune_saved(folder, keep=key)
    except OSError as exc:
        log.warning("could not save the vote index in %s (%s); the next start rebuilds it", folder, exc)
    return index


def prune_saved(folder: Path, keep: str, newest: int = SAVED_INDEXES_KEPT) -> list[str]:
    """Delete saved indexes but `keep` and the `newest` others (by modification time): every
    removed photo changes the key, so without this each curation would leave a full index behind.
    Returns the deleted keys."""
    return _saved.prune(folder, "vote", keep, _SUFFIXES, newest)
