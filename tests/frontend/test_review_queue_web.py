"""The Review tab (issue 23 #1) in headless Chromium against the live service: a batch uploaded on
the page, its row's "review" link opens the queue at that photo, and two predictions are walked with
the keyboard only (choose a candidate + Enter, N for a new individual, U to undo the last)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import expect
from test_explain_web import MATCH_WHALE, RIGHT_WHALES, _enrol, _photos
from test_web import _open, _set_key

pytestmark = pytest.mark.browser


def _other_whale(data_dir, manifest):
    rows = [r for r in manifest if r.relpath.startswith(RIGHT_WHALES) and r.individual_id
            and r.individual_id != MATCH_WHALE and (data_dir / r.relpath).is_file()]
    if not rows:
        pytest.skip(f"no second right whale under {data_dir / RIGHT_WHALES}")
    return data_dir / sorted(rows, key=lambda r: r.relpath)[0].relpath


def _prediction(live_service, prediction_id: str) -> dict:
    page = httpx.get(f"{live_service.url}/v1/predictions", params={"limit": 200},
                     headers={"X-API-Key": live_service.api_key}, timeout=30).json()
    return next(p for p in page["items"] if p["prediction_id"] == prediction_id)


def test_review_queue_walks_a_batch_with_the_keyboard(web, live_service, data_dir, manifest, screenshots):
    page, watch = web
    photos = _photos(data_dir, manifest, MATCH_WHALE)
    individual = f"e2e_q_{uuid.uuid4().hex[:6]}"
    _enrol(live_service, individual, photos[1:3])
    stranger = _other_whale(data_dir, manifest)

    _open(page, live_service, "#batch")
    _set_key(page, live_service)
    page.set_input_files("#batch-file", [str(photos[0]), str(stranger)])
    link = page.locator(f"#batch-table tr:has-text('{photos[0].name}') a.review-link")
    expect(link).to_be_visible(timeout=120_000)
    expect(page.locator("#batch-table a.review-link")).to_have_count(2)
    link.click()  # the queue of this batch, starting at this photo
    expect(page.locator("#tab-review")).to_have_attribute("aria-selected", "true")
    item = page.locator("[data-testid=queue-item]")
    expect(item).to_be_visible(timeout=30_000)
    first = item.get_attribute("data-prediction-id")
    ids = page.locator("[data-testid=queue-item] .cand-id").all_inner_texts()
    assert individual in ids, ids
    page.keyboard.press(str(ids.index(individual) + 1))  # choose the enrolled whale ...
    expect(page.locator(".queue .candidate.chosen .cand-id")).to_have_text(individual)
    page.screenshot(path=str(screenshots / "14-review-queue.png"), full_page=True)
    page.keyboard.press("Enter")  # ... and confirm it
    expect(item).not_to_have_attribute("data-prediction-id", first, timeout=60_000)
    second = item.get_attribute("data-prediction-id")
    decided = _prediction(live_service, first)
    assert decided["review_state"] == "confirmed"
    assert decided["reviewer_decision"]["individual_id"] == individual
    assert decided["reviewed_by"].startswith("sha256:")

    page.keyboard.press("n")  # the other whale: a new individual
    expect(page.locator("[data-testid=queue-empty]")).to_be_visible(timeout=60_000)
    created = _prediction(live_service, second)
    new_id = created["reviewer_decision"]["individual_id"]
    assert created["review_state"] == "new_individual"
    assert httpx.get(f"{live_service.url}/v1/individuals/{new_id}", timeout=30).status_code == 200
    expect(page.locator("#queue-counts")).to_contain_text("2 reviewed")

    page.keyboard.press("u")  # undo the last decision: the photo is back, its new individual gone
    expect(item).to_have_attribute("data-prediction-id", second, timeout=30_000)
    expect(page.locator("#queue-status")).to_contain_text("Undone")
    assert _prediction(live_service, second)["review_state"] == "unreviewed"
    assert httpx.get(f"{live_service.url}/v1/individuals/{new_id}", timeout=30).status_code == 404
    assert _prediction(live_service, first)["review_state"] == "confirmed"  # only the last one
    page.keyboard.press("s")  # skip it: the queue ends
    expect(page.locator("[data-testid=queue-empty]")).to_be_visible()
    expect(page.locator("#queue-counts")).to_contain_text("1 reviewed · 1 skipped")
    watch.assert_clean()
