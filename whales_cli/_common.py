"""Helpers shared by CLI commands: JSON output and error exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from integrations.base import DEFAULT_DATABASE_URL

# Options shared by commands. Each reads the variable the service's Settings reads (typer's
# envvar), so the CLI and the service agree without either restating the other's defaults; the
# library only ever receives values as arguments.
Db = Annotated[str | None, typer.Option("--db", envvar="WHALES_DATABASE_URL", show_default=False,
                                        help=f"Database URL (default: {DEFAULT_DATABASE_URL}).")]
Model = Annotated[str, typer.Option("--model", envvar="WHALES_EMBEDDING_MODEL",
                                    help="Embedding model id (arch.tag).")]
ModelsDir = Annotated[Path | None, typer.Option("--models-dir", envvar="WHALES_MODELS_DIR",
                                                help="Weights folder (default: ./models).")]
MaxPixels = Annotated[int, typer.Option("--max-pixels", envvar="WHALES_MAX_PIXELS", min=1,
                                        help="Most pixels in one photo (bomb guard; the service's limit).")]


def emit_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
