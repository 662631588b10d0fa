"""Pure Open311 mapping: the request form, status normalisation, and the polling cursor."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contractors.base import PayloadError, StatusUpdate, check_status_map
from contractors.open311 import mapping
from tests.contractors.conftest import make_order
from tests.contractors.strategies import work_orders

FORM = dict(service_code="SL", email="council@example.gov.uk", external_id_attribute="kerbside_id",
            asset_attribute="asset_id")


@given(work_orders)
def test_form_carries_what_a_back_office_needs(order):
    form = mapping.request_form(order, **FORM)
    fields = dict(form)
    assert fields["service_code"] == "SL" and fields["email"] == FORM["email"]
    assert float(fields["lat"]) == order.lat and float(fields["long"]) == order.lon
    assert fields["attribute[kerbside_id]"] == order.idempotency_key
    assert order.job_reference in fields["description"] and len(fields["description"]) <= mapping.DESCRIPTION_MAX
    assert fields.get("attribute[asset_id]") == order.asset_ref
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in form)


def test_answers_become_attributes_with_multivalue_lists_repeated():
    order = make_order(answers={"fault": "out", "seen": ["night", "dusk"], "urgent": True})
    form = mapping.request_form(order, **FORM)
    assert ("attribute[fault]", "out") in form
    assert [v for k, v in form if k == "attribute[seen][]"] == ["night", "dusk"]
    assert ("attribute[urgent]", "true") in form
    assert not any(k.startswith("attribute[fault") for k, _ in mapping.request_form(order, **FORM,
                                                                                    send_answers=False))


def test_default_map_covers_the_extended_statuses():
    check_status_map("open311", mapping.STATUSES, mapping.DEFAULT_STATUS_MAP)
    assert mapping.DEFAULT_STATUS_MAP["not_councils_responsibility"] == "rejected"
    assert mapping.DEFAULT_STATUS_MAP["action_scheduled"] == "scheduled"


@pytest.mark.parametrize("raw, expected", [("FIXED", "fixed"), ("Action Scheduled", "action_scheduled"),
                                           (" not-councils-responsibility ", "not_councils_responsibility")])
def test_status_normalisation(raw, expected):
    assert mapping.normalise_status(raw) == expected
    item = {"update_id": 1, "service_request_id": 2, "status": raw, "updated_datetime": "2024-03-14T10:00:00Z"}
    assert mapping.update_from_json(item, mapping.DEFAULT_STATUS_MAP).status == mapping.DEFAULT_STATUS_MAP[expected]


def test_naive_times_are_read_in_the_configured_zone():
    item = {"update_id": "1", "service_request_id": "2", "status": "fixed", "updated_datetime": "2024-07-01T10:00:00"}
    update = mapping.update_from_json(item, mapping.DEFAULT_STATUS_MAP, "Europe/London")
    assert update.occurred_at == datetime(2024, 7, 1, 9, 0, tzinfo=timezone.utc)  # BST


@pytest.mark.parametrize("answer", [[], [{"token": "abc"}], {"nope": 1}, [{"service_request_id": ""}]])
def test_answers_without_an_id_are_payload_errors(answer):
    with pytest.raises(PayloadError):
        mapping.service_request_id(answer)


def test_cursor_round_trips_and_rejects_junk():
    cursor = mapping.Cursor(datetime(2024, 3, 14, 10, tzinfo=timezone.utc), frozenset({"7", "8"}))
    assert mapping.Cursor.decode(cursor.encode()) == cursor
    assert mapping.Cursor.decode(None) is None
    for junk in ("42", '{"after": "2024-03-14T10:00:00", "seen": []}', '{"seen": []}'):
        with pytest.raises(ValueError):
            mapping.Cursor.decode(junk)


T0 = datetime(2024, 3, 14, 10, tzinfo=timezone.utc)


def _update(uid: int, second: int) -> StatusUpdate:
    return StatusUpdate(str(uid), "311-1", "accepted", "open", T0 + timedelta(seconds=second))


@settings(max_examples=150, deadline=None)
@given(seconds=st.lists(st.integers(0, 4), min_size=1, max_size=25), polls=st.lists(st.integers(0, 25), max_size=8),
       seed=st.integers(0, 1000))
def test_polling_sees_every_update_once_despite_shared_seconds(seconds, polls, seed):
    # Updates are published in time order (ties in any order); many share a second. Between polls some
    # more are published; each poll answers everything at or after start_date, in any order.
    published = [_update(i, s) for i, s in enumerate(sorted(seconds))]
    rng = random.Random(seed)
    cuts = sorted({min(p, len(published)) for p in polls} | {len(published)})
    cursor, seen = None, []
    for cut in cuts:
        visible = [u for u in published[:cut] if cursor is None or u.occurred_at >= cursor.after]
        rng.shuffle(visible)
        fresh, cursor = mapping.select_new(cursor, visible)
        assert [(u.occurred_at, int(u.update_id)) for u in fresh] == sorted((u.occurred_at, int(u.update_id))
                                                                             for u in fresh)
        seen.extend(fresh)
    assert sorted(u.update_id for u in seen) == sorted(u.update_id for u in published)
    assert len(seen) == len(published)  # nothing twice
    again, same = mapping.select_new(cursor, published)
    assert again == [] and same == cursor
