"""Pure street-lighting mapping: order JSON, status map, update parsing."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contractors.base import OUR_STATUSES, PayloadError, check_status_map
from contractors.street_lighting import mapping
from contractors.street_lighting.client import encode
from tests.contractors.strategies import work_orders


@given(work_orders)
def test_order_json_is_deterministic_json_and_faithful(order):
    body = mapping.order_json(order)
    assert encode(body) == encode(mapping.order_json(order))  # retries send identical bytes
    decoded = json.loads(encode(body))
    assert decoded["client_reference"] == order.job_reference
    assert decoded["location"]["lat"] == order.lat and decoded["location"]["lon"] == order.lon
    assert decoded["priority"] == mapping.DEFAULT_PRIORITY_MAP[order.priority]
    assert datetime.fromisoformat(decoded["due_by"]) == order.due_at
    assert decoded["details"] == json.loads(json.dumps(order.answers))
    assert (decoded["asset"] is None) == (order.asset_ref is None)


def test_priority_map_override_and_unknown_priority_passes_through():
    from tests.contractors.conftest import make_order

    assert mapping.order_json(make_order(priority="urgent"), {"urgent": "IMMEDIATE"})["priority"] == "IMMEDIATE"
    assert mapping.order_json(make_order(priority="whenever"))["priority"] == "whenever"


def test_default_status_map_covers_the_vocabulary():
    check_status_map("street_lighting", mapping.STATUSES, mapping.DEFAULT_STATUS_MAP)
    assert set(mapping.DEFAULT_STATUS_MAP.values()) <= set(OUR_STATUSES)
    assert mapping.DEFAULT_STATUS_MAP["FIXED"] == "completed"
    assert mapping.DEFAULT_STATUS_MAP["NOT_FOUND"] == mapping.DEFAULT_STATUS_MAP["REJECTED"] == "rejected"


def _item(seq: int, status: str = "FIXED", **extra) -> dict:
    return {"seq": seq, "update_id": f"BSL-1/{seq}", "reference": "BSL-1", "client_reference": "KS-1",
            "status": status, "occurred_at": f"2024-03-14T10:{seq % 60:02d}:00+00:00", "note": None,
            "scheduled_for": None, "fix": {"lat": 51.1, "lon": -2.2}, "photo_url": "https://x/p.jpg", **extra}


@given(st.sampled_from(mapping.STATUSES))
def test_every_status_in_an_update_maps_to_ours(status):
    update = mapping.update_from_json(_item(1, status), mapping.DEFAULT_STATUS_MAP)
    assert update.status == mapping.DEFAULT_STATUS_MAP[status]
    assert update.contractor_status == status
    assert update.occurred_at == datetime(2024, 3, 14, 10, 1, tzinfo=timezone.utc)
    assert (update.lat, update.lon, update.job_reference) == (51.1, -2.2, "KS-1")
    assert update.raw["seq"] == 1


def test_unknown_status_is_kept_but_not_mapped():
    update = mapping.update_from_json(_item(1, "ON_FIRE"), mapping.DEFAULT_STATUS_MAP)
    assert update.status is None and update.contractor_status == "ON_FIRE"


@given(st.permutations(list(range(1, 9))))
def test_shuffled_batches_come_out_in_sequence_order(order):
    body = {"updates": [_item(s) for s in order]}
    assert [u.update_id for u in mapping.updates_from_json(body, mapping.DEFAULT_STATUS_MAP)] == \
        [f"BSL-1/{s}" for s in range(1, 9)]


@pytest.mark.parametrize("body", [
    [], {"updates": "nope"}, {"updates": [{"seq": "1"}]}, {"updates": [_item(1, occurred_at="yesterday")]},
    {"updates": [_item(1, occurred_at="2024-03-14T10:00:00")]},  # no offset
    {"updates": [_item(1, update_id=None)]}, {"updates": [_item(1, fix={"lat": "north"})]},
    {"updates": [_item(1, fix="here")]}, {"updates": ["x"]},
])
def test_unreadable_bodies_raise_payload_error(body):
    with pytest.raises(PayloadError):
        mapping.updates_from_json(body, mapping.DEFAULT_STATUS_MAP)


def test_submit_result_reads_the_answer():
    result = mapping.submit_result({"reference": "BSL-9", "accepted_at": "2024-03-14T10:00:00+00:00"}, True)
    assert result.contractor_ref == "BSL-9" and result.already_existed
    with pytest.raises(PayloadError):
        mapping.submit_result({"accepted_at": "2024-03-14T10:00:00+00:00"})
