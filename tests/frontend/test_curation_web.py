"""The Review tab's filters and an individual's unreviewed candidate sightings (issue 23), in headless
Chromium against the live service with the embedded models and real right-whale photos.

* Filters: the form's values become exactly the query of `GET /v1/predictions`, and the queue shows
  what the API answers for it; a decided prediction says so; a bad probability range is refused.
* Individual page: a photo the model matched to the individual, not yet reviewed, is listed beside
  the confirmed sightings, its photo loaded with the key; "Confirm as" makes it one of them.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import expect
from test_explain_web import MATCH_WHALE, RIGHT_WHALES, _enrol
from test_web import _open, _set_key

pytestmark = pytest.mark.browser


def _fresh_whale(data_dir, manifest, which: int):
    """Two photos of a right whale the other page tests do not use (they take the first ones);
    `which` keeps the tests here apart from each other (one photo, one individual)."""
    by_id: dict[str, list] = {}
    for r in sorted(manifest, key=lambda r: r.relpath):
        if r.relpath.startswith(RIGHT_WHALES) and r.individual_id and (data_dir / r.relpath).is_file():
            by_id.setdefault(r.individual_id, []).append(data_dir / r.relpath)
    usable = [paths for k, paths in sorted(by_id.items()) if k != MATCH_WHALE and len(paths) >= 2]
    if len(usable) <= which:
        pytest.skip(f"not enough right whales with two photos under {data_dir / RIGHT_WHALES}")
    return usable[which][:2]


def _predict(live_service, path) -> dict:
    r = httpx.post(f"{live_service.url}/v1/predict", timeout=120,
                   files={"file": (path.name, path.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def _matched(live_service, data_dir, manifest, which: int) -> tuple[str, list, dict]:
    """A new individual of two photos, and the prediction of its first photo (matched, unreviewed)."""
    photos = _fresh_whale(data_dir, manifest, which)
    individual = f"e2e_c_{uuid.uuid4().hex[:6]}"
    _enrol(live_service, individual, photos)
    answer = _predict(live_service, photos[0])  # the enrolled photo itself: top-1, not new
    assert answer["individual_id"] == individual and not answer["is_new_individual"], answer
    return individual, photos, answer


def _api(live_service, params) -> list[dict]:
    r = httpx.get(f"{live_service.url}/v1/predictions", params={"sort": "oldest", "limit": 200, **params},
                  headers={"X-API-Key": live_service.api_key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_review_queue_filters(web, live_service, data_dir, manifest):
    page, watch = web
    individual, _, answer = _matched(live_service, data_dir, manifest, 1)
    r = httpx.post(f"{live_service.url}/v1/predictions/{answer['prediction_id']}/review", timeout=120,
                   json={"decision": "confirm"}, headers={"X-API-Key": live_service.api_key})
    assert r.status_code == 200, r.text
    _open(page, live_service, "#review")
    _set_key(page, live_service)
    form = page.locator("#queue-filters")
    expect(form).to_be_visible()
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if "/v1/predictions?" in r.url else None)
    choices = {"review_state": "confirmed", "new_individual": "false", "min_probability": "0.05",
               "max_probability": "1"}
    form.locator("select[name=review_state]").select_option(choices["review_state"])
    form.locator("select[name=new_individual]").select_option(choices["new_individual"])
    form.locator("input[name=min_probability]").fill(choices["min_probability"])
    form.locator("input[name=max_probability]").fill(choices["max_probability"])
    form.locator("button[type=submit]").click()
    expected = _api(live_service, choices)
    assert answer["prediction_id"] in [p["prediction_id"] for p in expected]
    item = page.locator("[data-testid=queue-item]")
    expect(item).to_have_attribute("data-prediction-id", expected[0]["prediction_id"], timeout=30_000)
    sent = parse_qs(urlsplit(seen[-1]).query)
    assert {k: v[0] for k, v in sent.items() if k in choices} == choices, seen[-1]
    assert sent["sort"] == ["oldest"] and "species" not in sent and "batch_id" not in sent
    expect(page.locator("#queue-scope")).to_contain_text("Confirmed photos")
    expect(page.locator("#queue-scope")).to_contain_text("matched to a known individual")
    expect(page.locator("[data-testid=queue-state]")).to_contain_text("already confirmed")

    # species and a probability range that excludes everything: the queue says it is empty
    form.locator("select[name=species]").select_option("north_atlantic_right_whale")
    form.locator("input[name=min_probability]").fill("0")
    form.locator("input[name=max_probability]").fill("0")
    form.locator("button[type=submit]").click()
    sent = parse_qs(urlsplit(seen[-1]).query)
    assert sent["species"] == ["north_atlantic_right_whale"] and sent["max_probability"] == ["0"]
    if not _api(live_service, {k: v[0] for k, v in sent.items() if k not in ("limit", "sort")}):
        expect(page.locator("[data-testid=queue-empty]")).to_be_visible(timeout=30_000)
    form.locator("input[name=min_probability]").fill("0.9")
    form.locator("input[name=max_probability]").fill("0.2")
    form.locator("button[type=submit]").click()
    expect(page.locator("#queue-status")).to_contain_text("above the highest")
    form.locator("#queue-filters-reset").click()
    expect(form.locator("select[name=review_state]")).to_have_value("unreviewed")
    expect(page.locator("#queue-scope")).to_contain_text("Unreviewed photos")
    watch.assert_clean()


def test_candidate_sightings_beside_confirmed_ones(web, live_service, data_dir, manifest, screenshots):
    page, watch = web
    individual, _, answer = _matched(live_service, data_dir, manifest, 2)
    pid = answer["prediction_id"]
    _open(page, live_service)
    _set_key(page, live_service)  # the photo of an unreviewed prediction is for key holders
    page.goto(f"{live_service.url}/#catalog/{individual}")
    entry = page.locator(f"[data-testid=candidate-sighting][data-prediction-id='{pid}']")
    expect(entry).to_be_visible(timeout=60_000)
    expect(page.locator("[data-testid=candidate-sighting]")).to_have_count(1)
    expect(page.locator("[data-testid=sighting-count]")).to_have_text("2")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=candidate-sighting] img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
    page.screenshot(path=str(screenshots / "15-candidate-sightings.png"), full_page=True)
    entry.locator("[data-testid=candidate-confirm]").click()
    expect(page.locator("[data-testid=sighting-count]")).to_have_text("3", timeout=60_000)
    expect(page.locator("[data-testid=candidate-count]")).to_contain_text("No unreviewed photo")
    decided = [p for p in _api(live_service, {"review_state": "confirmed"}) if p["prediction_id"] == pid]
    assert decided and decided[0]["reviewer_decision"]["individual_id"] == individual
    watch.assert_clean()


def test_curate_merge_move_and_rename_on_the_page(web, live_service, data_dir, manifest, screenshots):
    page, watch = web
    photos = _fresh_whale(data_dir, manifest, 3)
    tag = uuid.uuid4().hex[:6]
    keep, dup, fresh, renamed = (f"e2e_{k}_{tag}" for k in ("keep", "dup", "new", "ren"))
    _enrol(live_service, keep, photos[:1])
    dup_image = _enrol(live_service, dup, photos[1:2])[0]
    _open(page, live_service)
    _set_key(page, live_service)
    page.goto(f"{live_service.url}/#catalog/{dup}")
    merge = page.locator("[data-testid=curate-merge]")
    merge.locator("input[name=into]").fill(keep)
    merge.locator("button[type=submit]").click()  # armed: says what will happen, changes nothing yet
    expect(merge.locator("button[type=submit]")).to_contain_text(f"Press again: merge {dup} into {keep}")
    assert httpx.get(f"{live_service.url}/v1/individuals/{dup}", timeout=30).status_code == 200
    merge.locator("button[type=submit]").click()
    expect(page.locator("#ind-title code")).to_have_text(keep, timeout=60_000)
    expect(page.locator("[data-testid=curation-history]")).to_contain_text(f"{dup} merged into it")
    page.locator("[data-testid=curation]").screenshot(path=str(screenshots / "16-curation.png"))
    assert httpx.get(f"{live_service.url}/v1/individuals/{keep}", timeout=30).json()["n_images"] == 2

    page.goto(f"{live_service.url}/#catalog/{dup}")  # the retired id says where its photos went
    notice = page.locator("[data-testid=retired-notice]")
    expect(notice).to_contain_text(keep, timeout=30_000)
    notice.locator("a").click()
    expect(page.locator("#ind-title code")).to_have_text(keep)

    form = page.locator("[data-testid=curate-photo]")
    form.locator("select[name=image_id]").select_option(dup_image)
    form.locator("input[name=target]").fill(fresh)
    form.locator("input[name=create]").check()
    form.locator("button[type=submit]").click()
    history_list = page.locator("[data-testid=curation-history]")
    expect(history_list).to_contain_text(f"moved to {fresh}", timeout=60_000)
    assert httpx.get(f"{live_service.url}/v1/individuals/{fresh}", timeout=30).json()["n_images"] == 1
    assert httpx.get(f"{live_service.url}/v1/individuals/{keep}", timeout=30).json()["n_images"] == 1

    rename = page.locator("[data-testid=curate-rename]")
    rename.locator("input[name=new_id]").fill(renamed)
    rename.locator("button[type=submit]").click()
    expect(page.locator("#ind-title code")).to_have_text(renamed, timeout=60_000)
    expect(page.locator("[data-testid=curation-history]")).to_contain_text(f"renamed from {keep}")
    history = httpx.get(f"{live_service.url}/v1/individuals/{dup}/curation", timeout=30).json()
    assert history["current_id"] == renamed  # the chain dup -> keep -> renamed resolves in one step
    rename.locator("input[name=new_id]").fill(fresh)  # taken: the service's message is shown
    rename.locator("button[type=submit]").click()
    expect(page.locator("[data-testid=curation-status]")).to_contain_text("already exists")
    # the retired id's page (404) and the taken id (409) are answers the page expects
    expected = ("status of 404", "status of 409")
    assert not [e for e in watch.console_errors if not any(x in e for x in expected)], watch.console_errors
    assert not watch.external_requests


def test_queue_confirms_a_candidate_merged_meanwhile(web, live_service, data_dir, manifest):
    """The queue was loaded before a merge elsewhere: confirming the retired candidate confirms the
    individual it was merged into (the page asks GET /v1/individuals/{id}/curation after the 404)."""
    page, watch = web
    photos = _fresh_whale(data_dir, manifest, 4)
    tag = uuid.uuid4().hex[:6]
    keep, dup = f"e2e_qk_{tag}", f"e2e_qd_{tag}"
    _enrol(live_service, keep, photos[:1])
    _enrol(live_service, dup, photos[1:2])
    r = httpx.post(f"{live_service.url}/v1/predict-batch", timeout=120,
                   files=[("files", (photos[1].name, photos[1].read_bytes(), "image/jpeg"))])
    assert r.status_code == 200, r.text
    batch = r.json()["summary"]["batch_id"]
    _open(page, live_service)
    _set_key(page, live_service)
    page.goto(f"{live_service.url}/#review/{batch}")
    expect(page.locator(".queue .candidate.chosen .cand-id")).to_have_text(dup, timeout=60_000)
    merged = httpx.post(f"{live_service.url}/v1/individuals/{dup}/merge", json={"into": keep}, timeout=60,
                        headers={"X-API-Key": live_service.api_key})
    assert merged.status_code == 200, merged.text
    page.locator("#queue-root").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#queue-status")).to_contain_text(f"{keep} ({dup} was merged or renamed into it)",
                                                          timeout=60_000)
    decided = _api(live_service, {"batch_id": batch})[0]
    assert decided["review_state"] == "confirmed" and decided["reviewer_decision"]["individual_id"] == keep
    assert not watch.external_requests
