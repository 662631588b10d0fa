"""The street-lighting adapter against the simulator, over real HTTP."""
from __future__ import annotations

import time

import httpx
import pytest

from contractors import signing
from contractors.base import ContractorError
from contractors.street_lighting.client import encode
from tests.contractors.conftest import API_KEY, SECRET, free_port, make_order, sl_config, wait_until


def bsl_orders(sim) -> list[dict]:
    return [o for o in sim.state()["orders"] if o["kind"] == "bsl"]


def test_submit_twice_with_one_key_makes_one_order(sim, street_lighting):
    order = make_order()
    first = street_lighting.submit(order)
    second = street_lighting.submit(order)
    assert first.contractor_ref.startswith("BSL-") and not first.already_existed
    assert second.contractor_ref == first.contractor_ref and second.already_existed
    assert second.accepted_at == first.accepted_at
    orders = bsl_orders(sim)
    assert len(orders) == 1 and orders[0]["idempotency_key"] == order.idempotency_key
    assert sim.state()["counters"]["duplicates_suppressed"] == 1


def test_a_second_key_for_the_same_open_job_gets_the_existing_reference(sim, street_lighting):
    order = make_order()
    first = street_lighting.submit(order)
    again = street_lighting.submit(make_order(job_reference=order.job_reference, idempotency_key="another-key"))
    assert again.contractor_ref == first.contractor_ref and again.already_existed
    assert len(bsl_orders(sim)) == 1


def test_reusing_a_key_for_a_different_order_is_not_retryable(sim, street_lighting):
    order = make_order()
    street_lighting.submit(order)
    with pytest.raises(ContractorError) as err:
        street_lighting.submit(make_order(idempotency_key=order.idempotency_key, description="something else"))
    assert err.value.status_code == 422 and not err.value.retryable


def test_server_errors_are_retryable_and_nothing_is_created(sim, street_lighting):
    sim.faults(fail_rate=1.0)
    with pytest.raises(ContractorError) as err:
        street_lighting.submit(make_order())
    assert err.value.retryable and err.value.status_code == 500
    assert bsl_orders(sim) == [] and sim.state()["counters"]["injected_500"] == 1


def test_timeout_is_retryable_and_the_retry_finds_the_order_made_meanwhile(sim, adapters):
    adapter = adapters("street_lighting", sl_config(sim.url, timeout_s=0.4))
    sim.faults(timeout_rate=1.0, timeout_sleep_s=1.2)
    order = make_order()
    started = time.monotonic()
    with pytest.raises(ContractorError) as err:
        adapter.submit(order)
    assert err.value.retryable and err.value.status_code is None and "timed out" in err.value.message
    assert time.monotonic() - started < 1.1
    assert len(bsl_orders(sim)) == 1  # the contractor did the work; only the answer was lost
    sim.faults()
    result = adapter.submit(order)
    assert result.already_existed and result.contractor_ref == bsl_orders(sim)[0]["reference"]
    assert len(bsl_orders(sim)) == 1


def test_down_and_throttled_are_retryable_with_retry_after(sim, street_lighting):
    sim.faults(down=True)
    with pytest.raises(ContractorError) as err:
        street_lighting.submit(make_order())
    assert (err.value.retryable, err.value.status_code, err.value.retry_after) == (True, 503, 1.0)
    sim.faults(throttle_rate=1.0)
    with pytest.raises(ContractorError) as err:
        street_lighting.fetch_updates(None)
    assert (err.value.retryable, err.value.status_code, err.value.retry_after) == (True, 429, 1.0)


def test_nobody_listening_is_retryable(adapters):
    adapter = adapters("street_lighting", sl_config(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ContractorError) as err:
        adapter.submit(make_order())
    assert err.value.retryable and "connection failed" in err.value.message


@pytest.mark.parametrize("override", [{"api_key": "wrong-key"}, {"request_secret": "not-the-shared-secret"}])
def test_client_errors_are_not_retryable(sim, adapters, override):
    adapter = adapters("street_lighting", sl_config(sim.url, **override))
    with pytest.raises(ContractorError) as err:
        adapter.submit(make_order())
    assert err.value.status_code == 401 and not err.value.retryable
    assert bsl_orders(sim) == []


def test_simulator_refuses_unsigned_stale_and_invalid_requests(sim):
    payload = {"client_reference": "KS-1", "priority": "P3", "location": {"lat": 51.0, "lon": -2.0}}
    body = encode(payload)
    auth = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "k-1"}
    unsigned = httpx.post(f"{sim.url}/orders", content=body, headers=auth)
    assert unsigned.status_code == 401 and unsigned.json()["reason"] == "missing"
    stale = httpx.post(f"{sim.url}/orders", content=body,
                       headers={**auth, **signing.sign(SECRET, body, ts=int(time.time()) - 3600)})
    assert stale.status_code == 401 and stale.json()["reason"] == "expired"
    bad = encode({**payload, "priority": "ASAP"})
    invalid = httpx.post(f"{sim.url}/orders", content=bad, headers={**auth, **signing.sign(SECRET, bad)})
    assert invalid.status_code == 422 and invalid.json()["code"] == "invalid-order"
    nokey = httpx.post(f"{sim.url}/orders", content=body,
                       headers={"Authorization": f"Bearer {API_KEY}", **signing.sign(SECRET, body)})
    assert nokey.status_code == 400
    assert bsl_orders(sim) == []


