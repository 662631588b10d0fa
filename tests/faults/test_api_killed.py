"""Fault 1: the API process is SIGKILLed (three times) while field apps send reports and retry them.

Four client threads post 160 reports, each retried on its own client_id until a 2xx, as the field
app's sync loop does. The API is killed with requests in flight and started again on the same port.
Afterwards: every report exists exactly once, under the reference its 2xx answer gave, whole (job,
events, dispatch message); a repeat of an acknowledged report still gets the original answer; the
worker, running throughout, dispatched each new job exactly once.
"""
from __future__ import annotations

import random
import time

import httpx
import pytest
from sqlalchemy import text

from server.db import get_engine
from tests.browser.live import commit_token, revoke_tokens
from tests.contractors.conftest import free_port, wait_until
from tests.faults import checks, procs
from tests.faults.conftest import record
from tests.faults.load import Sender, report_bodies

pytestmark = [pytest.mark.commits, pytest.mark.timeout(240)]

REPORTS, THREADS, KILLS = 160, 4, 3


def test_killing_the_api_mid_request_loses_and_doubles_no_report(prepared_db, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    running = procs.Procs()
    token_id, token = commit_token("field_worker")
    api = running.add(procs.api(port, tmp_path / "api.log"))
    worker = running.add(procs.worker(tmp_path / "worker.log"))
    bodies = report_bodies(REPORTS, seed=random.SystemRandom().getrandbits(64))
    cids = [b["client_id"] for b in bodies]
    sender = Sender(url, token)
    kills: list[dict] = []
    try:
        api.start()
        procs.wait_up(api, url + "/healthz", ok=(200,))
        worker.start()
        threads = sender.run(bodies, THREADS, timeout=150)
        for k in range(KILLS):
            target = (k + 1) * REPORTS // (KILLS + 1)
            wait_until(lambda: len(sender.acks) >= target or not any(t.is_alive() for t in threads), timeout=120,
                       interval=0.005)
            acked_before = len(sender.acks)
            killed_at = time.monotonic()
            api.kill()
            api.start()
            procs.wait_up(api, url + "/healthz", ok=(200,))
            kills.append({"acked_before": acked_before, "down_s": time.monotonic() - killed_at, "at": killed_at})
        for t in threads:
            t.join(150)
        assert not any(t.is_alive() for t in threads), "the senders did not finish"

        # Nothing refused, everything acknowledged, in the end.
        assert sender.refused == []
        assert len(sender.acks) == REPORTS
        outcomes = sender.outcomes()
        assert outcomes.get("500", 0) == 0, outcomes
        # The kills did land on requests in flight (an answer lost after the server may have committed).
        in_flight = [a for a in sender.attempts if a.error and any(a.started < k["at"] <= a.ended for k in kills)]
        assert in_flight, "no request was in flight at any kill: the test did not test the mid-request case"

        # A repeat of an acknowledged report (a device that never saw the answer) gets the original answer.
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            for body in bodies[::16]:
                r = http.post("/api/v1/reports", json=body)
                assert r.status_code == 200, r.text
                assert r.json()["reference"] == sender.acks[body["client_id"]][1]["reference"]

        # Each report exactly once, under the reference it was acknowledged with, and whole.
        with get_engine().connect() as conn:
            counts = checks.rows_per_client_id(conn, cids)
            assert {cid: n for cid, n in counts.items() if n != 1} == {}
            stored = checks.stored_references(conn, cids)
            for cid, (status, answer) in sender.acks.items():
                assert stored[cid] == (answer["reference"], answer["job"]["reference"]), cid
            assert checks.half_written(conn, cids) == []

        # The worker dispatched every new job exactly once (it kept running through the kills).
        def dispatched() -> bool:
            with get_engine().connect() as conn:
                return conn.execute(text("""
                    SELECT count(*) FROM outbox_messages m JOIN reports r ON r.job_id = m.job_id
                     WHERE r.client_id::text = ANY(:ids) AND m.destination = 'dispatch' AND m.state <> 'delivered'
                """), {"ids": cids}).scalar() == 0

        wait_until(dispatched, timeout=60, interval=0.2)
        with get_engine().connect() as conn:
            twice = conn.execute(text("""
                SELECT j.reference FROM jobs j WHERE j.id IN (SELECT job_id FROM reports WHERE client_id::text = ANY(:ids))
                   AND (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.actor = 'system:dispatch'
                          AND e.type IN ('status_changed', 'queued')) > 1"""), {"ids": cids}).scalars().all()
            jobs = conn.execute(text("SELECT count(DISTINCT job_id) FROM reports WHERE client_id::text = ANY(:ids)"),
                                {"ids": cids}).scalar()
        assert twice == []
    finally:
        sender.stop.set()
        running.stop_all()
        revoke_tokens([token_id])
        # Events are append-only, so the jobs stay; cancelled, no later test's report attaches to them and
        # no crew's load counts them.
        with get_engine().begin() as conn:
            conn.execute(text("""UPDATE jobs SET status = 'cancelled' WHERE id IN (
                                   SELECT job_id FROM reports WHERE client_id::text = ANY(:ids))"""), {"ids": cids})

    replays = sum(1 for s, _ in sender.acks.values() if s == 200)
    record("api_killed", (
        f"API SIGKILL ×{KILLS}: {REPORTS} reports sent by {THREADS} clients, {len(sender.attempts)} attempts "
        f"({dict(outcomes)}); {len(in_flight)} requests in flight at a kill; {len(sender.retried())} reports "
        f"retried; {REPORTS} acknowledged ({REPORTS - replays} × 201, {replays} × 200 replay of a commit whose "
        f"answer was lost); stored exactly once: {REPORTS}/{REPORTS}; {jobs} jobs, each dispatched once; "
        f"API down per kill (kill → serving again): " + ", ".join(f"{k['down_s']:.1f} s" for k in kills)))
