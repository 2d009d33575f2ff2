"""Named API keys: `WHALES_API_KEYS` entries are `key` (as before) or `name:key`, so that a review,
an undo or a curation records *who* made it (the name) instead of a fingerprint of the key.

The name is what audit rows and Darwin Core `identifiedBy` carry; the key itself is never stored.
An entry whose key contains `:` is written with an empty name (`:the:key`): it stays unnamed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

# A person's or a team's name: letters (any script), digits, spaces and . _ ' - ; at most 64.
# No ':' or ',' (the entry's own separators) and not the `sha256:` form of a fingerprint.
_NAME = re.compile(r"^[\w][\w .'\-]{0,63}$")


@dataclass(frozen=True)
class ApiKey:
    key: str
    name: str | None = None  # None: unnamed, audited by the key's fingerprint


def key_fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible name of a key for audit records (the key is never stored)."""
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def parse_api_keys(entries: Iterable[str]) -> list[ApiKey]:
    """`["ana:k1", "k2", ":k:3"]` -> keys with their names; raises ValueError naming the bad entry
    by its position, never by its text: a key that itself holds ':' and was not written ':key'
    would otherwise put half of the secret into the start-up log."""
    keys: dict[str, ApiKey] = {}
    for position, entry in enumerate(entries, start=1):
        name, sep, key = entry.partition(":")
        name, key = (name.strip(), key.strip()) if sep else ("", entry.strip())
        if not key:
            raise ValueError(f"WHALES_API_KEYS: entry {position} has no key after ':'")
        if name and not _NAME.match(name):
            raise ValueError(f"WHALES_API_KEYS: entry {position} has a reviewer name that is not usable "
                             "(letters, digits, spaces and . _ ' - only, at most 64 characters); "
                             "a key that itself contains ':' is written ':key'")
        parsed = ApiKey(key, name or None)
        if key in keys and keys[key] != parsed:
            raise ValueError("WHALES_API_KEYS: one key is listed twice with different names")
        keys[key] = parsed
    return list(keys.values())


def audit_name(key: ApiKey) -> str:
    """What audit records say about the caller: the key's name, else its fingerprint."""
    return key.name or key_fingerprint(key.key)
