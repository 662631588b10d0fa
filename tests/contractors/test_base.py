"""DTOs and the status-map check."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from contractors.base import OUR_STATUSES, StatusMapError, StatusUpdate, UpdateBatch, WorkOrder, check_status_map
from tests.contractors.conftest import make_order


def test_work_order_round_trips_through_its_dict():
    order = make_order(answers={"fault": "out", "colours": ["red", "blue"]})
    again = WorkOrder.from_dict(order.to_dict())
    assert again == order
    assert again.due_at.utcoffset() is not None
    assert isinstance(again.photos, tuple)


@pytest.mark.parametrize("change", [
    {"due_at": datetime(2024, 1, 1, 12, 0)},  # naive
    {"lat": 91.0},
    {"lon": float("nan")},
    {"job_reference": " "},
    {"idempotency_key": ""},
])
def test_work_order_refuses_bad_values(change):
    with pytest.raises(ValueError):
        make_order(**change)


def test_work_order_is_frozen_and_copies_its_answers():
    answers = {"fault": "out"}
    order = make_order(answers=answers)
    answers["fault"] = "flickering"
    assert order.answers == {"fault": "out"}
    with pytest.raises(AttributeError):
        order.priority = "urgent"  # type: ignore[misc]


def test_status_update_only_carries_our_statuses():
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    ok = StatusUpdate("u1", "BSL-1", "completed", "FIXED", at)
    assert ok.to_dict()["occurred_at"] == "2024-01-01T00:00:00+00:00"
    assert StatusUpdate("u2", "BSL-1", None, "WEIRD", at).status is None
    with pytest.raises(ValueError, match="not one of"):
        StatusUpdate("u3", "BSL-1", "fixed", "FIXED", at)
    with pytest.raises(ValueError, match="timezone-aware"):
        StatusUpdate("u4", "BSL-1", "accepted", "ACK", datetime(2024, 1, 1))
    assert UpdateBatch([ok], "5").updates == (ok,)


def test_check_status_map_names_every_problem():
    with pytest.raises(StatusMapError) as err:
        check_status_map("acme", ["A", "B", "C"], {"A": "accepted", "B": "done", "Z": "completed"})
    message = str(err.value)
    assert "'acme'" in message
    assert "no mapping for contractor status(es) C" in message
    assert "does not have: Z" in message
    assert "B → 'done'" in message
    check_status_map("acme", ["A"], {"A": OUR_STATUSES[0]})  # complete: no error
