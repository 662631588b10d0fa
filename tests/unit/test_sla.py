"""The SLA clock: working days, bank holidays, cut-off, clock changes, holds, and plain words."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.jobs.sla import (
    describe_day,
    describe_due,
    due_at,
    is_working_day,
    next_working_day,
    paused_seconds_for,
    remaining,
    status_of,
)

LONDON = ZoneInfo("Europe/London")
UTC = timezone.utc
THREE = {"kind": "working_days", "days": 3, "cutoff": "15:00", "end_of_day": "17:30"}
ENG = holidays.country_holidays("GB", subdiv="ENG", years=range(2024, 2032))
SETTINGS = settings(max_examples=200, deadline=None)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=LONDON)


def due_local(policy, start, **kw) -> datetime:
    result = due_at(policy, start, **kw)
    assert result.tzinfo is not None and result.utcoffset() == timedelta(0)  # always UTC out
    return result.astimezone(LONDON)


# --- concrete cases ----------------------------------------------------------------------------

@pytest.mark.parametrize("start, expected", [
    (local(2026, 11, 23, 10, 0), local(2026, 11, 25, 17, 30)),  # Monday morning: Mon, Tue, Wed
    (local(2026, 11, 23, 14, 59), local(2026, 11, 25, 17, 30)),  # just before the cut-off
    (local(2026, 11, 23, 15, 0), local(2026, 11, 26, 17, 30)),  # at the cut-off: starts Tuesday
    (local(2026, 11, 23, 23, 0), local(2026, 11, 26, 17, 30)),
    (local(2026, 11, 23, 6, 0), local(2026, 11, 25, 17, 30)),  # early morning counts as that day
    (local(2026, 11, 27, 16, 0), local(2026, 12, 2, 17, 30)),  # Friday after cut-off: Mon, Tue, Wed
    (local(2026, 11, 28, 10, 0), local(2026, 12, 2, 17, 30)),  # Saturday: Mon, Tue, Wed
    (local(2026, 11, 29, 10, 0), local(2026, 12, 2, 17, 30)),  # Sunday
    # Christmas 2026: Fri 25 and Mon 28 (Boxing Day observed) are bank holidays.
    (local(2026, 12, 23, 10, 0), local(2026, 12, 29, 17, 30)),  # Wed, Thu 24, Tue 29
    (local(2026, 12, 24, 15, 30), local(2026, 12, 31, 17, 30)),  # Tue 29, Wed 30, Thu 31
    (local(2026, 12, 31, 16, 0), local(2027, 1, 6, 17, 30)),  # New Year's Day: Mon 4, Tue 5, Wed 6
    # Easter 2026: Good Friday 3 April, Easter Monday 6 April.
    (local(2026, 4, 2, 10, 0), local(2026, 4, 8, 17, 30)),  # Thu 2, Tue 7, Wed 8
    (local(2026, 4, 2, 16, 0), local(2026, 4, 9, 17, 30)),  # Tue 7, Wed 8, Thu 9
    (local(2026, 4, 3, 9, 0), local(2026, 4, 9, 17, 30)),  # reported on Good Friday
    # Clocks go forward Sun 29 March 2026 and back Sun 25 October 2026.
    (local(2026, 3, 27, 10, 0), local(2026, 3, 31, 17, 30)),  # Fri, Mon 30, Tue 31 (BST)
    (local(2026, 10, 23, 10, 0), local(2026, 10, 27, 17, 30)),  # Fri, Mon 26, Tue 27 (GMT)
])
def test_three_working_days(start, expected):
    got = due_local(THREE, start)
    assert got == expected
    assert (got.hour, got.minute) == (17, 30)  # wall-clock 17:30 either side of a clock change


def test_clock_change_is_wall_clock_for_working_days():
    assert due_at(THREE, local(2026, 3, 27, 10, 0)) == datetime(2026, 3, 31, 16, 30, tzinfo=UTC)  # BST
    assert due_at(THREE, local(2026, 10, 23, 10, 0)) == datetime(2026, 10, 27, 17, 30, tzinfo=UTC)  # GMT


def test_hours_are_elapsed_hours_across_a_clock_change():
    day = {"kind": "hours", "hours": 24}
    start = local(2026, 3, 28, 12, 0)  # GMT, the day before the clocks go forward
    assert due_local(day, start) == local(2026, 3, 29, 13, 0)  # 24 real hours later reads 13:00 BST
    start = local(2026, 10, 24, 12, 0)  # BST, the day before the clocks go back
    assert due_local(day, start) == local(2026, 10, 25, 11, 0)
    assert due_at({"kind": "hours", "hours": 2}, local(2026, 12, 25, 23, 0)) == datetime(2026, 12, 26, 1, 0, tzinfo=UTC)


def test_one_working_day_and_no_cutoff():
    one = {"kind": "working_days", "days": 1}  # no cut-off: only the end of the day moves it
    assert due_local(one, local(2026, 11, 23, 17, 0)) == local(2026, 11, 23, 17, 30)
    assert due_local(one, local(2026, 11, 23, 17, 30)) == local(2026, 11, 24, 17, 30)
    custom = {"kind": "working_days", "days": 1, "cutoff": "12:00", "end_of_day": "16:00"}
    assert due_local(custom, local(2026, 11, 23, 11, 59)) == local(2026, 11, 23, 16, 0)
    assert due_local(custom, local(2026, 11, 23, 12, 0)) == local(2026, 11, 24, 16, 0)


def test_start_in_another_offset_is_read_as_local_time():
    # 14:30 UTC in June is 15:30 BST: after the cut-off.
    start = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)
    assert due_local(THREE, start) == local(2026, 6, 18, 17, 30)
    start = datetime(2026, 6, 15, 13, 30, tzinfo=UTC)  # 14:30 BST: before it
    assert due_local(THREE, start) == local(2026, 6, 17, 17, 30)


def test_other_nations_bank_holidays():
    # 30 Nov 2026 (Mon) is St Andrew's Day in Scotland, not in England.
    start = local(2026, 11, 27, 16, 0)
    assert due_local(THREE, start, subdiv="SCT") == local(2026, 12, 3, 17, 30)
    assert due_local(THREE, start, subdiv="ENG") == local(2026, 12, 2, 17, 30)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        due_at(THREE, datetime(2026, 11, 23, 10, 0))  # naive
    with pytest.raises(ValueError):
        due_at({"kind": "weeks", "weeks": 1}, local(2026, 11, 23, 10, 0))
    with pytest.raises(ValueError):
        due_at({"kind": "working_days", "days": 0}, local(2026, 11, 23, 10, 0))
    with pytest.raises(ValueError):
        due_at({"kind": "working_days", "days": 1, "cutoff": "18:00"}, local(2026, 11, 23, 10, 0))


def test_working_day_helpers():
    assert not is_working_day(date(2026, 12, 25)) and not is_working_day(date(2026, 12, 28))
    assert not is_working_day(date(2026, 11, 28)) and is_working_day(date(2026, 11, 27))
    assert next_working_day(date(2026, 12, 24)) == date(2026, 12, 29)
    assert next_working_day(date(2026, 4, 2)) == date(2026, 4, 7)


# --- on hold -----------------------------------------------------------------------------------

def test_hold_extends_an_hours_policy_by_elapsed_time():
    day = {"kind": "hours", "hours": 24}
    start = local(2026, 11, 23, 10, 0)
    assert due_at(day, start, paused_seconds=5400) - due_at(day, start) == timedelta(seconds=5400)


def test_hold_extends_working_days_in_working_time():
    start = local(2026, 11, 23, 10, 0)  # due Wed 25 Nov 17:30 (working day 08:00-17:30 = 9.5 h)
    assert due_local(THREE, start, paused_seconds=3600) == local(2026, 11, 26, 9, 0)
    assert due_local(THREE, start, paused_seconds=9.5 * 3600) == local(2026, 11, 26, 17, 30)
    assert due_local(THREE, start, paused_seconds=10 * 3600) == local(2026, 11, 27, 8, 30)
    assert due_local(THREE, start, paused_seconds=20 * 3600) == local(2026, 11, 30, 9, 0)  # over the weekend
    # From Wed 23 Dec: due Tue 29 Dec; two hours of hold rolls past nothing but lands on Wed 30.
    assert due_local(THREE, local(2026, 12, 23, 10, 0), paused_seconds=7200) == local(2026, 12, 30, 10, 0)
    # From Mon 21 Dec: due Wed 23 Dec 17:30; a day and an hour of hold skips Christmas to Tue 29.
    assert due_local(THREE, local(2026, 12, 21, 10, 0), paused_seconds=10.5 * 3600) == local(2026, 12, 29, 9, 0)


def test_paused_seconds_for_measures_in_the_policy_unit():
    since, until = local(2026, 11, 27, 16, 0), local(2026, 11, 30, 9, 0)  # Fri 16:00 → Mon 09:00
    assert paused_seconds_for({"kind": "hours", "hours": 24}, since, until) == 65 * 3600
    assert paused_seconds_for(THREE, since, until) == 2.5 * 3600  # 1.5 h Friday + 1 h Monday
    assert paused_seconds_for(THREE, until, since) == 0
    assert paused_seconds_for(THREE, local(2026, 12, 24, 17, 0), local(2026, 12, 29, 8, 0)) == 1800


# --- status and words --------------------------------------------------------------------------

def test_remaining_and_status():
    started, due = local(2026, 11, 23, 10, 0), local(2026, 11, 23, 20, 0)
    assert remaining(due, local(2026, 11, 23, 19, 0)) == timedelta(hours=1)
    assert remaining(due, local(2026, 11, 23, 21, 0)) == timedelta(hours=-1)
    assert status_of(due, local(2026, 11, 23, 17, 59), started) == "ok"
    assert status_of(due, local(2026, 11, 23, 18, 0), started) == "at_risk"  # 80 % gone
    assert status_of(due, due, started) == "at_risk"  # exactly on time is not a breach
    assert status_of(due, due + timedelta(seconds=1), started) == "breached"
    assert status_of(due, local(2026, 11, 23, 15, 0), started, at_risk_fraction=0.5) == "at_risk"
    assert status_of(due, local(2026, 11, 23, 14, 0), started, at_risk_fraction=0.5) == "ok"


def test_describe_due():
    due = due_at(THREE, local(2026, 11, 23, 15, 0))  # Thursday 26 November 17:30
    assert describe_day(due) == "Thursday 26 November"
    assert describe_due(due, local(2026, 11, 23, 15, 5)) == "by 17:30 on Thursday 26 November"
    assert describe_due(due, local(2026, 11, 25, 9, 0)) == "by 17:30 tomorrow"
    assert describe_due(due, local(2026, 11, 26, 9, 0)) == "by 17:30 today"
    assert describe_due(due, local(2026, 11, 27, 9, 0)) == "overdue: it was due by 17:30 on Thursday 26 November"
    assert describe_due(due, local(2025, 11, 26, 9, 0)) == "by 17:30 on Thursday 26 November 2026"
    summer = datetime(2026, 6, 17, 16, 30, tzinfo=UTC)
    assert describe_due(summer, local(2026, 6, 1, 9, 0)) == "by 17:30 on Wednesday 17 June"  # BST shown


# --- properties --------------------------------------------------------------------------------

starts = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31),
                      timezones=st.sampled_from([LONDON, UTC]))
policies = st.builds(
    lambda days, cutoff, end: {"kind": "working_days", "days": days, "cutoff": cutoff, "end_of_day": end},
    st.integers(1, 30), st.sampled_from(["12:00", "15:00", "17:00", "17:30"]), st.sampled_from(["17:30", "18:00"]))


def _is_working(moment: datetime) -> bool:
    d = moment.astimezone(LONDON).date()
    return d.weekday() < 5 and d not in ENG


@SETTINGS
@given(policies, starts, st.floats(0, 40 * 3600))
def test_working_deadline_is_on_a_working_day_and_not_before_start(policy, start, paused):
    due = due_at(policy, start, paused_seconds=paused)
    assert _is_working(due)
    assert due >= start
    assert due >= due_at(policy, start)  # holding never brings it forward


@SETTINGS
@given(policies, starts)
def test_working_deadline_monotonic_in_days(policy, start):
    due = due_at(policy, start)
    longer = due_at({**policy, "days": policy["days"] + 1}, start)
    assert longer > due
    assert longer.astimezone(LONDON).time() == due.astimezone(LONDON).time()


@SETTINGS
@given(policies, starts, st.integers(0, 60 * 24 * 30))
def test_working_deadline_monotonic_in_start(policy, start, minutes_later):
    assert due_at(policy, start + timedelta(minutes=minutes_later)) >= due_at(policy, start)


@SETTINGS
@given(policies, starts, st.floats(0, 40 * 3600), st.floats(0, 40 * 3600))
def test_more_hold_never_shortens_and_held_working_time_adds_up(policy, start, a, b):
    lo, hi = sorted((a, b))
    due_lo, due_hi = due_at(policy, start, paused_seconds=lo), due_at(policy, start, paused_seconds=hi)
    assert due_hi >= due_lo
    # The extra deadline is exactly the extra working time.
    assert paused_seconds_for(policy, due_lo, due_hi) == pytest.approx(hi - lo, abs=1e-3)


@SETTINGS
@given(st.floats(0.5, 24 * 30), starts, st.floats(0, 10 * 24 * 3600))
def test_hours_policy_is_start_plus_hours_plus_hold(hours, start, paused):
    due = due_at({"kind": "hours", "hours": hours}, start, paused_seconds=paused)
    assert due - start == pytest.approx(timedelta(hours=hours, seconds=paused), abs=timedelta(milliseconds=1))
