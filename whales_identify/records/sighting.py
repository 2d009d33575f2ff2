"""Sighting metadata: read from a photo's EXIF, or validated from what the uploader typed.

`read_exif_sighting` never raises: a photo with broken EXIF simply has no sighting metadata.
`validate_sighting` raises `InvalidSightingError` (a `ValueError`) with a message that names the
field; the service answers 422 with it and stores nothing.
"""

from __future__ import annotations

import io
import math
import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from whales_identify.errors import WhalesError
from whales_identify.images import ExifTags
from whales_identify.records.store import Sighting

MAX_TEXT_LENGTH = 200
EARLIEST_OBSERVATION = datetime(1900, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)  # clocks and time zones of field cameras are often off

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 36867
_OFFSET_TIME_ORIGINAL = 36881
_DATETIME = 306
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_TIME, _GPS_DATE = 7, 29


class InvalidSightingError(WhalesError, ValueError):
    """Sighting metadata given with an upload is out of range or malformed."""

    code = "invalid_sighting"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# ---------------------------------------------------------------------------------------------- EXIF


def read_exif_sighting(data: bytes) -> Sighting:
    """Date taken and GPS position from a photo's EXIF; empty where absent or unreadable.

    For a photo decoded already, `sighting_from_exif(decoded.exif)` reads the same without opening
    the bytes again.

    Args:
        data: the encoded image (JPEG, PNG, TIFF, WebP...).

    Returns:
        A `Sighting` with whatever could be read; never raises.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                exif = image.getexif()
                tags = ExifTags(dict(exif), dict(exif.get_ifd(_EXIF_IFD)), dict(exif.get_ifd(_GPS_IFD)))
    except Exception:
        return Sighting()
    return sighting_from_exif(tags)


def sighting_from_exif(tags: ExifTags) -> Sighting:
    """Date taken and GPS position from EXIF tags already read (`whales_identify.images.decode_image`).

    The time is DateTimeOriginal with OffsetTimeOriginal when the camera wrote one, else the GPS
    time stamp (always UTC), else DateTimeOriginal read as UTC. Out-of-range values are dropped.
    Never raises.
    """
    main, sub, gps = tags.main, tags.photo, tags.gps
    latitude = _safe(lambda: _gps_coordinate(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "NS", 90.0))
    longitude = _safe(lambda: _gps_coordinate(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "EW", 180.0))
    if latitude is None or longitude is None:
        latitude = longitude = None
    observed_at = _safe(lambda: _exif_time(main, sub, gps))
    if observed_at is not None and not _plausible_time(observed_at):
        observed_at = None
    return Sighting(observed_at=observed_at, latitude=latitude, longitude=longitude)


def _safe(read: Any) -> Any:
    try:
        return read()
    except Exception:
        return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip("\x00 ").strip()


def _gps_coordinate(value: Any, ref: Any, refs: str, bound: float) -> float | None:
    if value is None:
        return None
    parts = [float(v) for v in value] if isinstance(value, tuple | list) else [float(value)]
    parts += [0.0] * (3 - len(parts))
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    reference = _text(ref).upper()[:1] if ref is not None else refs[0]
    if reference not in refs:
        return None
    if reference == refs[1]:
        degrees = -degrees
    if not math.isfinite(degrees) or abs(degrees) > bound:
        return None
    return round(degrees, 7)


def _exif_time(main: dict[int, Any], sub: dict[int, Any], gps: dict[int, Any]) -> datetime | None:
    local = sub.get(_DATETIME_ORIGINAL) or main.get(_DATETIME)
    offset = sub.get(_OFFSET_TIME_ORIGINAL)
    if local and offset:
        parsed = _safe(lambda: _parse_exif_datetime(local, _parse_offset(_text(offset))))
        if parsed is not None:
            return parsed
    if gps.get(_GPS_DATE) and gps.get(_GPS_TIME):
        parsed = _safe(lambda: _parse_gps_time(gps[_GPS_DATE], gps[_GPS_TIME]))
        if parsed is not None:
            return parsed
    return _parse_exif_datetime(local, UTC) if local else None


def _parse_offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, minutes = text.lstrip("+-").split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def _parse_exif_datetime(value: Any, tz: timezone) -> datetime:
    return datetime.strptime(_text(value)[:19], "%Y:%m:%d %H:%M:%S").replace(tzinfo=tz).astimezone(UTC)


def _parse_gps_time(date: Any, time: Any) -> datetime:
    day = datetime.strptime(_text(date)[:10], "%Y:%m:%d").replace(tzinfo=UTC)
    hours, minutes, seconds = (float(v) for v in time)
    return day + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _plausible_time(value: datetime) -> bool:
    return EARLIEST_OBSERVATION <= value <= datetime.now(UTC) + FUTURE_TOLERANCE


# ------------------------------------------------------------------------------------- validation


def validate_sighting(
    latitude: float | str | None = None,
    longitude: float | str | None = None,
    observed_at: datetime | str | None = None,
    location: str | None = None,
    observer: str | None = None,
) -> Sighting:
    """Check metadata given with an upload and return it as a `Sighting`.

    Empty strings count as absent. Latitude and longitude go together.

    Args:
        latitude: decimal degrees in [-90, 90] (WGS84).
        longitude: decimal degrees in [-180, 180].
        observed_at: ISO 8601 date or date-time; without a zone it is read as UTC; not before 1900 and
            not more than a day in the future.
        location: free text, at most 200 characters.
        observer: free text, at most 200 characters.

    Returns:
        The validated sighting (`observed_at` in UTC).

    Raises:
        InvalidSightingError: naming the offending field.
    """
    lat = _coordinate("latitude", latitude, 90.0)
    lon = _coordinate("longitude", longitude, 180.0)
    if (lat is None) != (lon is None):
        missing = "longitude" if lon is None else "latitude"
        raise InvalidSightingError(missing, "latitude and longitude must be given together")
    return Sighting(
        observed_at=_observed_at(observed_at),
        latitude=lat,
        longitude=lon,
        location=_free_text("location", location),
        observer=_free_text("observer", observer),
    )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _coordinate(name: str, value: float | str | None, bound: float) -> float | None:
    if _blank(value):
        return None
    if isinstance(value, str) and len(value) > 64:
        raise InvalidSightingError(name, "is not a number")
    if isinstance(value, bool):
        raise InvalidSightingError(name, "is not a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidSightingError(name, f"{str(value)[:32]!r} is not a number") from None
    if not math.isfinite(number) or not -bound <= number <= bound:
        raise InvalidSightingError(name, f"{number:g} is outside [-{bound:g}, {bound:g}] degrees")
    return number


def _observed_at(value: datetime | str | None) -> datetime | None:
    if _blank(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            raise InvalidSightingError("observed_at", "is not an ISO 8601 date or date-time")
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidSightingError(
                "observed_at", f"{text[:32]!r} is not an ISO 8601 date or date-time"
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise InvalidSightingError("observed_at", "is not an ISO 8601 date or date-time")
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if parsed < EARLIEST_OBSERVATION:
        raise InvalidSightingError("observed_at", f"{parsed.date()} is before 1900")
    if parsed > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise InvalidSightingError("observed_at", f"{parsed.date()} is in the future")
    return parsed


def _free_text(name: str, value: str | None) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise InvalidSightingError(name, "must be text")
    text = value.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidSightingError(name, f"is {len(text)} characters long; at most {MAX_TEXT_LENGTH}")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidSightingError(name, "contains control characters")
    return text


def merge_sightings(uploaded: Sighting, exif: Sighting) -> Sighting:
    """Combine both sources field by field; what the uploader gave wins.

    The position is taken as a pair, never latitude from one source and longitude from the other.
    """
    if uploaded.latitude is not None and uploaded.longitude is not None:
        latitude, longitude = uploaded.latitude, uploaded.longitude
    else:
        latitude, longitude = exif.latitude, exif.longitude
    return Sighting(
        observed_at=uploaded.observed_at if uploaded.observed_at is not None else exif.observed_at,
        latitude=latitude,
        longitude=longitude,
        location=uploaded.location if uploaded.location is not None else exif.location,
        observer=uploaded.observer if uploaded.observer is not None else exif.observer,
    )
