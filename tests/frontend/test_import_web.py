"""The first five minutes in a browser: the empty-catalog notice, a catalog import (ZIP + CSV) with its
progress bar and per-row problems, the CSV template, a new photo matched afterwards; and the reference
project's web client calls against `/reference`.

Runs before test_web.py (file order), on the session's live service while its catalog is still empty.
Photos are NOAA right-whale head crops read in place from the shared data set.
"""

from __future__ import annotations

import base64
import io
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

N_INDIVIDUALS = 12
PREFIX = f"qs{uuid.uuid4().hex[:4]}_"  # unique ids, so reruns against one service do not clash


def _catalog_images(live_service) -> int:
    return httpx.get(f"{live_service.url}/v1/models", timeout=30).json()["catalog"]["images"]


@pytest.fixture(scope="module")
def right_whales(data_dir, manifest) -> list[tuple[str, list[Path]]]:
    """(individual id, [photos]) for right whales with at least two head crops on disk."""
    by_id: dict[str, list[Path]] = {}
    for row in manifest:
        if row.relpath.startswith("positives/noaa_right_whale_headcrops/") and row.individual_id:
            path = data_dir / row.relpath
            if path.is_file():
                by_id.setdefault(row.individual_id, []).append(path)
    found = [(k, sorted(v)) for k, v in sorted(by_id.items()) if len(v) >= 2][:N_INDIVIDUALS]
    if len(found) < N_INDIVIDUALS:
        pytest.skip("the shared right-whale head crops are not there")
    return found


def _open(page, live_service, hash_: str = "") -> None:
    page.goto(f"{live_service.url}/{hash_}")
    page.wait_for_selector('[role="tab"][aria-selected="true"]')


def test_empty_catalog_is_explained_then_an_import_fills_it(web, live_service, right_whales, tmp_path,
                                                           screenshots):
    page, watch = web
    _open(page, live_service)
    empty = _catalog_images(live_service) == 0
    if empty:  # a fresh service: the notice and the answer both say why and what to do
        expect(page.locator("#catalog-empty-notice")).to_be_visible()
        page.set_input_files("#identify-file", str(right_whales[0][1][1]))
        card = page.wait_for_selector("[data-testid=result-card]", timeout=90_000)
        text = card.inner_text()
        assert "the catalog is empty" in text and "species comes from the matching catalog" in text
        assert "Import" in text
        page.screenshot(path=str(screenshots / "20-empty-catalog.png"), full_page=True)

    # the sheet: the first photo of each whale, plus two rows a biologist might get wrong
    archive = tmp_path / "photos.zip"
    lines = ["filename,individual_id,species,date,latitude,longitude"]
    with zipfile.ZipFile(archive, "w") as zf:
        for ind, photos in right_whales:
            zf.write(photos[0], f"season/{photos[0].name}")
            day = len(lines) % 9 + 1
            lines.append(f"{photos[0].name},{PREFIX}{ind},north_atlantic_right_whale,2024-03-0{day},41.5,-69.9")
    lines.append(f"missing.jpg,{PREFIX}x,north_atlantic_right_whale,,,")
    lines.append(f"{right_whales[1][1][1].name},{PREFIX}y,north_atlantic_right_whale,,95,-69.9")
    sheet = tmp_path / "catalog.csv"
    sheet.write_text("\n".join(lines) + "\n")

    _open(page, live_service, "#catalog")
    expect(page.locator("#import-card")).to_be_visible()
    if empty:  # opened for the user while the catalog is empty
        page.wait_for_function("document.querySelector('#import-card').open")
    else:
        page.click("#import-card summary")
    with page.expect_download() as dl:
        page.click("#import-template")
    assert Path(dl.value.path()).read_text().splitlines()[0] == lines[0]
    page.set_input_files("#import-archive", str(archive))
    page.set_input_files("#import-csv", str(sheet))
    page.click("#import-start")
    page.wait_for_selector("#import-error .error")  # no key yet: asks for it
    assert "API key" in page.inner_text("#import-error")
    page.fill("#api-key", live_service.api_key)
    page.click("#key-form button[type=submit]")
    page.click("#import-start")
    summary = page.wait_for_selector("#import-summary", timeout=180_000)
    assert page.locator("#import-progress-bar").get_attribute("value") == "100"
    stats = dict(zip(page.locator("#import-summary dt").all_inner_texts(),
                     page.locator("#import-summary dd").all_inner_texts(), strict=True))
    assert stats["Rows"] == str(N_INDIVIDUALS + 2) and stats["Skipped"] == "2", summary.inner_text()
    assert int(stats["Enrolled"]) + int(stats["Already in the catalog"]) == N_INDIVIDUALS
    problems = page.locator("#import-problems tbody tr").all_inner_texts()
    assert len(problems) == 2
    assert problems[0].startswith(str(N_INDIVIDUALS + 2)) and "filename" in problems[0]
    assert "latitude" in problems[1] and "95" in problems[1]
    expect(page.locator("#catalog-empty-notice")).to_be_hidden()
    page.screenshot(path=str(screenshots / "21-catalog-import.png"), full_page=True)

    # a new photo of an imported whale is now matched: the first one the service itself matches top-1
    # (re-identification accuracy is measured by `whales evaluate`, not here)
    query = None
    for ind, photos in right_whales:
        r = httpx.post(f"{live_service.url}/v1/predict", timeout=120,
                       files={"file": (photos[1].name, photos[1].read_bytes())}).json()
        if r["individual_id"] == f"{PREFIX}{ind}":
            query = (ind, photos[1])
            break
    assert query is not None, "no imported right whale was matched top-1 by a second photo of it"
    _open(page, live_service, "#identify")
    page.set_input_files("#identify-file", str(query[1]))
    card = page.wait_for_selector("[data-testid=result-card]", timeout=90_000)
    text = card.inner_text()
    assert f"{PREFIX}{query[0]}" in text and "North Atlantic right whale" in text
    assert "the catalog is empty" not in text
    watch.assert_clean()