def test_cancel_shows_in_the_feed_and_is_idempotent(sim, street_lighting):
    ref = street_lighting.submit(make_order()).contractor_ref
    street_lighting.cancel(ref, "reported in error")
    street_lighting.cancel(ref, "reported in error")  # again: fine
    order = street_lighting.client.get_order(ref)
    assert order["status"] == "CANCELLED" and order["cancel_reason"] == "reported in error"
    updates = street_lighting.fetch_updates(None).updates
    assert [(u.contractor_ref, u.status) for u in updates] == [(ref, "cancelled")]
    assert sim.state()["counters"]["cancels"] == 1


def test_cancelling_unknown_or_finished_orders_is_not_retryable(sim, street_lighting):
    with pytest.raises(ContractorError) as err:
        street_lighting.cancel("BSL-999999", "why not")
    assert err.value.status_code == 404 and not err.value.retryable
    ref = street_lighting.submit(make_order()).contractor_ref
    sim.advance(ref=ref, steps=4)
    with pytest.raises(ContractorError) as err:
        street_lighting.cancel(ref, "too late")
    assert err.value.status_code == 409 and not err.value.retryable


def test_polling_pages_through_in_order_with_no_repeats_and_none_missed(sim, adapters):
    adapter = adapters("street_lighting", sl_config(sim.url, page_size=3))
    refs = [adapter.submit(make_order()).contractor_ref for _ in range(3)]
    sim.faults(out_of_order=True)  # every page arrives shuffled
    cursor, seen = None, []

    def drain():
        nonlocal cursor
        while True:
            batch = adapter.fetch_updates(cursor)
            seen.extend(batch.updates)
            cursor = batch.cursor
            if not batch.has_more:
                return

    sim.advance(steps=2)
    drain()
    sim.advance(ref=refs[1], status="ON_HOLD", note="Waiting for power company")
    sim.advance(steps=2)
    drain()
    drain()  # nothing new: no repeats
    feed = [u for o in bsl_orders(sim) for u in o["history"]]
    assert [u.update_id for u in seen] == [u["update_id"] for u in sorted(feed, key=lambda u: u["seq"])]
    assert len({u.update_id for u in seen}) == len(seen) == 3 * 2 + 1 + 3 * 2
    assert sim.state()["counters"]["batches_shuffled"] >= 3
    held = [u for u in seen if u.contractor_ref == refs[1]]
    assert [u.status for u in held] == ["accepted", "scheduled", "on_hold", "in_progress", "completed"]
    assert held[2].note == "Waiting for power company"
    done = [u for u in seen if u.status == "completed"]
    assert {u.contractor_ref for u in done} == set(refs)
    assert all(u.lat is not None and u.photo_url.endswith(".jpg") for u in done)
    assert httpx.get(done[0].photo_url).headers["content-type"] == "image/jpeg"
    scheduled = next(u for u in seen if u.status == "scheduled")
    assert scheduled.scheduled_for is not None and scheduled.scheduled_for > scheduled.occurred_at


def test_bad_cursor_is_a_client_error(sim, street_lighting):
    with pytest.raises(ContractorError) as err:
        street_lighting.fetch_updates("not-a-number")
    assert err.value.status_code == 400 and not err.value.retryable


def test_timed_progress_reaches_fixed_without_being_told(sim, street_lighting):
    sim.control("config", {"step_seconds": 0.1})
    ref = street_lighting.submit(make_order()).contractor_ref
    wait_until(lambda: street_lighting.client.get_order(ref)["status"] == "FIXED", timeout=5)
    statuses = [u.contractor_status for u in street_lighting.fetch_updates(None).updates]
    assert statuses == ["ACKNOWLEDGED", "SCHEDULED", "IN_PROGRESS", "FIXED"]
