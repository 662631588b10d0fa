"""Quiet hours for texts, pure: no SMS between the evening and the morning (local time); they wait."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def _hm(value: str) -> time:
    h, m = value.split(":")
    return time(int(h), int(m))


def is_quiet(at: datetime, start: str, end: str, tz: str) -> bool:
    """True when `at` falls in the quiet window [start, end) in local time (the window may cross midnight)."""
    local = at.astimezone(ZoneInfo(tz)).time()
    s, e = _hm(start), _hm(end)
    if s == e:
        return False
    return (s <= local or local < e) if s > e else (s <= local < e)


def next_allowed(at: datetime, start: str, end: str, tz: str) -> datetime:
    """`at` itself outside quiet hours, otherwise the local end of the quiet window (in UTC terms, aware)."""
    if not is_quiet(at, start, end, tz):
        return at
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    e = _hm(end)
    day = local.date() if local.time() < e else local.date() + timedelta(days=1)
    # Built as a local wall time, so a clock change overnight still gives 08:00 on the clock.
    return datetime.combine(day, e, tzinfo=zone)
