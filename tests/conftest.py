"""Shared fixtures: the real data folder (skipped cleanly where absent) and real embedded models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from whales_identify.data import read_manifest, resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_SERVICES = os.environ.get("WHALES_TEST_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip where a service is absent; in CI (WHALES_TEST_REQUIRE_SERVICES=1) fail instead."""
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    default = ROOT / ".." / "shared" / "data" / "cetaceans"
    path = resolve_data_dir(os.environ.get("WHALES_DATA_DIR") or default)
    if not (path / "manifest.csv").is_file():
        pytest.skip(f"real data not found at {path} (set WHALES_DATA_DIR to the cetaceans folder)")
    return path


@pytest.fixture(scope="session")
def manifest(data_dir: Path):
    return read_manifest(data_dir / "manifest.csv")


@pytest.fixture(scope="session")
def lite0():
    from whales_identify.models import create_model

    return create_model("efficientnet_lite0.imagenet")


@pytest.fixture(scope="session")
def lite0_embedder(lite0):
    from whales_identify.embed import Embedder

    return Embedder(lite0)
