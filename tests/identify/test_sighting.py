"""Sighting metadata from EXIF (a real JPEG built with PIL) and validation of uploaded fields."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from whales_identify.records.sighting import (
    InvalidSightingError,
    merge_sightings,
    read_exif_sighting,
    validate_sighting,
)
from whales_identify.records.store import Sighting
from whales_identify.species import SPECIES, species_info


def jpeg_with_exif(taken: str | None = "2023:07:14 10:20:30", offset: str | None = "+02:00",
                   gps: dict | None = None) -> bytes:
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[36867] = taken
        if offset:
            exif.get_ifd(0x8769)[36881] = offset
    if gps:
        exif.get_ifd(0x8825).update(gps)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 60, 120)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def dms(degrees: int, minutes: int, seconds: float) -> tuple[IFDRational, ...]:
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 100), 100)


# Hervey Bay, Queensland: 25° 17' 24.6" S, 152° 52' 30" E
HERVEY_BAY = {1: "S", 2: dms(25, 17, 24.6), 3: "E", 4: dms(152, 52, 30.0)}


def test_exif_date_and_gps_with_hemisphere_refs():
    found = read_exif_sighting(jpeg_with_exif(gps=HERVEY_BAY))
    assert found.observed_at == datetime(2023, 7, 14, 8, 20, 30, tzinfo=UTC)  # +02:00 -> UTC
    assert found.latitude == pytest.approx(-(25 + 17 / 60 + 24.6 / 3600), abs=1e-6)
    assert found.longitude == pytest.approx(152 + 52 / 60 + 30 / 3600, abs=1e-6)
    assert found.location is None and found.observer is None


def test_exif_west_north_and_time_without_zone_is_utc():
    gps = {1: "N", 2: dms(41, 30, 0), 3: "W", 4: dms(70, 40, 12)}
    found = read_exif_sighting(jpeg_with_exif(offset=None, gps=gps))
    assert found.observed_at == datetime(2023, 7, 14, 10, 20, 30, tzinfo=UTC)
    assert found.latitude == pytest.approx(41.5) and found.longitude == pytest.approx(-70.67, abs=1e-6)


def test_gps_time_stamp_is_used_when_the_camera_gave_no_zone():
    gps = {**HERVEY_BAY, 29: "2023:07:14", 7: (IFDRational(0, 1), IFDRational(5, 1), IFDRational(9, 1))}
    found = read_exif_sighting(jpeg_with_exif(offset=None, gps=gps))
    assert found.observed_at == datetime(2023, 7, 14, 0, 5, 9, tzinfo=UTC)


TAKEN = datetime(2023, 7, 14, 8, 20, 30, tzinfo=UTC)


@pytest.mark.parametrize(("data", "observed_at"), [
    (b"", None),
    (b"not an image at all", None),
    (b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage\xff\xd9", None),
    (jpeg_with_exif(taken=None), None),
    (jpeg_with_exif(taken="yesterday-ish"), None),
    (jpeg_with_exif(taken="3025:01:01 00:00:00"), None),  # implausible dates are dropped
    (jpeg_with_exif(gps={1: "Q", 2: dms(10, 0, 0), 3: "E", 4: dms(10, 0, 0)}), TAKEN),  # bad ref
    (jpeg_with_exif(gps={1: "N", 2: dms(95, 0, 0), 3: "E", 4: dms(10, 0, 0)}), TAKEN),  # out of range
    (jpeg_with_exif(gps={1: "N", 2: (IFDRational(1, 0),), 3: "E", 4: dms(10, 0, 0)}), TAKEN),  # x/0
    (jpeg_with_exif(gps={1: "N", 2: dms(10, 0, 0)}), TAKEN),  # latitude without longitude
])
def test_broken_or_absent_exif_never_raises(data, observed_at):
    assert read_exif_sighting(data) == Sighting(observed_at=observed_at)


def test_png_without_exif():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    assert read_exif_sighting(buffer.getvalue()) == Sighting()


def test_validate_accepts_good_values_and_normalises():
    got = validate_sighting(latitude="-33.86", longitude=151.2, observed_at="2024-03-01T09:30:00+11:00",
                            location="  Sydney Harbour ", observer="")
    assert got == Sighting(observed_at=datetime(2024, 2, 29, 22, 30, tzinfo=UTC), latitude=-33.86,
                           longitude=151.2, location="Sydney Harbour", observer=None)
    assert validate_sighting() == Sighting()
    assert validate_sighting(observed_at="2024-03-01").observed_at == datetime(2024, 3, 1, tzinfo=UTC)
    assert validate_sighting(observed_at="2024-03-01T00:00:00Z").observed_at.tzinfo is not None
    assert validate_sighting(latitude=90, longitude=-180).latitude == 90.0


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"latitude": 999, "longitude": 0}, "latitude", "outside [-90, 90]"),
    ({"latitude": 0, "longitude": -180.5}, "longitude", "outside [-180, 180]"),
    ({"latitude": "nan", "longitude": 0}, "latitude", "outside"),
    ({"latitude": "north", "longitude": 0}, "latitude", "not a number"),
    ({"latitude": 10}, "longitude", "together"),
    ({"longitude": 10}, "latitude", "together"),
    ({"observed_at": "3025-01-01"}, "observed_at", "future"),
    ({"observed_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}, "observed_at", "future"),
    ({"observed_at": "1850-06-01"}, "observed_at", "before 1900"),
    ({"observed_at": "last tuesday"}, "observed_at", "ISO 8601"),
    ({"location": "x" * 10_000_000}, "location", "at most 200"),
    ({"observer": "a" * 201}, "observer", "at most 200"),
    ({"observer": "bad\x00name"}, "observer", "control characters"),
])
def test_validate_rejects_bad_values_with_a_clear_message(kwargs, field, words):
    with pytest.raises(InvalidSightingError, match=field) as caught:
        validate_sighting(**kwargs)
    assert isinstance(caught.value, ValueError) and caught.value.field == field
    assert words in str(caught.value)
    assert len(str(caught.value)) < 200


def test_merge_prefers_the_uploader_and_keeps_position_pairs():
    exif = Sighting(observed_at=datetime(2023, 1, 1, tzinfo=UTC), latitude=1.0, longitude=2.0)
    uploaded = Sighting(observed_at=datetime(2024, 1, 1, tzinfo=UTC), location="Bay", observer="Me")
    merged = merge_sightings(uploaded, exif)
    assert merged == Sighting(datetime(2024, 1, 1, tzinfo=UTC), 1.0, 2.0, "Bay", "Me")
    assert merge_sightings(Sighting(latitude=5.0, longitude=6.0), exif).latitude == 5.0
    assert merge_sightings(Sighting(), exif) == exif


def test_every_species_has_a_binomial_or_genus_latin_name():
    for key, info in SPECIES.items():
        assert info.key == key
        words = info.scientific_name.split()
        assert words[0][0].isupper() and words[0][1:].islower()
        assert len(words) == (1 if info.taxon_rank == "genus" else 2), key
        if len(words) == 2:
            assert words[1].islower()
    assert species_info("humpback_whale").scientific_name == "Megaptera novaeangliae"
    assert species_info("Humpback Whale").scientific_name == "Megaptera novaeangliae"
    assert species_info("kiler_whale").scientific_name == "Orcinus orca"
    assert species_info("bottlenose_dolpin").scientific_name == "Tursiops truncatus"
    assert species_info("north_atlantic_right_whale").scientific_name == "Eubalaena glacialis"
    assert species_info("globis").scientific_name == "Globicephala"
    unknown = species_info("sea_monster")
    assert unknown.scientific_name == "Cetacea" and unknown.taxon_rank == "infraorder"
    assert species_info(None).scientific_name == "Cetacea"
