"""Pushed updates: the simulator posts signed webhooks to a real receiver; the adapter verifies and reads them."""
from __future__ import annotations

import json
import time

import pytest

from contractors import signing
from contractors.base import PayloadError
from contractors.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError
from tests.contractors.conftest import SECRET, make_order, wait_until


def test_pushes_are_signed_authorised_and_parse_to_our_statuses(sim, receiver, street_lighting):
    order = make_order()
    ref = street_lighting.submit(order).contractor_ref
    sim.advance(ref=ref, steps=4)
    wait_until(lambda: sum(len(receiver.seqs(r)) for r in receiver.accepted()) == 4)
    pushed = [u for r in receiver.accepted() for u in street_lighting.parse_webhook(r["headers"], r["body"])]
    assert [u.status for u in pushed] == ["accepted", "scheduled", "in_progress", "completed"]
    assert {u.job_reference for u in pushed} == {order.job_reference}
    first = receiver.accepted()[0]
    assert first["path"] == "/api/v1/contractor/updates"
    assert first["headers"]["Authorization"] == "Bearer push-token"
    # The pushed and polled views are the same updates (one path for both on our side).
    assert [u.update_id for u in street_lighting.fetch_updates(None).updates] == [u.update_id for u in pushed]


def test_tampered_expired_and_unsigned_pushes_are_rejected(sim, receiver, street_lighting):
    sim.advance(ref=street_lighting.submit(make_order()).contractor_ref)
    request = wait_until(lambda: receiver.accepted() and receiver.accepted()[0])
    headers, body = request["headers"], request["body"]
    assert street_lighting.parse_webhook(headers, body)  # genuine
    tampered = body.replace(b"ACKNOWLEDGED", b"FIXED")
    assert tampered != body
    with pytest.raises(SignatureError) as err:
        street_lighting.parse_webhook(headers, tampered)
    assert err.value.reason == "mismatch"
    stale = signing.sign(SECRET, body, ts=int(time.time()) - 301)
    with pytest.raises(SignatureError) as err:
        street_lighting.parse_webhook(stale, body)
    assert err.value.reason == "expired"
    with pytest.raises(SignatureError) as err:
        street_lighting.parse_webhook({"Content-Type": "application/json"}, body)
    assert err.value.reason == "missing"
    forged = {TIMESTAMP_HEADER: headers[TIMESTAMP_HEADER], SIGNATURE_HEADER: signing.sign("guess", body)[
        SIGNATURE_HEADER]}
    with pytest.raises(SignatureError):
        street_lighting.parse_webhook(forged, body)


def test_signed_but_unreadable_body_is_a_payload_error(street_lighting):
    body = b"not json"
    with pytest.raises(PayloadError):
        street_lighting.parse_webhook(signing.sign(SECRET, body), body)
    body = json.dumps({"orders": []}).encode()
    with pytest.raises(PayloadError):
        street_lighting.parse_webhook(signing.sign(SECRET, body), body)


def test_duplicate_pushes_carry_the_same_update_ids(sim, receiver, street_lighting):
    sim.faults(duplicate_push_rate=1.0)
    sim.advance(ref=street_lighting.submit(make_order()).contractor_ref, steps=2)
    wait_until(lambda: len(receiver.accepted()) == 2)
    first, second = ([u.update_id for u in street_lighting.parse_webhook(r["headers"], r["body"])]
                     for r in receiver.accepted())
    assert first == second and len(first) == 2
    assert sim.state()["counters"]["pushes_duplicated"] == 1


def test_shuffled_push_batches_are_read_in_sequence(sim, receiver, street_lighting):
    sim.faults(out_of_order=True)
    ref = street_lighting.submit(make_order()).contractor_ref
    sim.advance(ref=ref, steps=4)  # one control call: one batch of four
    request = wait_until(lambda: receiver.accepted() and receiver.accepted()[0])
    assert sorted(receiver.seqs(request)) != receiver.seqs(request)  # really arrived shuffled
    parsed = street_lighting.parse_webhook(request["headers"], request["body"])
    assert [u.contractor_status for u in parsed] == ["ACKNOWLEDGED", "SCHEDULED", "IN_PROGRESS", "FIXED"]


def test_failed_pushes_are_retried_then_given_up(sim, receiver, street_lighting):
    receiver.fail_next = 2
    ref = street_lighting.submit(make_order()).contractor_ref
    sim.advance(ref=ref)
    wait_until(lambda: len(receiver.accepted()) == 1)
    counters = sim.state()["counters"]
    assert counters["push_attempts_failed"] == 2 and counters["pushes_sent"] == 1
    receiver.always_fail = True
    sim.advance(ref=ref)
    wait_until(lambda: sim.state()["counters"].get("pushes_failed") == 1, timeout=5)
    assert len(receiver.requests) == 3 + 4  # 1 + 2 retries, then 1 + 3 retries (push_retries=3)
