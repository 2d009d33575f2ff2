"""Exports: CSV that spreadsheets cannot execute, JSON lines, and a Darwin Core Archive read back
with python-dwca-reader; the `whales export` command on a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from dwca.read import DwCAReader
from typer.testing import CliRunner

from integrations.base import open_store
from integrations.darwin_core import OCCURRENCE_TERMS
from integrations.exports import CSV_COLUMNS, csv_safe, iter_records, write_csv, write_dwca, write_jsonl
from whales_cli import app
from whales_identify.records.store import InMemoryStore, PredictionRecord, Sighting
from whales_identify.species import SPECIES, species_info

DWC = "http://rs.tdwg.org/dwc/terms/"
T0 = datetime(2025, 8, 1, 6, 0, tzinfo=UTC)


def record(i: int, **changes) -> PredictionRecord:
    base = PredictionRecord(
        prediction_id=f"p{i:03d}", image_sha256="c" * 64, filename=f"IMG_{i}.jpg", rejected=False,
        rejection_reason=None, cetacean_score=0.97, gate_backend="embedded", gate_version="v2",
        species="humpback_whale", individual_id=f"HW-{i}", is_new_individual=False, probability=0.81,
        candidates=[{"individual_id": f"HW-{i}", "species": "humpback_whale", "score": 0.81}],
        model_version="effb4_arcface.happywhale", created_at=T0 + timedelta(hours=i),
        sighting=Sighting(observed_at=T0 - timedelta(days=2), latitude=-25.29, longitude=152.875,
                          location="Hervey Bay", observer="Survey team"),
    )
    return replace(base, **changes)


HOSTILE = [
    record(1, filename="=HYPERLINK(\"http://evil\",\"x\").jpg",
           sighting=Sighting(observed_at=T0 - timedelta(days=2), latitude=-10.0, longitude=-70.5,
                             location="+cmd|' /C calc'!A0", observer="@SUM(1)")),
    record(2, filename="-2+3.jpg", rejection_reason="\tTAB", rejected=True, species=None, individual_id=None,
           is_new_individual=None, probability=None, candidates=[]),
    record(3, filename="\rcr.jpg", sighting=Sighting(location="normal, with comma\nand newline")),
]


def test_csv_neutralises_formulas_but_not_numbers():
    assert csv_safe("=1+1") == "'=1+1" and csv_safe("plain") == "plain" and csv_safe(-70.5) == -70.5
    buffer = io.StringIO(newline="")
    assert write_csv(HOSTILE, buffer) == 3
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue(), newline="")))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 3
    for row in rows:
        for column, value in row.items():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), (column, value)
            if value.startswith("-"):
                float(value)  # only numbers may start with a minus sign
    assert rows[0]["filename"] == "'=HYPERLINK(\"http://evil\",\"x\").jpg"
    assert rows[0]["location"] == "'+cmd|' /C calc'!A0" and rows[0]["observer"] == "'@SUM(1)"
    assert rows[0]["longitude"] == "-70.5" and rows[0]["scientific_name"] == "Megaptera novaeangliae"
    assert rows[1]["filename"] == "'-2+3.jpg" and rows[1]["rejection_reason"] == "'\tTAB"
    assert rows[1]["rejected"] == "true" and rows[1]["species"] == ""
    assert rows[2]["filename"] == "'\rcr.jpg" and rows[2]["location"] == "normal, with comma\nand newline"
    assert json.loads(rows[0]["candidates"])[0]["individual_id"] == "HW-1"


def test_empty_csv_has_a_header():
    buffer = io.StringIO()
    assert write_csv([], buffer) == 0
    assert buffer.getvalue().strip() == ",".join(CSV_COLUMNS)


def test_jsonl_is_one_complete_object_per_line():
    buffer = io.StringIO()
    assert write_jsonl(HOSTILE, buffer) == 3
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["prediction_id"] == "p001" and first["longitude"] == -70.5
    assert first["created_at"] == "2025-08-01T07:00:00+00:00"
    assert first["candidates"] == HOSTILE[0].candidates and first["rejected"] is False
    assert json.loads(lines[1])["scientific_name"] is None


def make_archive(tmp_path, records, base_url="https://whales.example.org"):
    path = tmp_path / "occurrences.zip"
    count = write_dwca(records, path, base_url=base_url)
    return path, count


def test_darwin_core_archive_reads_back_with_a_dwc_reader(tmp_path):
    reviewed = record(4, review_state="confirmed", reviewer_decision={"individual_id": "HW-77"},
                      reviewed_at=T0 + timedelta(days=3))
    new = record(5, is_new_individual=True, individual_id="new_5", species="killer_whale",
                 sighting=Sighting())
    excluded = [record(6, rejected=True, rejection_reason="not_cetacean"),
                record(7, review_state="not_cetacean", reviewer_decision={})]
    path, count = make_archive(tmp_path, [HOSTILE[0], reviewed, new, *excluded])
    assert count == 3
    with DwCAReader(str(path)) as archive:
        assert archive.descriptor.core.type == DWC + "Occurrence"
        assert archive.metadata is not None  # eml.xml parsed
        rows = {row.id: row.data for row in archive}
    assert set(rows) == {"p001", "p004", "p005"}  # rejected and not_cetacean are not occurrences
    first = rows["p001"]
    assert {t[len(DWC):] for t in first} == set(OCCURRENCE_TERMS)
    assert first[DWC + "basisOfRecord"] == "MachineObservation"
    assert first[DWC + "scientificName"] == "Megaptera novaeangliae"
    assert first[DWC + "vernacularName"] == "Humpback whale"
    assert first[DWC + "organismID"] == "HW-1"
    assert first[DWC + "eventDate"] == "2025-07-30T06:00:00Z"
    assert float(first[DWC + "decimalLatitude"]) == -10.0 and float(first[DWC + "decimalLongitude"]) == -70.5
    assert first[DWC + "identificationVerificationStatus"] == "unverified"
    assert first[DWC + "associatedMedia"] == "https://whales.example.org/v1/predictions/p001/image"
    assert rows["p004"][DWC + "identificationVerificationStatus"] == "verified"
    assert rows["p004"][DWC + "organismID"] == "HW-77"  # the reviewer's decision wins
    assert rows["p005"][DWC + "scientificName"] == "Orcinus orca"
    assert rows["p005"][DWC + "organismID"] == "" and rows["p005"][DWC + "decimalLatitude"] == ""
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["eml.xml", "meta.xml", "multimedia.txt", "occurrence.txt"]
        eml = z.read("eml.xml").decode()
        assert "eml://ecoinformatics.org/eml-2.1.1" in eml and "<title" in eml


def test_every_supported_species_exports_its_latin_name(tmp_path):
    records = [record(i, species=key, prediction_id=f"s{i}") for i, key in enumerate(sorted(SPECIES))]
    path, count = make_archive(tmp_path, records, base_url=None)
    assert count == len(SPECIES)
    with DwCAReader(str(path)) as archive:
        names = {row.id: row.data[DWC + "scientificName"] for row in archive}
        media = {row.data[DWC + "associatedMedia"] for row in archive}
    for i, key in enumerate(sorted(SPECIES)):
        assert names[f"s{i}"] == species_info(key).scientific_name != "Cetacea"
    assert media == {""}


def test_tabs_and_newlines_cannot_break_occurrence_rows(tmp_path):
    nasty = record(1, sighting=Sighting(location="a\tb\nc\r\nd", observer="x\ty"))
    path, _ = make_archive(tmp_path, [nasty])
    with DwCAReader(str(path)) as archive:
        (row,) = list(archive)
    assert row.data[DWC + "locality"] == "a b c d" and row.data[DWC + "recordedBy"] == "x y"


def test_iter_records_pages_through_any_store():
    store = InMemoryStore()
    for i in range(7):
        store.save_prediction(record(i))
    assert [r.prediction_id for r in iter_records(store, page_size=3)] == [f"p{i:03d}" for i in range(7)]
    assert len(list(iter_records(store, since=T0 + timedelta(hours=5), page_size=2))) == 2


@pytest.fixture
def filled_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
    for r in (*HOSTILE, record(4), record(5)):
        store.save_prediction(r)
    store.close()
    return url


def test_cli_export_csv_to_stdout_since(filled_db):
    result = CliRunner().invoke(app, ["export", "--db", filled_db, "--format", "csv",
                                      "--since", "2025-08-01T09:00:00Z"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["prediction_id"] for r in rows] == ["p003", "p004", "p005"]


def test_cli_export_jsonl_and_dwca_files(filled_db, tmp_path):
    out = tmp_path / "all.jsonl"
    result = CliRunner().invoke(app, ["export", "--db", filled_db, "--format", "jsonl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 5
    archive = tmp_path / "all.zip"
    result = CliRunner().invoke(app, ["export", "--db", filled_db, "--format", "dwca", "--output",
                                      str(archive), "--base-url", "http://localhost:8000"])
    assert result.exit_code == 0, result.output
    with DwCAReader(str(archive)) as dwca:
        assert len(list(dwca)) == 4  # p002 was rejected


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "dwca"], "--output"),
    (["--since", "yesterday"], "ISO 8601"),
    (["--format", "xml"], "xml"),
])
def test_cli_export_errors(filled_db, args, message):
    result = CliRunner().invoke(app, ["export", "--db", filled_db, *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_export_unknown_database_scheme():
    result = CliRunner().invoke(app, ["export", "--db", "oracle://x/y"])
    assert result.exit_code == 2 and "unsupported database URL" in result.output
