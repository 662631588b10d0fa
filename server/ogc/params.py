"""OGC API Features query parameters, checked strictly (pure; every refusal is an OgcError)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 10_000_000
ITEMS_PARAMS = frozenset({"f", "bbox", "limit", "offset", "datetime", "crs", "bbox-crs"})
FEATURE_PARAMS = frozenset({"f", "crs"})
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
WGS84 = 4326


def crs_uri(srid: int) -> str:
    """The OGC URI of a CRS: CRS84 for WGS84 longitude/latitude, else the EPSG code's."""
    return CRS84 if srid == WGS84 else f"http://www.opengis.net/def/crs/EPSG/0/{srid}"


def crs(name: str, value: str | None, offered: list[int]) -> int:
    """The SRID a `crs` or `bbox-crs` URI (or safe CURIE) names, CRS84 when absent; one not offered is a 400."""
    if value is None:
        return WGS84
    names = {crs_uri(srid): srid for srid in offered} | {f"[EPSG:{srid}]": srid for srid in offered if srid != WGS84}
    names["[OGC:CRS84]"] = WGS84
    if value.strip() in names:
        return names[value.strip()]
    raise invalid(name, f"{value[:80]!r} is not offered; use one of: {', '.join(crs_uri(s) for s in offered)}")


class OgcError(Exception):
    """An exception in OGC API terms: HTTP status, exception code and a description."""

    def __init__(self, status: int, code: str, description: str, fields: list[str] | None = None):
        super().__init__(description)
        self.status, self.code, self.description = status, code, description
        self.fields = fields or []


def invalid(name: str, description: str) -> OgcError:
    """A 400 InvalidParameterValue naming the parameter."""
    return OgcError(400, "InvalidParameterValue", f"{name}: {description}", [name])


def check_known(params: dict[str, str], allowed: frozenset[str]) -> None:
    """Refuse parameters the API definition does not declare (400, as Part 1 requires)."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise OgcError(400, "InvalidParameterValue",
                       f"unknown query parameter(s): {', '.join(u[:40] for u in unknown[:5])}; "
                       f"allowed: {', '.join(sorted(allowed)) or 'none'}", [u[:40] for u in unknown[:5]])


def output_format(value: str | None) -> None:
    """Only JSON is served: f=json (or no f) is fine, anything else is a 400."""
    if value is not None and value.lower() not in ("json", "geojson"):
        raise invalid("f", f"format {value[:20]!r} is not offered; use f=json")


def limit(value: str | None) -> int:
    """Page size: default 100; above the maximum (1000) it is served as the maximum, as Part 1 says."""
    if value is None:
        return DEFAULT_LIMIT
    try:
        n = int(value)
    except ValueError:
        raise invalid("limit", f"must be a whole number from 1 to {MAX_LIMIT}") from None
    if n < 1:
        raise invalid("limit", "must be at least 1")
    return min(n, MAX_LIMIT)


def offset(value: str | None) -> int:
    """How many features to skip (for paging; `next` links carry it)."""
    if value is None:
        return 0
    try:
        n = int(value)
    except ValueError:
        raise invalid("offset", "must be a whole number") from None
    if not 0 <= n <= MAX_OFFSET:
        raise invalid("offset", f"must be between 0 and {MAX_OFFSET}")
    return n


def bbox(value: str | None, projected: bool = False) -> tuple[float, float, float, float] | None:
    """minLon,minLat,maxLon,maxLat in CRS84 (a 6-number 3D bbox drops its heights); with `projected`, the
    bbox-crs's own axes (easting, northing), which have no longitude/latitude ranges to check."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise invalid("bbox", "must be 4 numbers: minLon,minLat,maxLon,maxLat (CRS84)")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise invalid("bbox", "must be 4 numbers: minLon,minLat,maxLon,maxLat (CRS84)") from None
    if not all(math.isfinite(n) for n in numbers):
        raise invalid("bbox", "numbers must be finite")
    minx, miny, maxx, maxy = numbers if len(numbers) == 4 else (numbers[0], numbers[1], numbers[3], numbers[4])
    if projected:
        if minx > maxx or miny > maxy:
            raise invalid("bbox", "each minimum must not be greater than its maximum")
        return minx, miny, maxx, maxy
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise invalid("bbox", "longitudes must be within ±180 and latitudes within ±90")
    if miny > maxy:
        raise invalid("bbox", "the minimum latitude is greater than the maximum")
    if minx > maxx:
        raise invalid("bbox", "a bbox crossing the antimeridian (minLon > maxLon) is not supported; "
                              "this service's data is in the United Kingdom")
    return minx, miny, maxx, maxy


@dataclass(frozen=True)
class Interval:
    """A closed time interval; None on a side means open."""

    start: datetime | None
    end: datetime | None


def _moment(text: str, *, end: bool) -> datetime:
    try:
        if len(text) == 10:  # a date: the whole day
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(), timezone.utc)
            return moment + timedelta(days=1) - timedelta(microseconds=1) if end else moment
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise invalid("datetime", f"{text[:40]!r} is not an RFC 3339 date-time or date") from None
    if not 1970 <= moment.year <= 2200:
        raise invalid("datetime", "years must be within 1970 to 2200")
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=timezone.utc)


def interval(value: str | None) -> Interval | None:
    """An instant (an RFC 3339 date-time, or a date for the whole day) or an interval a/b, ../b or a/.."""
    if value is None:
        return None
    text = value.strip()
    if "/" not in text:
        if len(text) == 10:
            return Interval(_moment(text, end=False), _moment(text, end=True))
        at = _moment(text, end=False)
        return Interval(at, at)
    parts = text.split("/")
    if len(parts) != 2:
        raise invalid("datetime", "an interval is start/end, with .. for an open end")
    start = None if parts[0] in ("", "..") else _moment(parts[0], end=False)
    stop = None if parts[1] in ("", "..") else _moment(parts[1], end=True)
    if start and stop and start > stop:
        raise invalid("datetime", "the interval's start is after its end")
    return Interval(start, stop)
