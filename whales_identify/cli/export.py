"""`whales export`."""

from __future__ import annotations

from whales_identify.cli._common import fail


def export() -> None:
    """Not implemented yet."""
    fail("'whales export' is not implemented yet", code=2)
