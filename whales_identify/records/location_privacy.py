"""What a caller may see of where an animal was photographed.

Positions of endangered animals (a North Atlantic right whale is one of ~370) are sensitive data.
Following GBIF's practice for sensitive species occurrences (Chapman 2020, "Current Best Practices
for Generalizing Sensitive Species Occurrence Data"), positions shown to the public are either
generalised to a grid of `precision` degrees (the centre of the cell; 0.1 degree is about 11 km) or
withheld, and the free-text place and observer name, which can locate a sighting as precisely as
coordinates, are withheld. Callers with a key (researchers, the catalog's curators) see everything.

`visible_sighting(sighting, policy, authorised)` applies the rule; the answer also carries what a
Darwin Core export needs (`dataGeneralizations`, `coordinateUncertaintyInMeters`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from whales_identify.records.store import Sighting

METRES_PER_DEGREE = 111_320.0  # one degree of latitude (and of longitude at the equator)
WITHHELD = "withheld"
EXACT = "exact"


@dataclass(frozen=True)
class LocationPolicy:
    """How positions are shown to callers without a key.

    Attributes:
        precision: grid size in degrees for public positions; None withholds them; 0 shows them
            exactly (only for data that is not sensitive).
        public_details: show the place text and the observer's name to the public too.
    """

    precision: float | None = 0.1
    public_details: bool = False

    def __post_init__(self) -> None:
        if self.precision is not None and not (0.0 <= self.precision <= 180.0):
            raise ValueError(f"location precision must be between 0 and 180 degrees, not {self.precision}")

    @classmethod
    def parse(cls, value: str | float | None, public_details: bool = False) -> LocationPolicy:
        """`"withheld"` (or None/"none"), `"exact"`, or a grid size in degrees such as `"0.1"`."""
        if value is None:
            return cls(None, public_details)
        text = str(value).strip().lower()
        if text in (WITHHELD, "none", ""):
            return cls(None, public_details)
        if text in (EXACT, "full"):
            return cls(0.0, public_details)
        try:
            degrees = float(text)
        except ValueError:
            raise ValueError(f"location precision {value!r} is not 'withheld', 'exact' or degrees "
                             f"(e.g. 0.1)") from None
        if not math.isfinite(degrees) or degrees <= 0:
            raise ValueError(f"location precision {value!r} must be a positive number of degrees")
        return cls(degrees, public_details)

    def describe(self) -> str:
        """`withheld`, `exact` or the grid size (for `/v1/...` answers and the web page)."""
        if self.precision is None:
            return WITHHELD
        return EXACT if self.precision == 0 else f"{self.precision:g}"


@dataclass(frozen=True)
class VisibleSighting:
    """A sighting as one caller may see it.

    Attributes:
        sighting: the sighting with coordinates generalised or removed and details withheld as needed.
        generalised: whether anything was changed for this caller.
        precision: what the coordinates are: "exact", "withheld" or the grid size in degrees.
        data_generalizations: Darwin Core `dataGeneralizations` text (None when nothing changed).
        coordinate_uncertainty_m: Darwin Core `coordinateUncertaintyInMeters` added by generalising
            (None when the coordinates are exact or absent).
    """

    sighting: Sighting
    generalised: bool
    precision: str
    data_generalizations: str | None = None
    coordinate_uncertainty_m: int | None = None


def snap(value: float, precision: float, low: float, high: float) -> float:
    """The centre of the `precision`-degree grid cell holding `value`, kept inside [low, high]."""
    # round() before floor(): 0.3 / 0.1 is 2.9999999999999996 in binary floating point
    index = math.floor(round(value / precision, 9))
    half = precision / 2
    return round(min(max((index + 0.5) * precision, low + half), high - half), 9)


def cell_uncertainty_m(precision: float) -> int:
    """Distance from a cell's centre to its corner at the equator (the largest error), in metres."""
    return int(math.ceil(math.hypot(precision / 2, precision / 2) * METRES_PER_DEGREE))


def visible_sighting(sighting: Sighting, policy: LocationPolicy, authorised: bool) -> VisibleSighting:
    """`sighting` as a caller may see it: everything with a key, the public view without one."""
    if authorised:
        return VisibleSighting(sighting, False, EXACT)
    notes: list[str] = []
    updates: dict[str, object] = {}
    uncertainty: int | None = None
    has_position = sighting.latitude is not None and sighting.longitude is not None
    if has_position and policy.precision is None:
        updates.update(latitude=None, longitude=None)
        notes.append("coordinates withheld (sensitive species data)")
    elif has_position and policy.precision:
        assert sighting.latitude is not None and sighting.longitude is not None
        updates.update(latitude=snap(sighting.latitude, policy.precision, -90.0, 90.0),
                       longitude=snap(sighting.longitude, policy.precision, -180.0, 180.0))
        uncertainty = cell_uncertainty_m(policy.precision)
        notes.append(f"coordinates generalised to the centre of a {policy.precision:g} degree grid cell")
    if not policy.public_details:
        withheld = [name for name, value in (("locality", sighting.location),
                                             ("recordedBy", sighting.observer)) if value]
        if withheld:
            updates.update(location=None, observer=None)
            notes.append(" and ".join(withheld) + " withheld")
    if not updates:
        return VisibleSighting(sighting, False, policy.describe())
    return VisibleSighting(replace(sighting, **updates), True, policy.describe(),  # type: ignore[arg-type]
                           "; ".join(notes), uncertainty)


def apply_policy(sighting: Sighting, policy: LocationPolicy | None) -> VisibleSighting:
    """For exports: the public view under `policy`, or the exact sighting when `policy` is None
    (an export for key holders)."""
    return visible_sighting(sighting, policy or LocationPolicy(), authorised=policy is None)
