"""The SLA clock, pure: when a job is due, how long is left, and how to say it to a caller.

Policies (plain dicts, as stored on a job and written in the catalogue):
  {"kind": "hours", "hours": 24}
      Elapsed hours: 24 hours across a clock change is still 24 real hours.
  {"kind": "working_days", "days": 3, "cutoff": "15:00", "end_of_day": "17:30", "start_of_day": "08:00"}
      Working days skip Saturdays, Sundays and the nation's bank holidays. The report day is
      day 1 unless the report comes at/after the cut-off (local time) or on a non-working day;
      then day 1 is the next working day. Due at end_of_day on day N.

On hold: `paused_seconds` extends the deadline. For hours policies it is elapsed seconds. For
working-day policies it is *working* seconds (time inside start_of_day..end_of_day on working
days), added after the deadline and rolling over into later working days, so the deadline never
lands on a weekend or bank holiday. Use `paused_seconds_for` when a hold ends to measure the held
time in the unit the policy needs (a weekend on hold then costs the contractor nothing extra).
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

TZ = "Europe/London"
DEFAULTS = {"end_of_day": "17:30", "start_of_day": "08:00"}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


@lru_cache(maxsize=16)
def _bank_holidays(country: str, subdiv: str | None) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdiv)


@lru_cache(maxsize=4096)  # asked for every report's deadline; a holidays lookup is slow by comparison
def is_working_day(day: date, *, country: str = "GB", subdiv: str | None = "ENG") -> bool:
    """True on a weekday that is not a bank holiday of the country/subdivision."""
    return day.weekday() < 5 and day not in _bank_holidays(country, subdiv)


def next_working_day(day: date, *, country: str = "GB", subdiv: str | None = "ENG") -> date:
    """The first working day strictly after `day`."""
    day += timedelta(days=1)
    while not is_working_day(day, country=country, subdiv=subdiv):
        day += timedelta(days=1)
    return day


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


class _Calendar:
    """Working windows (start_of_day..end_of_day on working days) for one policy and place."""

    def __init__(self, policy: dict, tz: str, country: str, subdiv: str | None):
        self.zone = ZoneInfo(tz)
        self.country, self.subdiv = country, subdiv
        self.start = _hhmm(policy.get("start_of_day") or DEFAULTS["start_of_day"])
        self.end = _hhmm(policy.get("end_of_day") or DEFAULTS["end_of_day"])
        self.cutoff = _hhmm(policy["cutoff"]) if policy.get("cutoff") else self.end
        if not self.start < self.end:
            raise ValueError("start_of_day must be before end_of_day")
        if self.cutoff > self.end:
            raise ValueError("cutoff must not be after end_of_day")

    def working(self, day: date) -> bool:
        return is_working_day(day, country=self.country, subdiv=self.subdiv)

    def after(self, day: date) -> date:
        return next_working_day(day, country=self.country, subdiv=self.subdiv)

    def at(self, day: date, t: time) -> datetime:
        """Local wall time on a day, as UTC (zoneinfo picks the right offset either side of a change)."""
        return datetime.combine(day, t, tzinfo=self.zone).astimezone(timezone.utc)

    def window(self, day: date) -> tuple[datetime, datetime]:
        return self.at(day, self.start), self.at(day, self.end)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def add_working(self, moment: datetime, seconds: float) -> datetime:
        """`moment` plus `seconds` of working time; lands inside a working window."""
        if seconds <= 0:
            return moment
        day = self.local_date(moment)
        if not self.working(day):
            day = self.after(day)
        while True:
            begin, finish = self.window(day)
            begin = max(begin, moment)
            available = (finish - begin).total_seconds()
            if available > 0:
                if seconds <= available:
                    return begin + timedelta(seconds=seconds)
                seconds -= available
            day = self.after(day)

    def working_between(self, a: datetime, b: datetime) -> float:
        """Working seconds between two moments (0 if b <= a)."""
        if b <= a:
            return 0.0
        total = 0.0
        day = self.local_date(a)
        last = self.local_date(b)
        while day <= last:
            if self.working(day):
                begin, finish = self.window(day)
                overlap = (min(finish, b) - max(begin, a)).total_seconds()
                total += max(overlap, 0.0)
            day += timedelta(days=1)
        return total


def _kind(policy: dict) -> str:
    kind = policy.get("kind")
    if kind not in ("hours", "working_days"):
        raise ValueError(f"unknown SLA policy kind {kind!r}")
    return kind


def due_at(policy: dict, start: datetime, *, tz: str = TZ, country: str = "GB", subdiv: str | None = "ENG",
           paused_seconds: float = 0) -> datetime:
    """When a job started at `start` under `policy` is due (UTC), extended by time on hold."""
    _aware(start, "start")
    start = start.astimezone(timezone.utc)
    paused = max(float(paused_seconds or 0), 0.0)
    if _kind(policy) == "hours":
        return start + timedelta(hours=float(policy["hours"]), seconds=paused)
    days = int(policy["days"])
    if days < 1:
        raise ValueError("a working-days policy needs days >= 1")
    cal = _Calendar(policy, tz, country, subdiv)
    local = start.astimezone(cal.zone)
    day = local.date()
    if not cal.working(day) or local.time() >= cal.cutoff:
        day = cal.after(day)
    for _ in range(days - 1):
        day = cal.after(day)
    return cal.add_working(cal.at(day, cal.end), paused)


def paused_seconds_for(policy: dict, since: datetime, until: datetime, *, tz: str = TZ, country: str = "GB",
                       subdiv: str | None = "ENG") -> float:
    """How much a hold from `since` to `until` should add to paused_seconds under `policy`."""
    _aware(since, "since")
    _aware(until, "until")
    if _kind(policy) == "hours":
        return max((until - since).total_seconds(), 0.0)
    return _Calendar(policy, tz, country, subdiv).working_between(since, until)


def remaining(due: datetime, now: datetime) -> timedelta:
    """Time left until `due` (negative once overdue)."""
    _aware(due, "due")
    _aware(now, "now")
    return due - now


def status_of(due: datetime, now: datetime, started: datetime, at_risk_fraction: float = 0.8) -> str:
    """Breached after due, at risk once `at_risk_fraction` of the allowed time has gone, else ok."""
    _aware(due, "due")
    _aware(now, "now")
    _aware(started, "started")
    if now > due:
        return "breached"
    allowed = (due - started).total_seconds()
    if allowed <= 0 or (now - started).total_seconds() >= at_risk_fraction * allowed:
        return "at_risk"
    return "ok"


def describe_day(moment: datetime, tz: str = TZ) -> str:
    """The local day in words: "Thursday 26 November"."""
    local = moment.astimezone(ZoneInfo(tz))
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]}"


def describe_due(due: datetime, now: datetime, tz: str = TZ) -> str:
    """A deadline as an adviser would say it: "by 17:30 on Thursday 26 November", "by 17:30 today"."""
    _aware(due, "due")
    _aware(now, "now")
    zone = ZoneInfo(tz)
    local, today = due.astimezone(zone), now.astimezone(zone).date()
    clock = f"{local:%H:%M}"
    if local.date() == today:
        when = f"{clock} today"
    elif local.date() == today + timedelta(days=1):
        when = f"{clock} tomorrow"
    else:
        when = f"{clock} on {describe_day(due, tz)}"
        if local.year != today.year:
            when += f" {local.year}"
    return f"overdue: it was due by {when}" if due < now else f"by {when}"
