"""The `whales` command line: each command wraps one library call (sqlite-utils style)."""

from __future__ import annotations

import typer

from whales_identify.cli import batch, catalog, evaluate, export, gate, models, train

app = typer.Typer(
    name="whales",
    help="EcoMarineAI: identify individual whales and dolphins in photographs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.add_typer(gate.app, name="gate")
app.add_typer(catalog.app, name="catalog")
app.command("evaluate")(evaluate.evaluate)
app.command("export")(export.export)
app.command("train")(train.train)
app.command("batch")(batch.batch)

__all__ = ["app"]
