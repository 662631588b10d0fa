"""Durable delivery and contractor updates against the real contractor simulator (real HTTP, real commits)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from contractors import WorkOrder
from contractors.signing import sign
from server.db import new_session
from server.dispatch.models import Contractor
from server.inbound.models import InboundUpdate
from server.jobs.models import Job, JobEvent
from server.outbox.models import OutboxMessage
from server.outbox.service import enqueue
from server.outbox.worker import deliver_due
from tests.contractors.conftest import Sim, free_port, wait_until

pytestmark = pytest.mark.commits
ROOT = Path(__file__).resolve().parents[2]
API_KEY, SECRET = "delivery-test-key", "delivery-test-secret"


@pytest.fixture(scope="module")
def simulator(prepared_db, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    env = {**os.environ, "SIM_API_KEY": API_KEY, "SIM_SECRET": SECRET, "SIM_SEED": "11"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "contractors.simulator", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(url), timeout=20, interval=0.1)
    yield Sim(url)
    proc.terminate()
    proc.wait(10)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def sim(simulator):
    simulator.control("reset")
    simulator.faults()
    return simulator


@pytest.fixture
def fast_outbox(monkeypatch):
    from server.config import get_settings

    s = get_settings()
    monkeypatch.setattr(s, "outbox_backoff_base_seconds", 0.05)
    monkeypatch.setattr(s, "outbox_backoff_cap_seconds", 0.2)
    return s


@pytest.fixture
def contractor(sim):
    """A contractor row (committed) whose adapter talks to the test simulator."""
    name = f"test-lighting-{uuid.uuid4().hex[:8]}"
    with new_session() as s:
        c = Contractor(name=name, title="Test lighting", adapter="street_lighting", categories=["street_light"],
                       config={"base_url": sim.url, "api_key": API_KEY, "webhook_secret": SECRET, "timeout_s": 1.0,
                               "poll": False})
        s.add(c)
        s.commit()
        yield c
        s.execute(text("UPDATE contractors SET active = false WHERE id = :i"), {"i": c.id})
        s.commit()


def make_jobs(contractor: Contractor, n: int) -> list[str]:
    """n committed street-light jobs held by `contractor`, each with an order.submit message."""
    refs = []
    with new_session() as s:
        row = s.execute(text("""SELECT a.id, ST_X(ST_Transform(a.geom,4326)) lon, ST_Y(ST_Transform(a.geom,4326)) lat
                                 FROM assets a JOIN asset_layers l ON l.id=a.layer_id
                                WHERE l.name='street_lights' ORDER BY a.id LIMIT 1""")).one()
        for _ in range(n):
            ref = "T-" + uuid.uuid4().hex[:10].upper()
            now = datetime.now(timezone.utc)
            job = Job(reference=ref, category_code="street_light", asset_id=row.id,
                      geom=func.ST_Transform(func.ST_SetSRID(func.ST_MakePoint(row.lon, row.lat), 4326), 27700),
                      priority="normal", status="new", sla_policy={"kind": "hours", "hours": 72}, sla_started_at=now,
                      due_at=now + timedelta(days=3), contractor_id=contractor.id, dispatch_count=1)
            s.add(job)
            s.flush()
            order = WorkOrder(job_reference=ref, idempotency_key=f"order:{ref}:1", category="street_light",
                              priority="normal", description="Lamp out", lat=row.lat, lon=row.lon,
                              due_at=job.due_at, asset_ref="X", asset_layer="street_lights")
            enqueue(s, destination=f"contractor:{contractor.name}", topic="order.submit", job=job,
                    payload=order.to_dict(), key=order.idempotency_key)
            refs.append(ref)
        s.commit()
    return refs


def job_state(ref: str) -> tuple[Job, list[JobEvent], OutboxMessage]:
    with new_session() as s:
        job = s.scalar(select(Job).where(Job.reference == ref))
        evs = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)))
        msg = s.scalar(select(OutboxMessage).where(OutboxMessage.job_id == job.id))
        return job, evs, msg


def sim_orders(sim: Sim, ref: str) -> list[dict]:
    return [o for o in sim.state()["orders"] if o.get("job_reference") == ref or o.get("client_reference") == ref]


def drain(timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliver_due(time_budget_s=2)
        with new_session() as s:
            if not s.scalar(select(func.count()).select_from(OutboxMessage).where(
                    OutboxMessage.state == "pending", OutboxMessage.destination.like("contractor:test-lighting-%"))):
                return
        time.sleep(0.05)


def test_an_order_is_delivered_once_and_the_job_is_sent(sim, contractor, fast_outbox):
    [ref] = make_jobs(contractor, 1)
    drain()
    job, evs, msg = job_state(ref)
    assert msg.state == "delivered" and msg.attempts == 1
    assert job.status == "sent" and job.contractor_ref and job.contractor_ref.startswith("BSL-")
    assert [e.type for e in evs][-2:] == ["order_delivered", "status_changed"]
    assert len(sim_orders(sim, ref)) == 1


def test_an_outage_loses_nothing_and_the_timeline_shows_each_attempt(sim, contractor, fast_outbox):
    sim.faults(down=True)
    refs = make_jobs(contractor, 3)

    def retried() -> bool:
        deliver_due(time_budget_s=1)
        return job_state(refs[0])[2].attempts >= 2

    wait_until(retried, timeout=20, interval=0.2)
    job, evs, msg = job_state(refs[0])
    assert msg.state == "pending" and msg.attempts >= 2 and "503" in (msg.last_error or "")
    assert job.status == "new"
    sim.faults()  # the contractor comes back
    drain()
    for ref in refs:
        job, evs, msg = job_state(ref)
        assert msg.state == "delivered" and job.status == "sent"
        failed = [e for e in evs if e.type == "delivery_failed"]
        assert len(failed) == msg.attempts - 1 >= 1
        assert [e.data["attempt"] for e in failed] == list(range(1, msg.attempts))
        assert len(sim_orders(sim, ref)) == 1


def test_500s_and_timeouts_are_retried_without_duplicate_orders(sim, contractor, fast_outbox):
    sim.faults(fail_rate=0.5, timeout_rate=0.3, timeout_sleep_s=1.5, seed=3)
    refs = make_jobs(contractor, 6)
    drain(timeout=60)
    sim.faults()
    drain()
    for ref in refs:
        job, _, msg = job_state(ref)
        assert msg.state == "delivered" and job.status == "sent", (ref, msg.last_error)
        assert len(sim_orders(sim, ref)) == 1  # a timed-out attempt that did land was not ordered twice


def test_a_refused_order_is_dead_and_can_be_sent_again(sim, contractor, fast_outbox):
    with new_session() as s:
        c = s.get(Contractor, contractor.id)
        c.config = {**c.config, "api_key": "wrong-key"}  # the contractor answers 401: not retryable
        s.commit()
    [ref] = make_jobs(contractor, 1)
    drain()
    job, evs, msg = job_state(ref)
    assert msg.state == "dead" and msg.attempts == 1 and "delivery_dead" in [e.type for e in evs]
    assert job.queue_reason and "failed" in job.queue_reason
    with new_session() as s:
        c = s.get(Contractor, contractor.id)
        c.config = {**c.config, "api_key": API_KEY}
        s.commit()
    with new_session() as s:
        from server.outbox.worker import retry

        retry(s, s.get(OutboxMessage, msg.id), "supervisor:test")
        s.commit()
    drain()
    job, evs, msg = job_state(ref)
    assert msg.state == "delivered" and job.status == "sent" and job.queue_reason is None
    assert "delivery_retried" in [e.type for e in evs]
    assert len(sim_orders(sim, ref)) == 1


def test_supervisors_list_dead_deliveries_and_send_them_again(client, tokens, db):
    from tests.conftest import auth

    msg = OutboxMessage(destination="contractor:nowhere", topic="order.submit", payload={}, state="dead",
                        attempts=10, idempotency_key=f"test:{uuid.uuid4()}", last_error="HTTP 500")
    db.add(msg)
    db.flush()
    listed = client.get("/api/v1/outbox", params={"state": "dead", "limit": 500}, headers=auth(tokens["supervisor"]))
    assert listed.status_code == 200
    row = next(m for m in listed.json()["items"] if m["id"] == msg.id)
    assert row["last_error"] == "HTTP 500" and row["attempts"] == 10
    assert client.get("/api/v1/outbox", headers=auth(tokens["advisor"])).status_code == 403
    r = client.post(f"/api/v1/outbox/{msg.id}/retry", headers=auth(tokens["supervisor"]))
    assert r.status_code == 200 and r.json()["state"] == "pending" and r.json()["attempts"] == 0
    assert client.post("/api/v1/outbox/999999999/retry", headers=auth(tokens["supervisor"])).status_code == 404


def _worker(env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, "KERBSIDE_OUTBOX_INTERVAL_SECONDS": "0.2", "KERBSIDE_OUTBOX_BACKOFF_BASE_SECONDS": "0.1",
           "KERBSIDE_OUTBOX_BACKOFF_CAP_SECONDS": "0.5", "KERBSIDE_CONTRACTOR_POLL_SECONDS": "3600", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "server.worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _all_delivered(refs: list[str]) -> bool:
    with new_session() as s:
        states = s.scalars(select(OutboxMessage.state).join(Job, Job.id == OutboxMessage.job_id)
                           .where(Job.reference.in_(refs))).all()
    return len(states) == len(refs) and all(st == "delivered" for st in states)


def test_two_workers_and_a_worker_killed_mid_delivery_still_order_each_job_once(sim, contractor):
    sim.faults(slow_ms=800, seed=5)  # every order takes a while: workers die with calls in flight
    refs = make_jobs(contractor, 8)
    first, second = _worker({}), _worker({})
    try:
        wait_until(lambda: sim.state()["counters"].get("orders_received", 0) >= 1, timeout=20, interval=0.05)
        first.send_signal(signal.SIGKILL)  # killed while a delivery is in flight
        first.wait(5)
        restarted = _worker({})
        try:
            wait_until(lambda: _all_delivered(refs), timeout=90, interval=0.3)
        finally:
            restarted.terminate()
            restarted.wait(10)
    finally:
        second.terminate()
        second.wait(10)
    for ref in refs:
        job, evs, msg = job_state(ref)
        assert job.status == "sent" and len(sim_orders(sim, ref)) == 1
        assert sum(e.type == "order_delivered" for e in evs) == 1


def test_pushed_updates_move_the_job_to_completed_once_in_order(sim, contractor, fast_outbox, client):
    [ref] = make_jobs(contractor, 1)
    drain()
    job, _, _ = job_state(ref)
    updates = sim.advance(ref=job.contractor_ref, steps=4)  # ACK, SCHEDULED, IN_PROGRESS, FIXED
    assert [u["status"] for u in updates] == ["ACKNOWLEDGED", "SCHEDULED", "IN_PROGRESS", "FIXED"]
    import json

    body = json.dumps({"updates": list(reversed(updates[:3])) + [updates[3], updates[3]]}).encode()
    headers = {"content-type": "application/json", **sign(SECRET, body)}
    # Pushed shuffled and with a duplicate: the adapter orders them, the server applies each once.
    r = client.post(f"/api/v1/contractors/{contractor.name}/webhook", content=body, headers=headers)
    assert r.status_code == 200, r.text
    results = [x["result"] for x in r.json()["results"]]
    assert results.count("applied") == 4 and results.count("duplicate") == 1


def test_forged_stale_and_unknown_webhooks_are_refused(sim, contractor, client):
    body = b'{"updates": []}'
    r = client.post(f"/api/v1/contractors/{contractor.name}/webhook", content=body,
                    headers={"content-type": "application/json", **sign("not-the-secret", body)})
    assert r.status_code == 401 and r.json()["type"].endswith("/invalid-signature")
    old = sign(SECRET, body, ts=int(time.time()) - 3600)
    r = client.post(f"/api/v1/contractors/{contractor.name}/webhook", content=body, headers=old)
    assert r.status_code == 401
    r = client.post(f"/api/v1/contractors/{contractor.name}/webhook", content=body)
    assert r.status_code == 401
    r = client.post("/api/v1/contractors/nobody/webhook", content=body, headers=sign(SECRET, body))
    assert r.status_code == 404 and r.json()["type"].endswith("/unknown-contractor")
    with new_session() as s:
        assert s.scalar(select(func.count()).select_from(InboundUpdate).where(
            InboundUpdate.contractor_id == contractor.id)) == 0


def test_a_residents_comment_reaches_the_contractor_holding_the_job_and_moves_nothing(sim, contractor,
                                                                                      fast_outbox):
    """Open311 citizen updates: the Open311 contractor gets the comment; street lighting's API takes none."""
    from server.auth.tokens import create_token
    from server.deps import Principal
    from server.open311 import citizen

    with new_session() as s:
        o311 = Contractor(name=f"test-lighting-o311-{uuid.uuid4().hex[:8]}", title="Test Open311 back office",
                          adapter="open311", categories=["street_light"],
                          config={"base_url": f"{sim.url}/open311", "api_key": API_KEY, "email": "k@example.org",
                                  "timeout_s": 1.0, "service_codes": {"street_light": "SL"}, "poll": False})
        s.add(o311)
        row, _ = create_token(s, "open311_client", name="fixmystreet")
        s.commit()
        fms = Principal(row.id, row.name, row.role)
    refs = {"open311": make_jobs(o311, 1)[0], "bsl": make_jobs(contractor, 1)[0]}
    drain()
    for n, ref in enumerate(refs.values()):
        job, _, _ = job_state(ref)
        assert job.status == "sent" and job.contractor_ref, ref
        with new_session() as s:
            citizen.post(s, fms, {"service_request_id": [ref], "update_id": [f"fms-{uuid.uuid4().hex}"],
                                  "status": ["OPEN"], "updated_datetime": [datetime.now(timezone.utc).isoformat()],
                                  "description": [f"Still dark {n}"], "media_url": ["https://fms.example/1.jpeg"]})
    drain()
    for kind, ref in refs.items():
        job, evs, _ = job_state(ref)
        assert job.status == "sent", kind
        with new_session() as s:
            note = s.scalar(select(OutboxMessage).where(OutboxMessage.job_id == job.id,
                                                        OutboxMessage.topic == "order.note"))
            assert note.state == "delivered", (kind, note.last_error)
        types = [e.type for e in evs]
        assert types[-2] == "citizen_update"
        assert types[-1] == ("note_forwarded" if kind == "open311" else "note_not_forwarded"), types
    held = job_state(refs["open311"])[0].contractor_ref
    [order] = [o for o in sim.state()["orders"] if o["kind"] == "open311" and o["reference"] == held]
    assert [c["description"] for c in order["comments"]] == ["Still dark 0"]
    assert order["comments"][0]["media_url"] == ["https://fms.example/1.jpeg"]
    with new_session() as s:
        s.execute(text("UPDATE contractors SET active = false WHERE id = :i"), {"i": o311.id})
        s.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = :i"), {"i": row.id})
        s.commit()
