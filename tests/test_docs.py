"""Docs that cannot drift: the CLI reference is generated from --help and must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _render() -> str:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.render()


def test_cli_reference_is_current():
    committed = (ROOT / "docs" / "CLI_REFERENCE.md").read_text()
    assert committed.strip() == _render().strip(), "run `make docs` and commit docs/CLI_REFERENCE.md"


def test_cli_reference_covers_every_subcommand():
    """Each leaf command has its own section (the generator once walked only the top level)."""
    text = _render()
    for section in ("whales models export-onnx", "whales models list", "whales catalog import",
                    "whales gate calibrate", "whales evaluate", "whales train"):
        assert f"## `{section}`" in text, section
