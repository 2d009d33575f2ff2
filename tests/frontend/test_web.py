"""The web page end to end: headless Chromium against a live uvicorn with the embedded models.

Order matters a little: the review test enrols an individual that the catalog and batch tests see.
Screenshots go to reports/screenshots/ (gitignored).
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

ENROLLED_ID = f"e2e_whale_{uuid.uuid4().hex[:6]}"  # unique, so reruns against one service do not clash


def _candidates(data_dir: Path, manifest, folder: str, prefix: str = "") -> list[Path]:
    rows = [r for r in manifest if r.relpath.startswith(folder) and Path(r.relpath).name.startswith(prefix)]
    return [p for p in (data_dir / r.relpath for r in sorted(rows, key=lambda r: r.relpath)) if p.is_file()]


def _screen(live_service, paths: list[Path], want_rejected: bool, n: int) -> list[Path]:
    """The first `n` photos the running gate judges as wanted. The gate's accuracy is measured by the
    evaluation, not here: these tests need one clear photo of each kind to drive the page."""
    found: list[Path] = []
    for path in paths:
        upload = {"file": (path.name, path.read_bytes())}
        response = httpx.post(f"{live_service.url}/v1/predict", files=upload, timeout=120)
        assert response.status_code == 200, f"POST /v1/predict {path.name}: {response.text}"
        if response.json()["rejected"] is want_rejected:
            found.append(path)
            if len(found) == n:
                return found
    kind = "rejects" if want_rejected else "accepts"
    pytest.fail(f"the gate ({live_service.gate}) {kind} only {len(found)} of {len(paths)} candidate photos")


@pytest.fixture(scope="module")
def whales(live_service, data_dir, manifest) -> list[Path]:
    """Four real whale/dolphin photos that the gate accepts."""
    paths = (_candidates(data_dir, manifest, "positives/happywhale/")[:10]
             + _candidates(data_dir, manifest, "positives/bottlenose_fins_aberdeen/")[:6])
    return _screen(live_service, paths, want_rejected=False, n=4)


@pytest.fixture(scope="module")
def street(live_service, data_dir, manifest) -> Path:
    """A real street photo that the gate rejects."""
    if live_service.gate == "off":
        pytest.skip("no gate head in models/gate/: the service runs with WHALES_GATE=off and rejects nothing")
    return _screen(live_service, _candidates(data_dir, manifest, "negatives/intel_scenes/", "street")[:8],
                   want_rejected=True, n=1)[0]


@pytest.fixture(scope="module")
def street_any(data_dir, manifest) -> Path:
    """A street photo for the batch, whatever the gate says about it."""
    return _candidates(data_dir, manifest, "negatives/intel_scenes/", "street")[0]


@pytest.fixture(scope="module")
def species_of(manifest) -> dict[str, str]:
    return {Path(r.relpath).name: r.species for r in manifest if r.species}


def _open(page, live_service, hash_: str = ""):
    page.goto(f"{live_service.url}/{hash_}")
    page.wait_for_selector('[role="tab"][aria-selected="true"]')


def _set_key(page, live_service):
    page.fill("#api-key", live_service.api_key)
    page.click("#key-form button[type=submit]")


def test_page_is_local_labelled_and_keyboard_operable(web, live_service, screenshots):
    page, watch = web
    _open(page, live_service)
    # tabs: arrow keys move between them, Enter/Space on the drop zone opens the picker
    page.focus("#tab-identify")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-batch")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-batch")).to_be_visible()
    expect(page.locator("#panel-identify")).to_be_hidden()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-catalog")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tab-catalog")).to_be_focused()
    page.wait_for_selector("#catalog-count:not(:empty)")
    page.keyboard.press("Home")
    expect(page.locator("#tab-identify")).to_have_attribute("aria-selected", "true")
    with page.expect_file_chooser(timeout=5_000):
        page.focus("#identify-drop")
        page.keyboard.press("Enter")
    # every visible form control has an accessible name
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, button, textarea')]
        .filter(el => el.type !== 'file' && el.offsetParent !== null)
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
        .map(el => el.outerHTML)""")
    assert not unnamed, unnamed
    # the API key lives in sessionStorage only
    _set_key(page, live_service)
    assert page.evaluate("sessionStorage.getItem('whales.apiKey')") == live_service.api_key
    assert page.evaluate("localStorage.length") == 0
    page.screenshot(path=str(screenshots / "01-home.png"), full_page=True)
    assert all(u.startswith(live_service.url) for u in watch.requests)
    watch.assert_clean()


def _drop(page, selector: str, path: Path) -> None:
    """Drag-and-drop a file onto a drop zone (a real DataTransfer, as a file manager would give)."""
    page.evaluate("""([selector, name, b64]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
        const zone = document.querySelector(selector);
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
        }
    }""", [selector, path.name, base64.b64encode(path.read_bytes()).decode()])


def test_identify_whale_photo_shows_result_card(web, live_service, whales, screenshots):
    page, watch = web
    _open(page, live_service)
    _drop(page, "#identify-drop", whales[0])
    expect(page.locator("#identify-preview-name")).to_have_text(whales[0].name)
    card = page.wait_for_selector("[data-testid=result-card], [data-testid=rejection-card]", timeout=90_000)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(screenshots / "02-identify-whale.png"), full_page=True)
    assert card.get_attribute("data-testid") == "result-card", card.inner_text()
    text = card.inner_text()
    for label in ("Individual", "Confidence (calibrated)", "Cetacean score", "New individual"):
        assert label in text
    assert page.is_visible("[data-testid=review]")
    watch.assert_clean()


