"""Why it matched, and where an animal was seen, in the page: headless Chromium against the live
service with the embedded models and real right-whale photos.

* Review: the "Show matched points" toggle draws the verified pairs between the query and the
  candidate's photo; another catalog photo's thumbnail (reached with the keyboard) shows its pairs.
* Individual page: three sightings give three timeline entries and three points on the offline map.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from test_web import _open, _set_key

pytestmark = pytest.mark.browser

RIGHT_WHALES = "positives/noaa_right_whale_headcrops/"
MATCH_WHALE = "rw_whale_06069"  # first vs second photo: a clear geometric match (see tests/identify)


def _photos(data_dir: Path, manifest, individual: str) -> list[Path]:
    rows = [r for r in manifest if r.relpath.startswith(RIGHT_WHALES) and r.individual_id == individual]
    paths = [data_dir / r.relpath for r in rows]
    if len(paths) < 3 or not all(p.is_file() for p in paths[:3]):
        pytest.skip(f"three photos of {individual} are not under {data_dir / RIGHT_WHALES}")
    return paths


def _enrol(live_service, individual: str, photos: list[Path]) -> list[str]:
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    r = httpx.post(f"{live_service.url}/v1/individuals/{individual}/images", files=files,
                   data={"species": "north_atlantic_right_whale"},
                   headers={"X-API-Key": live_service.api_key}, timeout=120)
    assert r.status_code == 200, r.text
    ids = [e["image_id"] for e in r.json()["enrolled"]]
    assert len(ids) == len(photos), f"the gate refused some right-whale photos: {r.json()['refused']}"
    return ids


def test_review_draws_the_matched_points(web, live_service, data_dir, manifest, screenshots):
    page, watch = web
    photos = _photos(data_dir, manifest, MATCH_WHALE)
    individual = f"e2e_rw_{uuid.uuid4().hex[:6]}"
    best, other = _enrol(live_service, individual, photos[1:3])
    _open(page, live_service)
    _set_key(page, live_service)  # the query photo of an unreviewed prediction is for key holders
    page.set_input_files("#identify-file", str(photos[0]))
    card = page.wait_for_selector(f".candidate:has(code:text('{individual}'))", timeout=90_000)
    card.query_selector("input[type=radio]").check()
    toggle = page.locator("[data-testid=match-toggle]")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.focus()
    page.keyboard.press("Enter")  # the toggle works from the keyboard
    assert toggle.get_attribute("aria-pressed") == "true"
    svg = page.wait_for_selector("[data-testid=match-svg]", timeout=60_000)
    pairs = int(svg.get_attribute("data-pairs"))
    assert pairs >= 8, page.inner_text(".match-panel")
    assert len(svg.query_selector_all("g.pair line")) == pairs
    count = page.inner_text("[data-testid=inlier-count]")
    assert count.startswith(f"{pairs} verified matching point") or "drawn" in count
    drawn_ref = page.inner_text(".match-caption code")
    page.wait_for_load_state("networkidle")
    box = page.locator("[data-testid=review]").bounding_box()
    scroll = page.evaluate("() => window.scrollY")
    page.screenshot(path=str(screenshots / "12-match-lines.png"), full_page=True,
                    clip={**box, "y": box["y"] + scroll})

    # the other catalog photo of the candidate: Tab to its thumbnail and press Enter
    other_id = other if drawn_ref == best else best
    button = card.wait_for_selector(f".thumb-btn[data-image-id='{other_id}']")
    button.focus()
    page.keyboard.press("Enter")
    shown = "id => document.querySelector('.match-caption code')?.textContent === id"
    page.wait_for_function(shown, arg=other_id)
    assert page.query_selector("[data-testid=match-svg]") or "Why none" in page.inner_text(".match-panel")
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "false" and page.locator(".match-panel").is_hidden()
    watch.assert_clean()


SIGHTINGS = [  # three sightings of one whale along the US east coast, oldest first
    {"latitude": "41.80", "longitude": "-70.30", "observed_at": "2023-03-14T10:00",
     "location": "Cape Cod Bay", "observer": "Aerial survey A"},
    {"latitude": "44.70", "longitude": "-66.60", "observed_at": "2023-08-02T15:30",
     "location": "Bay of Fundy", "observer": "Vessel survey B"},
    {"latitude": "31.05", "longitude": "-81.00", "observed_at": "2024-01-20T12:45",
     "location": "off Georgia", "observer": "Aerial survey C"},
]


def test_individual_history_has_three_points_and_entries(web, live_service, data_dir, manifest, screenshots):
    page, watch = web
    photos = _photos(data_dir, manifest, "rw_whale_15615")
    individual = f"e2e_hist_{uuid.uuid4().hex[:6]}"
    key = {"X-API-Key": live_service.api_key}
    with httpx.Client(base_url=live_service.url, timeout=120) as client:
        for i, (photo, sighting) in enumerate(zip(photos[:3], SIGHTINGS, strict=True)):
            r = client.post("/v1/predict", files={"file": (photo.name, photo.read_bytes())}, data=sighting)
            assert r.status_code == 200 and not r.json()["rejected"], r.text
            decision = {"decision": "new_individual", "individual_id": individual,
                        "species": "north_atlantic_right_whale"} if i == 0 else {
                "decision": "confirm", "individual_id": individual}
            pid = r.json()["prediction_id"]
            review = client.post(f"/v1/predictions/{pid}/review", json=decision, headers=key)
            assert review.status_code == 200, review.text
        public = client.get(f"/v1/individuals/{individual}/sightings").json()
    assert public["total"] == 3 and all(it["sighting"]["precision"] != "exact" for it in public["items"])

    _open(page, live_service)
    _set_key(page, live_service)  # a reviewer sees the exact positions, places and observers
    _open(page, live_service, f"#catalog/{individual}")
    history = page.wait_for_selector("[data-testid=history] [data-testid=sighting-map]", timeout=60_000)
    assert history is not None
    # The individual's page can be drawn twice (the key set above, the curation answer arriving): a
    # map found by the wait may be replaced by a section still loading, so wait for the points
    # themselves (a page that never draws three fails here after the timeout).
    page.wait_for_function("() => document.querySelectorAll('[data-testid=map-point]').length === 3",
                           timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=timeline-entry]').length === 3",
                           timeout=60_000)
    assert len(page.query_selector_all("[data-testid=map-point]")) == 3
    entries = page.query_selector_all("[data-testid=timeline-entry]")
    assert len(entries) == 3
    texts = [e.inner_text() for e in entries]
    for text, sighting in zip(texts, SIGHTINGS, strict=True):  # oldest first, with place and observer
        assert sighting["observed_at"].replace("T", " ") in text
        assert sighting["location"] in text and sighting["observer"] in text
    assert page.inner_text("[data-testid=sighting-count]") == "3"
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=history] img')]
        .every(img => img.complete && img.naturalWidth > 0)""")
    box = page.locator("[data-testid=individual-page]").bounding_box()
    scroll = page.evaluate("() => window.scrollY")
    page.screenshot(path=str(screenshots / "13-history.png"), full_page=True,
                    clip={**box, "y": box["y"] + scroll})
    # the public page (no key) still shows three points, generalised to grid cells
    page.click("#key-clear")
    page.reload()
    page.wait_for_selector("[data-testid=sighting-map]")
    assert len(page.query_selector_all("[data-testid=map-point]")) == 3
    assert len(page.query_selector_all("[data-testid=map-point] rect.cell")) == 3
    assert "Cape Cod Bay" not in page.inner_text("[data-testid=history]")
    watch.assert_clean()
