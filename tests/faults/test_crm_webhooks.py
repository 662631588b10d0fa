"""Fault 4: a CRM's webhook endpoint is down — answering 503, then refusing connections, then hanging past
our timeout — while real status changes happen on several jobs; then it comes back.

Street-light reports go in through the API; two real workers dispatch them and order them from the
contractor simulator (sent), the simulator's pushes move them along (accepted, scheduled,
in_progress, completed) and a supervisor closes them — six status changes per job, all while the CRM
is unreachable. Once it is back, it has received every change exactly once, in order per job (by
the `sequence` in the bodies, which is the job event id), each one signed.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from contractors.signing import verify
from server.db import new_session
from server.jobs.models import Job, JobEvent
from server.outbox.models import OutboxMessage
from tests.contractors.conftest import free_port
from tests.faults import procs
from tests.faults.conftest import record

pytestmark = [pytest.mark.commits, pytest.mark.timeout(300)]

JOBS = 4
SECRET = "crm-fault-test-secret-0123456789abcdef"
STEPS = ["sent", "accepted", "scheduled", "in_progress", "completed", "closed"]
TIMEOUT_S = 2  # the workers' webhook timeout
HANG_S = 4.0  # the CRM's stall in "hang" mode: well past it


class Crm:
    """A CRM endpoint on a fixed port: up (204), failing (503), gone (connection refused) or hanging."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/crm/kerbside"
        self.mode = "up"
        self.accepted: list[dict] = []
        self.turned_away = Counter()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.listen()

    def listen(self) -> None:
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = crm.mode
                if mode == "hang":
                    time.sleep(HANG_S)  # the sender has given up by now: not processed
                with crm.lock:
                    if mode == "up":
                        crm.accepted.append({"headers": dict(self.headers.items()), "body": body})
                    else:
                        crm.turned_away[mode] += 1
                self.send_response(204 if mode == "up" else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def set(self, mode: str) -> None:
        """Change mode; "gone" closes the listening socket (connection refused), anything else listens."""
        if mode == "gone" and self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        elif mode != "gone" and self.server is None:
            self.listen()
        self.mode = mode

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.accepted]

    def close(self) -> None:
        self.set("gone")


def status_events(refs: list[str]) -> dict[str, list[int]]:
    """Each job's status_changed event ids, oldest first: what the CRM must receive, in this order."""
    with new_session() as s:
        rows = s.execute(select(Job.reference, JobEvent.id).join(JobEvent, JobEvent.job_id == Job.id)
                         .where(Job.reference.in_(refs), JobEvent.type == "status_changed").order_by(JobEvent.id))
        out: dict[str, list[int]] = {ref: [] for ref in refs}
        for ref, ev in rows:
            out[ref].append(ev)
        return out


def statuses(refs: list[str]) -> set[str]:
    with new_session() as s:
        return set(s.scalars(select(Job.status).where(Job.reference.in_(refs))))


def undelivered(sub_id: int, refs: list[str]) -> int:
    with new_session() as s:
        return s.scalar(select(func.count()).select_from(OutboxMessage).join(Job, Job.id == OutboxMessage.job_id)
                        .where(OutboxMessage.destination == f"webhook:{sub_id}", OutboxMessage.state != "delivered",
                               Job.reference.in_(refs)))


def test_a_crm_that_was_down_gets_every_status_change_once_in_order_per_job(stack):
    sim = stack.sim
    sim.control("reset")
    sim.control("config", {"callback_url": stack.url})
    crm = Crm()
    with stack.client("admin") as c:
        r = c.post("/api/v1/subscriptions", json={"url": crm.url, "secret": SECRET, "event_types": ["status_changed"]})
    assert r.status_code == 201, r.text
    sub = r.json()
    refs: list[str] = []
    try:
        crm.set("failing")
        down_at = time.monotonic()
        refs = stack.report_lights(JOBS)
        stack.worker(KERBSIDE_WEBHOOK_TIMEOUT_SECONDS=str(TIMEOUT_S))
        stack.worker(KERBSIDE_WEBHOOK_TIMEOUT_SECONDS=str(TIMEOUT_S))

        # Sent (the workers' delivery to the contractor), while the CRM answers 503.
        procs.until(lambda: statuses(refs) == {"sent"}, 60, "every job sent to the contractor")
        procs.until(lambda: crm.turned_away["failing"] >= JOBS, 30, "the CRM tried while failing")
        # Accepted … completed (the contractor's pushes), while the CRM refuses connections.
        crm.set("gone")
        with new_session() as s:
            cref = dict(s.execute(select(Job.reference, Job.contractor_ref).where(Job.reference.in_(refs))).all())
        for ref in refs:
            sim.advance(ref=cref[ref], steps=4)
        procs.until(lambda: statuses(refs) == {"completed"}, 60, "every job completed by the contractor's pushes")
        # Closed (a supervisor), while the CRM hangs past the workers' timeout.
        crm.set("hang")
        with stack.client("supervisor") as c:
            for ref in refs:
                r = c.post(f"/api/v1/jobs/{ref}/status", json={"status": "closed", "note": "checked"})
                assert r.status_code == 200, r.text
        procs.until(lambda: crm.turned_away["hang"] >= 2, 30, "the CRM tried while hanging")
        assert crm.accepted == [] and undelivered(sub["id"], refs) == JOBS * len(STEPS)

        # Back.
        crm.set("up")
        back_at = time.monotonic()
        procs.until(lambda: undelivered(sub["id"], refs) == 0, 90, "every change delivered once the CRM is back")
        caught_up = time.monotonic() - back_at
        outage = back_at - down_at

        expected = status_events(refs)
        bodies = [b for b in crm.bodies() if b["job"]["reference"] in refs]
        for ref in refs:
            mine = [b for b in bodies if b["job"]["reference"] == ref]
            # Every change, once, in the order it happened (sequence = the job event id).
            assert [b["sequence"] for b in mine] == expected[ref], ref
            assert [b["after"]["status"] for b in mine] == STEPS, ref
            assert [b["event_id"] for b in mine] == [b["sequence"] for b in mine]
        for r in crm.accepted:
            assert verify(SECRET, r["headers"], r["body"]) > 0
        with new_session() as s:
            rows = s.execute(select(OutboxMessage.state, OutboxMessage.attempts).join(
                Job, Job.id == OutboxMessage.job_id).where(OutboxMessage.destination == f"webhook:{sub['id']}",
                                                          Job.reference.in_(refs))).all()
        assert {st for st, _ in rows} == {"delivered"}
        attempts = sum(n for _, n in rows)
        retried = sum(1 for _, n in rows if n > 1)
        assert retried >= JOBS  # each job's first change waited out the whole outage
    finally:
        with stack.client("admin") as c:
            c.delete(f"/api/v1/subscriptions/{sub['id']}")
        crm.close()

    record("crm_webhooks", (
        f"CRM webhook outage: {JOBS} jobs × {len(STEPS)} status changes ({', '.join(STEPS)}) = {JOBS * len(STEPS)} "
        f"changes made while the CRM was down for {outage:.1f} s (503 ×{crm.turned_away['failing']}, then "
        f"connection refused, then hanging past the {TIMEOUT_S} s timeout ×{crm.turned_away['hang']}); 2 workers. "
        f"After it came back: all delivered in {caught_up:.1f} s, {len(bodies)} bodies received for "
        f"{JOBS * len(STEPS)} changes (none lost, none twice), in order per job by sequence; {attempts} attempts "
        f"in all, {retried} messages retried."))