def test_non_cetacean_shows_rejection_card_with_advice(web, live_service, street, screenshots):
    page, watch = web
    _open(page, live_service)
    page.set_input_files("#identify-file", str(street))
    card = page.wait_for_selector("[data-testid=result-card], [data-testid=rejection-card]", timeout=90_000)
    page.screenshot(path=str(screenshots / "03-identify-rejected.png"), full_page=True)
    assert card.get_attribute("data-testid") == "rejection-card", card.inner_text()
    text = card.inner_text()
    assert "not recognised as a whale or dolphin" in text
    assert "Crop tighter" in text and "better light" in text and "fluke" in text
    watch.assert_clean()


def test_review_enrols_and_catalog_shows_it(web, live_service, whales, species_of, screenshots):
    page, watch = web
    photo = next((p for p in whales if species_of.get(p.name)), whales[0])
    species = species_of.get(photo.name)
    _open(page, live_service)
    page.click("details.sighting summary")
    for field, value in (("latitude", "57.15"), ("longitude", "-2.09"), ("observed_at", "2024-07-02T10:15"),
                         ("location", "Aberdeen harbour"), ("observer", "E2E Observer")):
        page.fill(f"#f-{field}", value)
    page.set_input_files("#identify-file", str(photo))
    card = page.wait_for_selector("[data-testid=result-card]", timeout=90_000)
    assert "Aberdeen harbour" in card.inner_text()
    # without the key the review asks for it instead of calling the service
    page.fill("#new-individual-id", ENROLLED_ID)
    if species:  # the biologist knows the species (the manifest's label)
        page.select_option("#new-individual-species", species)
    page.get_by_role("button", name="New individual").click()
    page.wait_for_selector(".review-status.error")
    assert "API key" in page.inner_text(".review-status")
    _set_key(page, live_service)
    page.get_by_role("button", name="New individual").click()
    status = page.wait_for_selector(".review-status.ok")
    assert ENROLLED_ID in status.inner_text()
    page.screenshot(path=str(screenshots / "04-review-enrolled.png"), full_page=True)

    page.click("#tab-catalog")
    page.fill("#catalog-q", ENROLLED_ID)
    page.press("#catalog-q", "Enter")
    link = page.locator(f'#catalog-grid a[href="#catalog/{ENROLLED_ID}"]')
    expect(link).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(screenshots / "05-catalog.png"), full_page=True)
    link.click()
    detail = page.wait_for_selector("[data-testid=individual-page]")
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=individual-page] img')]
        .some(img => img.complete && img.naturalWidth > 0)""")
    # the sighting history is rendered by its own request (GET .../sightings, on the inference pool),
    # which may answer after the thumbnail: wait for it before reading its text
    page.wait_for_selector("[data-testid=history] [data-testid=sighting-count]")
    assert ENROLLED_ID in detail.inner_text()
    assert "Sightings" in detail.inner_text()
    assert "Aberdeen harbour" in detail.inner_text() and "E2E Observer" in detail.inner_text()
    assert "2024-07-02 10:15" in detail.inner_text()
    if species:
        common = httpx.get(f"{live_service.url}/v1/species").json()
        assert next(s["common_name"] for s in common if s["key"] == species) in detail.inner_text()
    page.screenshot(path=str(screenshots / "06-individual.png"), full_page=True)

    # a second photo of a whale now gets the enrolled individual among its candidates
    page.click("#tab-identify")
    page.set_input_files("#identify-file", str(photo))
    page.wait_for_selector(f".candidate code:text('{ENROLLED_ID}')", timeout=90_000)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(screenshots / "07-review-candidates.png"), full_page=True)
    watch.assert_clean()


def test_batch_zip_fills_table_and_downloads(web, live_service, whales, street_any, tmp_path, screenshots):
    page, watch = web
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in [*whales[:3], street_any]:
            zf.write(p, p.name)
        zf.writestr("notes.txt", "not an image")
    _open(page, live_service, "#batch")
    _set_key(page, live_service)
    page.set_input_files("#batch-file", str(archive))
    page.wait_for_selector("#batch-results:not([hidden])", timeout=120_000)
    rows = page.locator("#batch-table tbody tr")
    assert rows.count() == 5
    files = page.locator("#batch-table tbody td:first-child").all_inner_texts()
    assert {p.name for p in [*whales[:3], street_any]} <= set(files)
    assert page.locator("#batch-chart svg rect.bar").count() >= 1
    page.screenshot(path=str(screenshots / "08-batch.png"), full_page=True)

    # a header sorts, a second click reverses; then filter to accepted photos
    header = page.locator("#batch-table th[data-key=cetacean]")
    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    ascending = page.locator("#batch-table tbody td:first-child").all_inner_texts()
    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    assert page.locator("#batch-table tbody td:first-child").all_inner_texts() == ascending[::-1]
    page.select_option("#batch-status", "accepted")
    accepted = int(page.inner_text("#batch-summary div:nth-child(2) dd"))
    assert rows.count() == accepted
    page.select_option("#batch-status", "")

    with page.expect_download() as dl:
        page.click("#batch-csv")
    table = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert {r["image"] for r in table} == set(files)
    with page.expect_download() as dl:
        page.click("#export-dwca")
    with zipfile.ZipFile(dl.value.path()) as zf:
        assert any(n.endswith(".xml") for n in zf.namelist()), zf.namelist()
    watch.assert_clean()


def test_phone_width_has_no_horizontal_scroll(phone, live_service, screenshots):
    page, watch = phone
    for hash_, name in (("#identify", "09-phone-identify.png"), ("#batch", "10-phone-batch.png"),
                        ("#catalog", "11-phone-catalog.png")):
        _open(page, live_service, hash_)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{hash_} scrolls sideways by {overflow}px at 390px"
        page.screenshot(path=str(screenshots / name), full_page=True)
    watch.assert_clean()
