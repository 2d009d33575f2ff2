"""`whales train`."""

from __future__ import annotations

from whales_identify.cli._common import fail


def train() -> None:
    """Not implemented yet."""
    fail("'whales train' is not implemented yet", code=2)
