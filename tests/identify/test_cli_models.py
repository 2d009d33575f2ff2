"""`whales models list|verify|pull` through the real CLI entry point."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from whales_cli import app

runner = CliRunner()


def test_list_json_shows_embedded_default_present_and_verified():
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.output)}
    lite0 = rows["efficientnet_lite0.imagenet"]
    assert lite0["present"] is True and lite0["verified"] is True and lite0["source"] == "package"
    assert rows["effb4_arcface.happywhale"]["present"] is False


def test_verify_named_missing_model_exits_nonzero(tmp_path):
    result = runner.invoke(app, ["models", "verify", "effb4_arcface.happywhale",
                                 "--models-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "missing" in result.output


def test_verify_detects_tampered_override(tmp_path):
    (tmp_path / "efficientnet_lite0.imagenet.pth").write_bytes(b"garbage")
    result = runner.invoke(app, ["models", "verify", "--models-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAILED" in result.output


def test_pull_offline_fails_with_nonzero_exit(tmp_path, monkeypatch):
    # The hub is unreachable here: pull must fail loudly, never pretend.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at import time; timm may have imported it already
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = runner.invoke(app, ["models", "pull", "effb4_arcface.happywhale", "--models-dir", str(tmp_path),
                                 "--retries", "1"])
    assert result.exit_code != 0
    assert not (tmp_path / "effb4_arcface.happywhale.pt").exists()


def test_pull_of_packaged_model_is_a_no_op():
    result = runner.invoke(app, ["models", "pull", "efficientnet_lite0.imagenet"])
    assert result.exit_code == 0 and "PyPI package" in result.output
