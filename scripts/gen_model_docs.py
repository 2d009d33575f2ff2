"""Print docs/MODELS.md: the model card of every built-in registered model (docs cannot drift)."""

from __future__ import annotations

from whales_identify.models.cards import render_models_markdown
from whales_identify.models.entries import builtin_entries


def render() -> str:
    # the built-in entries only, not models a user trained into ./models/trained on this machine
    return render_models_markdown(sorted((cfg for cfg, _ in builtin_entries()), key=lambda c: c.model_id))


if __name__ == "__main__":
    print(render(), end="")
