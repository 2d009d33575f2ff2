"""`whales train`."""

from __future__ import annotations

from whales_identify.cli._common import fail


def train() -> None:
    """Fine-tuning is not part of this build (the matcher is training-free; see docs/REID.md)."""
    fail("'whales train' is not implemented in this build: the re-identification engine is "
         "training-free (global embedding + local-feature verification, docs/REID.md)", code=2)
