"""Fault 3: contractor delivery under every fault at once, from report to completed, over real processes.

Street-light reports go in through the API; two workers dispatch them and order each from the
contractor simulator while it is down (503), then slow, answering 500s and stalling past our
timeout — and one worker is SIGKILLed mid-delivery and replaced. Once every order is placed, the
simulator advances them: half of the jobs are pushed by the simulator itself, every batch shuffled
and sent twice; the other half by hand, the final update first and the earlier ones late. Every job
is ordered exactly once, ends completed with one completion, and shows each failed attempt on its
timeline (numbered 1…n, then the delivery as attempt n+1).
"""
from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from contractors.signing import sign
from server.db import new_session
from server.inbound.models import InboundUpdate
from server.jobs.models import Job, JobEvent
from server.outbox.models import OutboxMessage
from tests.faults import procs
from tests.faults.conftest import CONTRACTOR, record

pytestmark = [pytest.mark.commits, pytest.mark.timeout(300)]

JOBS = 8
SIM_PATH = ["sent", "accepted", "scheduled", "in_progress", "completed"]  # every step pushed
HAND_PATH = ["sent", "accepted", "in_progress", "completed"]  # FIXED first: the shortest way there


def orders(refs: list[str]) -> dict[str, OutboxMessage]:
    """The order.submit message of each job that has one."""
    with new_session() as s:
        rows = s.execute(select(Job.reference, OutboxMessage).join(OutboxMessage, OutboxMessage.job_id == Job.id)
                         .where(Job.reference.in_(refs), OutboxMessage.topic == "order.submit")).all()
    return {ref: msg for ref, msg in rows}


def timeline(ref: str) -> tuple[Job, list[JobEvent]]:
    with new_session() as s:
        job = s.scalar(select(Job).where(Job.reference == ref))
        return job, list(s.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)))


def failed_attempts(refs: list[str]) -> dict[str, int]:
    out = {}
    for ref in refs:
        _, evs = timeline(ref)
        out[ref] = sum(e.type == "delivery_failed" and e.data.get("topic") == "order.submit" for e in evs)
    return out


def inbound_results(job_id: int) -> list[str]:
    with new_session() as s:
        return list(s.scalars(select(InboundUpdate.result).where(InboundUpdate.job_id == job_id)))


def push(stack, updates: list[dict]) -> list[str]:
    """POST one signed batch to our webhook as the contractor would; returns the per-update results."""
    body = json.dumps({"updates": updates}).encode()
    r = httpx.post(f"{stack.url}/api/v1/contractors/{CONTRACTOR}/webhook", content=body, timeout=30,
                   headers={"content-type": "application/json", **sign(stack.secret, body)})
    assert r.status_code == 200, r.text
    return [x["result"] for x in r.json()["results"]]


