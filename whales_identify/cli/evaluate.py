"""`whales evaluate`."""

from __future__ import annotations

from whales_identify.cli._common import fail


def evaluate() -> None:
    """Not implemented yet."""
    fail("'whales evaluate' is not implemented yet", code=2)
