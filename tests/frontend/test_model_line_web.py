"""The footer's model line says which embedding identifies photos and what it is for (its model card
from GET /v1/models), in headless Chromium against the live service."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from whales_identify.models import DEFAULT_REID_MODEL  # noqa: E402


def test_model_line_shows_the_default_models_intended_use_and_limits(web, live_service):
    page, watch = web
    page.goto(f"{live_service.url}/")
    line = page.locator("#model-line")
    expect(line).to_be_visible()
    text = line.inner_text()
    card = httpx.get(f"{live_service.url}/v1/models", timeout=30).json()["models"][0]["card"]
    assert DEFAULT_REID_MODEL in text and card["intended_use"] in text
    assert "right whale" in text and "0.06" in text  # what it is for, and where it is weak
    watch.assert_clean()


def test_model_line_stays_hidden_without_a_card(web, live_service):
    page, watch = web

    def no_card(route):
        body = httpx.get(f"{live_service.url}/v1/models", timeout=30).json()
        route.fulfill(json={**body, "models": [{**m, "card": None} for m in body["models"]]})

    page.route("**/v1/models", no_card)
    page.goto(f"{live_service.url}/")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#model-line")).to_be_hidden()
    watch.assert_clean()
