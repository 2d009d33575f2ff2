"""The public view of a sighting: generalised or withheld positions, withheld names (issue 19, item 1)."""

from __future__ import annotations

import pytest

from whales_identify.records.location_privacy import (
    LocationPolicy,
    cell_uncertainty_m,
    snap,
    visible_sighting,
)
from whales_identify.records.store import Sighting

EXACT = Sighting(latitude=41.123456, longitude=-70.654321, location="Cape Cod Bay", observer="A. Observer")


def test_public_view_is_snapped_to_the_cell_centre_and_names_are_withheld():
    seen = visible_sighting(EXACT, LocationPolicy(0.1), authorised=False)
    assert (seen.sighting.latitude, seen.sighting.longitude) == (41.15, -70.65)
    assert seen.sighting.location is None and seen.sighting.observer is None
    assert seen.generalised and seen.precision == "0.1"
    assert "0.1 degree" in seen.data_generalizations and "recordedBy" in seen.data_generalizations
    # the corner of a 0.1 degree cell is ~7.9 km from its centre at the equator
    assert seen.coordinate_uncertainty_m == cell_uncertainty_m(0.1) == 7872


def test_every_point_of_a_cell_gives_the_same_public_position():
    cells = {snap(41.1 + i * 0.000999, 0.1, -90, 90) for i in range(100)}
    assert cells == {41.15}
    assert snap(0.3, 0.1, -90, 90) == 0.35  # 0.3 / 0.1 is 2.999... in floating point
    assert snap(90.0, 0.1, -90, 90) == 89.95 and snap(180.0, 1.0, -180, 180) == 179.5


def test_withheld_removes_the_position():
    seen = visible_sighting(EXACT, LocationPolicy.parse("withheld"), authorised=False)
    assert seen.sighting.latitude is None and seen.sighting.longitude is None
    assert seen.coordinate_uncertainty_m is None and "withheld" in seen.data_generalizations


def test_a_key_sees_everything():
    seen = visible_sighting(EXACT, LocationPolicy.parse("withheld"), authorised=True)
    assert seen.sighting == EXACT and not seen.generalised and seen.data_generalizations is None


def test_exact_policy_and_public_details():
    seen = visible_sighting(EXACT, LocationPolicy.parse("exact", public_details=True), authorised=False)
    assert seen.sighting == EXACT and not seen.generalised


def test_a_sighting_without_position_keeps_its_time():
    bare = Sighting(observer="someone")
    seen = visible_sighting(bare, LocationPolicy(0.1), authorised=False)
    assert seen.sighting == Sighting() and seen.coordinate_uncertainty_m is None


@pytest.mark.parametrize("bad", ["-1", "0", "abc", "nan", "200"])
def test_bad_precision_is_refused(bad):
    with pytest.raises(ValueError):
        LocationPolicy.parse(bad)