def test_reference_client_calls_work_unchanged(web, live_service, right_whales):
    """What the reference client's api.ts does, with its base URL pointed at `/reference`."""
    page, watch = web
    _open(page, live_service)
    photo = right_whales[0][1][1]
    _inject_zip(page, photo)
    answer = page.evaluate("""async ([b64, name]) => {
        const BASE = `${location.origin}/reference`;
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const single = new FormData();
        single.append('file', new File([bytes], name, { type: 'image/jpeg' }));
        let res = await fetch(`${BASE}/v1/predict-single`, { method: 'POST', body: single });
        if (!res.ok) throw new Error(await res.text());
        const one = await res.json();
        const { zipBase64 } = window.__zip;
        const zip = Uint8Array.from(atob(zipBase64), (c) => c.charCodeAt(0));
        const batch = new FormData();
        batch.append('archive', new File([zip], 'photos.zip', { type: 'application/zip' }));
        res = await fetch(`${BASE}/v1/predict-batch`, { method: 'POST', body: batch });
        if (!res.ok) throw new Error(await res.text());
        return { one, many: await res.json(), status: res.status };
    }""", [base64.b64encode(photo.read_bytes()).decode(), photo.name])
    one, many = answer["one"], answer["many"]
    fields = {"image_ind", "bbox", "class_animal", "id_animal", "probability", "mask", "is_cetacean",
              "cetacean_score", "rejected", "rejection_reason", "model_version", "candidates"}
    assert set(one) == fields and one["rejected"] is False and isinstance(one["probability"], float)
    assert answer["status"] == 200 and isinstance(many, list)
    assert [(d["image_ind"], d["rejection_reason"]) for d in many] == [
        (photo.name, None), ("broken.jpg", "corrupted_image")]
    assert all(set(d) == fields for d in many)
    watch.assert_clean()


def _inject_zip(page, photo: Path) -> None:
    """Put a ZIP (the photo, and a truncated copy of it) where the page script can read it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(photo, photo.name)
        zf.writestr("broken.jpg", photo.read_bytes()[:200])
    data = base64.b64encode(buf.getvalue()).decode()
    page.evaluate("(b64) => { window.__zip = { zipBase64: b64 }; }", data)


def test_no_keys_notice_follows_the_server(web, live_service):
    """The notice shows when `/v1/models` says writes are disabled (the answer of a server started
    without WHALES_API_KEYS, made here from the live answer) and stays hidden otherwise."""
    page, watch = web
    _open(page, live_service)
    page.wait_for_load_state("networkidle")
    expect(page.locator("#no-keys-notice")).to_be_hidden()

    def no_keys(route):
        body = httpx.get(f"{live_service.url}/v1/models", timeout=30).json()
        assert body["write_enabled"] is True
        route.fulfill(json={**body, "write_enabled": False})

    page.route("**/v1/models", no_keys)
    _open(page, live_service)
    expect(page.locator("#no-keys-notice")).to_be_visible()
    assert "WHALES_API_KEYS" in page.inner_text("#no-keys-notice")
    watch.assert_clean()
