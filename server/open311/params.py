"""Reading GeoReport v2 parameters (form and query strings) strictly; every refusal is an Open311Error."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from contractors.open311.mapping import normalise_status

MAX_SPAN = timedelta(days=90)
STATUSES = ("open", "closed")
MAX_MEDIA = 20
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")


class Open311Error(Exception):
    """A refusal in GeoReport's terms: an HTTP status and one or more descriptions."""

    def __init__(self, status: int, *descriptions: str):
        super().__init__("; ".join(descriptions))
        self.status = status
        self.descriptions = list(descriptions) or ["error"]


def bad(*descriptions: str) -> Open311Error:
    """A 400 Open311Error."""
    return Open311Error(400, *descriptions)


def one(fields: dict[str, list[str]], name: str) -> str | None:
    """The single value of a parameter (None when absent or blank); 400 if it is given twice."""
    values = [v for v in fields.get(name, []) if v.strip()]
    if len(values) > 1:
        raise bad(f"{name} was given {len(values)} times; give it once")
    return values[0].strip() if values else None


def group(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Form or query items (repeats kept, in order) grouped by name."""
    out: dict[str, list[str]] = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return out


def parse_time(name: str, value: str, tz: str) -> datetime:
    """A W3C/ISO 8601 date-time; one without an offset is read in the council's time zone."""
    text = value.strip()
    if "T" in text and " " in text:
        text = text.replace(" ", "+")  # an unencoded "+01:00" arrives in a query string as " 01:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise bad(f"{name} must be a W3C date-time such as 2026-11-05T08:15:30Z, not {value[:40]!r}") from None
    if not 1970 <= parsed.year <= 2200:
        raise bad(f"{name} is out of range (years 1970 to 2200)")
    if parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(tz))
    return parsed


def date_range(start: str | None, end: str | None, *, now: datetime, default_span: timedelta,
               tz: str) -> tuple[datetime, datetime]:
    """The [start, end] window: defaults end to now and start to end − default_span; at most 90 days."""
    end_at = parse_time("end_date", end, tz) if end else now
    start_at = parse_time("start_date", start, tz) if start else end_at - default_span
    if start_at > end_at:
        raise bad("start_date must not be after end_date")
    if end_at - start_at > MAX_SPAN:
        raise bad(f"start_date to end_date may span at most {MAX_SPAN.days} days")
    return start_at, end_at


def comma_list(name: str, value: str | None, *, limit: int = 1000) -> list[str]:
    """A comma-delimited parameter as distinct non-empty values, in order."""
    if value is None:
        return []
    out = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if len(out) > limit:
        raise bad(f"{name} lists {len(out)} values; at most {limit}")
    return out


def statuses(value: str | None) -> list[str]:
    """The status filter: open and/or closed."""
    wanted = comma_list("status", value)
    unknown = [s for s in wanted if s.lower() not in STATUSES]
    if unknown:
        raise bad(f"status must be open or closed, not {', '.join(unknown)}")
    return [s.lower() for s in wanted]


def coordinate(name: str, value: str, limit: float) -> float:
    """A finite decimal degree within ±limit."""
    try:
        number = float(value)
    except ValueError:
        raise bad(f"{name} must be a decimal number of degrees, not {value[:40]!r}") from None
    if not math.isfinite(number) or abs(number) > limit:
        raise bad(f"{name} must be between -{limit:g} and {limit:g}")
    return number


def attributes(fields: dict[str, list[str]]) -> dict[str, str | list[str]]:
    """attribute[code] and attribute[code][] fields by code (a repeated or [] field is a list)."""
    out: dict[str, str | list[str]] = {}
    for key, values in fields.items():
        if not key.startswith("attribute"):
            continue
        m = _ATTRIBUTE.match(key)
        if m is None:
            raise bad(f"{key[:80]!r} is not attribute[code] or attribute[code][]")
        code, is_list = m.group(1), bool(m.group(2))
        if code in out:
            raise bad(f"attribute {code!r} was given both as attribute[{code}] and attribute[{code}][]")
        kept = [v.strip() for v in values if v.strip()]
        if is_list or len(kept) > 1:
            out[code] = kept
        elif kept:
            out[code] = kept[0]
    return out


def media_urls(fields: dict[str, list[str]]) -> list[str]:
    """Every media_url (FixMyStreet's multi_photos repeats the field), in order, each an http(s) URL."""
    urls = list(dict.fromkeys(v.strip() for v in [*fields.get("media_url", []), *fields.get("media_url[]", [])]
                              if v.strip()))
    if len(urls) > MAX_MEDIA:
        raise bad(f"media_url was given {len(urls)} times; at most {MAX_MEDIA}")
    for url in urls:
        if len(url) > 1000 or not _URL.match(url):
            raise bad(f"media_url must be an http(s) URL of at most 1000 characters, not {url[:60]!r}")
    return urls


def required(fields: dict[str, list[str]], name: str) -> str:
    """A field that must be present (a GeoReport 400 naming it otherwise)."""
    value = one(fields, name)
    if value is None:
        raise bad(f"{name} is required")
    return value


def update_header(fields: dict[str, list[str]], statuses: Iterable[str], timezone: str) -> tuple[str, str, datetime]:
    """update_id, status (one of `statuses`, normalised) and updated_datetime of a POSTed service request update."""
    update_id = required(fields, "update_id")
    if len(update_id) > 200:
        raise bad("update_id must be at most 200 characters")
    status = normalise_status(required(fields, "status"))
    if status not in statuses:
        raise bad(f"status {status.upper()!r} is not one of {', '.join(s.upper() for s in statuses)}")
    return update_id, status, parse_time("updated_datetime", required(fields, "updated_datetime"), timezone)
