"""The `whales` command line: each command wraps one library call (sqlite-utils style)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from whales_cli import batch, catalog, evaluate, export, gate, identify, models, train
from whales_cli._common import fail

app = typer.Typer(
    name="whales",
    help="EcoMarineAI: identify individual whales and dolphins in photographs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"whales {version('ecomarineai')}")
        except PackageNotFoundError:
            typer.echo("whales (not installed as a package: version unknown)")
        raise typer.Exit()


@app.callback()
def main(show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = False,
         model_spec: Annotated[list[Path] | None, typer.Option(
             "--model-spec", envvar="WHALES_MODEL_SPECS",
             help="Model spec file (YAML/JSON) registering more embedding models, ONNX or timm "
                  "(repeatable; docs/MODELS.md).")] = None) -> None:
    """EcoMarineAI: identify individual whales and dolphins in photographs."""
    if model_spec:
        from whales_identify.models.spec import ModelSpecError, register_model_specs

        try:
            register_model_specs([str(p) for p in model_spec])
        except ModelSpecError as exc:
            fail(str(exc))


app.add_typer(models.app, name="models")
app.add_typer(gate.app, name="gate")
app.add_typer(catalog.app, name="catalog")
app.command("identify")(identify.identify)
app.command("evaluate")(evaluate.evaluate)
app.command("export")(export.export)
app.command("train")(train.train)
app.command("batch")(batch.batch)

__all__ = ["app"]
