"""Helpers shared by CLI commands: JSON output and error exits."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer


def emit_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
