"""`whales_identify.records.catalog_csv`: the one parser of a biologist's catalog spreadsheet."""

from __future__ import annotations

import pytest

from whales_identify.records.catalog_csv import CatalogCsvError, match_files, parse_catalog_csv, template_csv


def test_rows_and_sightings():
    sheet = parse_catalog_csv("\ufeffFilename,Individual ID,Species,Date,Lat,Lon,Location\n"
                              "a.jpg,hw_1,Humpback Whale,2024-07-02T10:15:00Z,64.1,-21.9,Faxaflói\n"
                              "b.jpg,hw_1,,,,,\n")
    assert sheet.columns["individual_id"] == "Individual ID" and sheet.columns["latitude"] == "Lat"
    a, b = sheet.rows
    assert (a.line, a.filename, a.individual_id, a.species) == (2, "a.jpg", "hw_1", "humpback_whale")
    assert a.sighting.latitude == 64.1 and a.sighting.location == "Faxaflói"
    assert a.sighting.observed_at.isoformat() == "2024-07-02T10:15:00+00:00"
    assert b.species == "unknown" and b.sighting.latitude is None and not sheet.problems


@pytest.mark.parametrize(("row", "column", "code"), [
    (",hw_1,beluga,,,", "filename", "missing_value"),
    ("a.jpg,,beluga,,,", "individual_id", "missing_value"),
    ("a.jpg,../etc,beluga,,,", "individual_id", "invalid_value"),
    ("a.jpg,hw_1,beluga,yesterday,,", "date", "invalid_value"),
    ("a.jpg,hw_1,beluga,1850-01-01,,", "date", "invalid_value"),
    ("a.jpg,hw_1,beluga,,91,0", "latitude", "invalid_value"),
    ("a.jpg,hw_1,beluga,,10,", "longitude", "invalid_value"),
    ("a.jpg,hw_1,beluga,,north,10", "latitude", "invalid_value"),
])
def test_each_bad_row_names_its_line_and_column(row, column, code):
    sheet = parse_catalog_csv("filename,individual_id,species,date,latitude,longitude\n"
                              "ok.jpg,hw_0,beluga,,,\n" + row + "\n")
    assert [r.filename for r in sheet.rows] == ["ok.jpg"]
    (problem,) = sheet.problems
    assert (problem.line, problem.column, problem.code) == (3, column, code), problem


def test_labels_duplicates_and_explicit_columns():
    sheet = parse_catalog_csv("relpath,label,individual_id,species\n"
                              "p/a.jpg,cetacean,rw_1,north_atlantic_right_whale\n"
                              "n/x.jpg,non_cetacean,,sea\n"
                              "p/a.jpg,cetacean,rw_1,north_atlantic_right_whale\n")
    assert [r.line for r in sheet.rows] == [2]
    assert [(p.line, p.code) for p in sheet.problems] == [(3, "not_cetacean"), (4, "duplicate_row")]
    sheet = parse_catalog_csv("Photo,Whale\na.jpg,w1\n", {"filename": "photo", "individual_id": "Whale"})
    assert sheet.rows[0].individual_id == "w1"


@pytest.mark.parametrize("text", ["", "photo,animal\na.jpg,1\n", "filename\na.jpg\n"])
def test_unusable_files_raise_with_the_header(text):
    with pytest.raises(CatalogCsvError):
        parse_catalog_csv(text)
    with pytest.raises(CatalogCsvError, match="not in the header"):
        parse_catalog_csv("a,b\n1,2\n", {"filename": "photo"})


def test_match_files_exact_then_unique_base_name():
    sheet = parse_catalog_csv("filename,individual_id\nA.JPG,w1\nsub/b.jpg,w2\nc.jpg,w3\nd.jpg,w4\n")
    pairs, problems = match_files(sheet.rows, ["photos/a.jpg", "sub/b.jpg", "x/c.jpg", "y/c.jpg"])
    assert [(r.individual_id, name) for r, name in pairs] == [("w1", "photos/a.jpg"), ("w2", "sub/b.jpg")]
    assert [(p.line, p.code) for p in problems] == [(4, "ambiguous_file"), (5, "file_not_found")]


def test_template_parses_cleanly():
    sheet = parse_catalog_csv(template_csv())
    assert len(sheet.rows) == 2 and not sheet.problems
