"""The Open311 adapter against the simulator's GeoReport v2 back-office mode."""
from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from contractors.base import ContractorError, ContractorNote
from tests.contractors.conftest import o311_config, make_order


def requests_(sim) -> list[dict]:
    return [o for o in sim.state()["orders"] if o["kind"] == "open311"]


def test_submit_is_deduplicated_on_the_external_id(sim, open311):
    order = make_order()
    first = open311.submit(order)
    assert first.contractor_ref.startswith("311-")
    assert open311.submit(order).contractor_ref == first.contractor_ref
    assert len(requests_(sim)) == 1 and sim.state()["counters"]["duplicates_suppressed"] == 1
    # A new send of the same job (new key) is a new request: the key, not the job, is what dedupes.
    assert open311.submit(make_order(job_reference=order.job_reference, idempotency_key="resend-2")).contractor_ref \
        != first.contractor_ref


def test_request_is_stored_with_our_fields(sim, open311):
    order = make_order(category="pothole", answers={"depth": "deep"})
    ref = open311.submit(order).contractor_ref
    shown = httpx.get(f"{sim.url}/open311/requests/{ref}.json").json()[0]
    assert shown["status"] == "open" and shown["lat"] == order.lat and shown["long"] == order.lon
    assert requests_(sim)[0]["client_reference"] == order.idempotency_key


def test_unmapped_category_is_not_retryable(open311):
    with pytest.raises(ContractorError) as err:
        open311.submit(make_order(category="graffiti"))
    assert not err.value.retryable and "graffiti" in err.value.message


def test_wrong_key_is_a_client_error_and_500_is_retryable(sim, adapters, open311):
    bad = adapters("open311", o311_config(sim.url, api_key="nope"))
    with pytest.raises(ContractorError) as err:
        bad.submit(make_order())
    assert err.value.status_code == 403 and not err.value.retryable and "Invalid api_key" in err.value.message
    sim.faults(fail_rate=1.0)
    with pytest.raises(ContractorError) as err:
        open311.fetch_updates(None)
    assert err.value.retryable and err.value.status_code == 500


def test_polling_with_the_cursor_sees_each_update_once_even_within_one_second(sim, open311):
    refs = [open311.submit(make_order()).contractor_ref for _ in range(3)]
    sim.faults(out_of_order=True)
    sim.advance(steps=1)  # three updates, very likely in the same second
    batch = open311.fetch_updates(None)
    assert sorted(u.contractor_ref for u in batch.updates) == sorted(refs)
    assert {u.status for u in batch.updates} == {"accepted"}
    assert open311.fetch_updates(batch.cursor).updates == ()  # asked again from the same second: no repeats
    sim.advance(ref=refs[0], steps=3)
    sim.advance(ref=refs[1], status="not_councils_responsibility", note="Private road")
    later = open311.fetch_updates(batch.cursor)
    assert [u.contractor_status for u in later.updates if u.contractor_ref == refs[0]] == [
        "action_scheduled", "in_progress", "fixed"]
    rejected = next(u for u in later.updates if u.contractor_ref == refs[1])
    assert (rejected.status, rejected.note) == ("rejected", "Private road")
    fixed = next(u for u in later.updates if u.contractor_status == "fixed")
    assert fixed.status == "completed" and fixed.photo_url.endswith(f"{refs[0]}.jpg")
    assert open311.fetch_updates(later.cursor).updates == ()
    total = len(batch.updates) + len(later.updates)
    assert total == sim.state()["updates"] == 3 + 3 + 1
    times = [u.occurred_at for u in later.updates]
    assert times == sorted(times) and all(isinstance(t, datetime) for t in times)


def test_cancel_closes_the_request_without_feeding_back_an_update(sim, open311):
    ref = open311.submit(make_order()).contractor_ref
    open311.cancel(ref, "duplicate of KS-1")
    shown = httpx.get(f"{sim.url}/open311/requests/{ref}.json").json()[0]
    assert shown["status"] == "closed"
    assert requests_(sim)[0]["cancel_reason"] == "Cancelled by the council: duplicate of KS-1"
    assert open311.fetch_updates(None).updates == ()
    with pytest.raises(ContractorError) as err:
        open311.cancel("311-999999", "nope")
    assert err.value.status_code == 404 and not err.value.retryable


def test_a_note_reaches_the_back_office_as_a_comment_and_leaves_the_status(sim, open311):
    ref = open311.submit(make_order()).contractor_ref
    note = ContractorNote(update_id="kerbside-citizen-7", text="Still not fixed",
                          media_urls=("https://fms.example/a.jpeg", "https://fms.example/b.jpeg"))
    assert open311.add_note(ref, note) is True
    assert open311.add_note(ref, note) is True  # a repeat is the same comment
    [shown] = requests_(sim)
    assert shown["comments"] == [{"update_id": "kerbside-citizen-7", "description": "Still not fixed",
                                  "media_url": ["https://fms.example/a.jpeg", "https://fms.example/b.jpeg"]}]
    assert httpx.get(f"{sim.url}/open311/requests/{ref}.json").json()[0]["status"] == "open"
    with pytest.raises(ContractorError) as err:
        open311.add_note("311-999999", note)
    assert err.value.status_code == 404 and not err.value.retryable


def test_cancel_can_be_refused_by_config(sim, adapters):
    adapter = adapters("open311", o311_config(sim.url, cancel_via_update=False))
    with pytest.raises(ContractorError) as err:
        adapter.cancel("311-000001", "x")
    assert not err.value.retryable


def test_open311_adapter_takes_no_pushes(open311):
    from contractors.base import PayloadError

    assert not open311.supports_push
    with pytest.raises(PayloadError):
        open311.parse_webhook({}, b"{}")
