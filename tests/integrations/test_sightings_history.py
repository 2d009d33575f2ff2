"""An individual's sighting history: `Store.list_sightings` (same answer on SQLite, PostgreSQL and in
memory) and its CSV / Darwin Core exports with the location-privacy rule applied."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import replace
from datetime import timedelta

import pytest
from test_store import T0, make_image

from integrations.sightings import iter_sightings_csv, write_sightings_dwca
from whales_identify.records.location_privacy import LocationPolicy, visible_sighting
from whales_identify.records.store import InMemoryStore, Sighting


def three_sightings_and_a_stranger():
    """hw1 seen three times (one photo without a date), hw2 once, and one hw1 photo of another model."""
    seen = [Sighting(observed_at=T0 - timedelta(days=d), latitude=lat, longitude=lon, location=place,
                     observer="A. Biologist")
            for d, lat, lon, place in ((30, 48.512345, -123.1, "Haro Strait"),
                                       (2, 48.7, -123.4, "Boundary Pass"))]
    return [make_image(1, "hw1", sighting=seen[1]), make_image(2, "hw1", sighting=seen[0]),
            make_image(3, "hw1", sighting=Sighting(latitude=49.0, longitude=-124.0)),
            make_image(4, "hw2"), make_image(5, "hw1", model_id="m.other")]


@pytest.mark.parametrize("backend", ["sql", "memory"])
def test_list_sightings_oldest_first_of_one_individual(store, backend):
    target = store if backend == "sql" else InMemoryStore()
    target.add_catalog_images(three_sightings_and_a_stranger())
    got = target.list_sightings("hw1", "m.a")
    # by observation time; the undated photo by its enrolment time (T0 + 3 s, the latest)
    assert [s.image_id for s in got] == ["img2", "img1", "img3"]
    assert got[0].sighting.location == "Haro Strait" and got[0].sighting.latitude == pytest.approx(48.512345)
    assert got[2].sighting.observed_at is None and got[2].when == got[2].created_at
    assert {s.image_id for s in target.list_sightings("hw1")} == {"img1", "img2", "img3", "img5"}
    assert target.list_sightings("nobody") == []


def history(authorised: bool):
    store = InMemoryStore()
    store.add_catalog_images(three_sightings_and_a_stranger())
    policy = LocationPolicy.parse("0.1")
    return [(r, visible_sighting(r.sighting, policy, authorised)) for r in store.list_sightings("hw1", "m.a")]


def test_csv_public_view_is_generalised_and_formula_safe():
    rows = list(csv.DictReader(io.StringIO("".join(iter_sightings_csv(history(False))))))
    assert [r["image_id"] for r in rows] == ["img2", "img1", "img3"]
    assert rows[0]["latitude"] == "48.55" and rows[0]["longitude"] == "-123.05"  # the 0.1 degree cell centre
    assert rows[0]["position_precision"] == "0.1" and rows[0]["location"] == "" and rows[0]["observer"] == ""
    keyed = list(csv.DictReader(io.StringIO("".join(iter_sightings_csv(history(True))))))
    assert keyed[0]["latitude"] == "48.512345" and keyed[0]["location"] == "Haro Strait"
    assert keyed[0]["position_precision"] == "exact"
    evil = [(replace(r, filename="=HYPERLINK(1)"), v) for r, v in history(True)]
    assert list(csv.DictReader(io.StringIO("".join(iter_sightings_csv(evil)))))[0]["filename"].startswith("'")


def test_darwin_core_archive_fills_organism_id():
    buf = io.BytesIO()
    assert write_sightings_dwca(history(False), buf, base_url="https://whales.example") == 3
    with zipfile.ZipFile(buf) as archive:
        assert {"occurrence.txt", "meta.xml", "eml.xml"} <= set(archive.namelist())
        lines = archive.read("occurrence.txt").decode().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert {r["organismID"] for r in rows} == {"hw1"}
    assert rows[0]["occurrenceID"] == "img2" and rows[0]["decimalLatitude"] == "48.55"
    assert rows[0]["recordedBy"] == "" and rows[0]["locality"] == ""
    assert rows[0]["associatedMedia"] == "https://whales.example/v1/images/img2/thumbnail"
    assert rows[0]["scientificName"] == "Orcinus orca"
    if "dataGeneralizations" in header:  # the columns the location-privacy rule adds
        assert "0.1 degree" in rows[0]["dataGeneralizations"]
        assert int(rows[0]["coordinateUncertaintyInMeters"]) > 5000