def test_every_job_is_ordered_once_and_completed_whatever_the_contractor_and_workers_do(stack):
    sim = stack.sim
    sim.control("reset")
    sim.faults(down=True)
    refs = stack.report_lights(JOBS)

    # Down: two workers dispatch the jobs and try each order, again and again, in vain.
    a, b = stack.worker(), stack.worker()
    procs.until(lambda: min(failed_attempts(refs).values()) >= 2, 60, "every order tried twice while the contractor "
                "is down")
    assert all(m.state == "pending" for m in orders(refs).values())

    # Slow, 500s, stalls past our 2 s timeout (the order is made, the answer comes too late) — and the
    # first worker is killed while its call is in flight (every call takes ≥ 0.6 s here).
    seen = sim.state()["counters"].get("requests", 0)
    sim.faults(slow_ms=600, fail_rate=0.25, timeout_rate=0.25, timeout_sleep_s=3.0, seed=5)
    procs.until(lambda: sim.state()["counters"].get("requests", 0) >= seen + 2, 30, "calls in flight")
    killed_at = time.monotonic()
    a.kill()
    c = stack.worker()
    procs.until(lambda: len(orders(refs)) == JOBS and all(m.state == "delivered" for m in orders(refs).values()),
                120, "every order delivered")
    delivered_after = time.monotonic() - killed_at
    counters = dict(sim.state()["counters"])

    # Updates: duplicated and shuffled by the simulator's pusher for one half; by hand for the other.
    sim.faults(duplicate_push_rate=1.0, out_of_order=True, seed=9)
    by_sim, by_hand = refs[0::2], refs[1::2]
    contractor_ref = {ref: timeline(ref)[0].contractor_ref for ref in refs}
    sim.control("config", {"callback_url": None})  # the hand half is not pushed by the simulator
    hand_results = Counter()
    for ref in by_hand:
        # One step per call, so each update is stamped later than the one before.
        ups = [sim.advance(ref=contractor_ref[ref], steps=1)[0] for _ in range(4)]
        assert [u["status"] for u in ups] == ["ACKNOWLEDGED", "SCHEDULED", "IN_PROGRESS", "FIXED"]
        hand_results.update(push(stack, [ups[3]]))  # the completion overtakes everything
        for u in ups[:3]:  # the earlier ones arrive late, one by one
            hand_results.update(push(stack, [u]))
        hand_results.update(push(stack, list(reversed(ups))))  # and the whole lot again
    sim.control("config", {"callback_url": stack.url})
    for ref in by_sim:
        sim.advance(ref=contractor_ref[ref], steps=4)

    def all_completed() -> bool:
        with new_session() as s:
            return set(s.scalars(select(Job.status).where(Job.reference.in_(refs)))) == {"completed"}

    procs.until(all_completed, 60, "every job completed")
    sim_counters = dict(sim.state()["counters"])

    # Exactly once, the right end state, and the attempts on the timeline.
    sim_orders = Counter(o["client_reference"] for o in sim.state()["orders"])
    figures = Counter()
    for ref in refs:
        assert sim_orders[ref] == 1, (ref, sim_orders[ref])
        job, evs = timeline(ref)
        msg = orders([ref])[ref]
        assert job.status == "completed" and job.resolved_at is not None
        moves = [e.after["status"] for e in evs if e.type == "status_changed"]
        assert moves == (SIM_PATH if ref in by_sim else HAND_PATH), (ref, moves)
        delivered = [e for e in evs if e.type == "order_delivered"]
        assert len(delivered) == 1 and delivered[0].data["contractor_ref"] == job.contractor_ref
        failed = [e for e in evs if e.type == "delivery_failed" and e.data.get("topic") == "order.submit"]
        assert [e.data["attempt"] for e in failed] == list(range(1, len(failed) + 1)), ref
        assert delivered[0].data["attempt"] == msg.attempts == len(failed) + 1, ref
        assert any("503" in e.data["error"] for e in failed), ref  # the outage is on the timeline
        assert not any(e.type == "delivery_dead" for e in evs)
        # Each of the four updates recorded once: all applied in turn, or the completion and three stale.
        results = sorted(inbound_results(job.id))
        assert results == (["applied"] * 4 if ref in by_sim else ["applied", "stale", "stale", "stale"]), (ref, results)
        figures["attempts"] += msg.attempts
        figures["failed"] += len(failed)
        figures["already_existed"] += bool(delivered[0].data.get("already_existed"))
        for e in failed:
            err = e.data["error"]
            kind = "503" if "503" in err else "500" if "500" in err else "timeout" if "imeout" in err else "other"
            figures[f"failed_{kind}"] += 1
    # The hand-pushed half: the completion applied, the late ones ignored as stale, the repeats as duplicates.
    assert hand_results["applied"] == len(by_hand)
    assert hand_results["stale"] == 3 * len(by_hand)
    assert hand_results["duplicate"] == 4 * len(by_hand)
    assert sim_counters.get("pushes_duplicated", 0) >= 1 and sim_counters.get("batches_shuffled", 0) >= 1
    assert a.starts == 1 and not a.alive() and b.alive() and c.alive()

    record("delivery", (
        f"Contractor delivery under faults: {JOBS} street-light reports → {JOBS} jobs, 2 workers, one SIGKILLed "
        f"mid-delivery and replaced. Simulator: down, then slow 600 ms + 25% 500s + 25% stalls of 3 s past our "
        f"2 s timeout ({counters.get('refused_down', 0)} refused while down, {counters.get('injected_500', 0)} × 500, "
        f"{counters.get('injected_timeouts', 0)} stalls). {figures['attempts']} order attempts recorded "
        f"({figures['failed']} failed on the timelines: {figures['failed_503']} × 503, {figures['failed_500']} × 500, "
        f"{figures['failed_timeout']} timeouts); {figures['already_existed']} deliveries found the order already "
        f"made (a stalled or killed attempt had landed); all delivered {delivered_after:.1f} s after the kill; "
        f"orders at the contractor: {sum(sim_orders[r] for r in refs)} for {JOBS} jobs. Updates: "
        f"{sim_counters.get('pushes_duplicated', 0)} pushes sent twice, {sim_counters.get('batches_shuffled', 0)} "
        f"batches shuffled; by hand: completion first, then {3 * len(by_hand)} late updates (stale) and "
        f"{4 * len(by_hand)} repeats (duplicate). End: {JOBS}/{JOBS} completed, one completion each."))
