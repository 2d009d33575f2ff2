"""docs/API_REFERENCE.md cannot drift: every endpoint and setting is documented, and the curl and
Python (httpx) examples run against the live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from svc_fakes import fake_settings
from svc_helpers import image_bytes, make_zip

from whales_be_service.main import create_app
from whales_be_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "API_REFERENCE.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_endpoint_is_documented():
    text = DOC.read_text()
    spec = create_app(fake_settings()).openapi()
    for path, item in spec["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in text, f"{method.upper()} {path} is not in {DOC.name}"


def test_every_setting_is_documented():
    text = DOC.read_text()
    for name in Settings.model_fields:
        assert f"`WHALES_{name.upper()}`" in text, f"WHALES_{name.upper()} is not in {DOC.name}"


def test_every_language_has_examples():
    for language in ("bash", "python", "javascript", "r"):
        assert blocks(language), language


@pytest.fixture
def example_dir(tmp_path, request):
    try:
        photo = request.getfixturevalue("real_photos")["photos"][0]
    except pytest.skip.Exception:
        photo = image_bytes((30, 60, 120), size=(480, 320), seed=11)
    (tmp_path / "fluke.jpg").write_bytes(photo)
    (tmp_path / "photos.zip").write_bytes(make_zip({"a.jpg": photo, "notes.txt": b"not a photo"}))
    return tmp_path


def _run(cmd: list[str], code: str, live_server, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = code.replace("http://localhost:8000", live_server.url)
    env = {**os.environ, "WHALES_API_KEY": live_server.api_key}
    return subprocess.run([*cmd, code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_curl_examples_run(live_server, example_dir, request):
    # The examples enrol the photo and then read the individual back: the real gate refuses the
    # synthetic stand-in, so they need a real whale photo.
    request.getfixturevalue("real_photos")
    for code in blocks("bash"):
        done = _run(["bash", "-euo", "pipefail", "-c"], code, live_server, example_dir)
        assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "whales_predictions_total" in done.stdout


def test_python_examples_run(live_server, example_dir):
    for code in blocks("python"):
        done = _run([sys.executable, "-c"], code, live_server, example_dir)
        assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "invalid_image" in done.stdout or "unsupported_media_type" in done.stdout
