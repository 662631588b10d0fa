"""CRM webhooks end to end: a real receiver, real API and worker processes, the outbox in between."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from contractors.signing import SignatureError, verify
from server.db import new_session
from server.jobs.models import Job
from server.outbox.models import OutboxMessage
from server.outbox.worker import deliver_due
from tests.browser.live import ROOT, commit_token, free_street_light, report, revoke_tokens, start_api, stop
from tests.contractors.conftest import wait_until

SECRET = "crm-shared-secret-0123456789"


class Crm:
    """A tiny CRM endpoint: records every POST; answers 503 while `down`."""

    def __init__(self):
        self.down = False
        self.received: list[dict] = []  # accepted deliveries only
        self.refused = 0
        self.lock = threading.Lock()
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with crm.lock:
                    if crm.down:
                        crm.refused += 1
                        status = 503
                    else:
                        crm.received.append({"headers": dict(self.headers.items()), "body": body,
                                             "at": time.monotonic()})
                        status = 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kerbside/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def api(prepared_db, tmp_path_factory):
    server = start_api(tmp_path_factory.mktemp("cc-hooks") / "api.log")
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def who(api):
    made = {role: commit_token(role) for role in ("advisor", "supervisor", "admin")}
    yield {role: secret for role, (_, secret) in made.items()}
    revoke_tokens([i for i, _ in made.values()])


@pytest.fixture
def crm(api, who):
    receiver = Crm()
    with api.client(who["admin"]) as c:
        r = c.post("/api/v1/subscriptions", json={"url": receiver.url, "secret": SECRET,
                                                  "event_types": ["status_changed"]})
    assert r.status_code == 201, r.text
    receiver.sub = r.json()
    assert "secret" not in receiver.sub and receiver.sub["secret_set"] is True
    yield receiver
    with api.client(who["admin"]) as c:
        assert c.delete(f"/api/v1/subscriptions/{receiver.sub['id']}").status_code == 204
    receiver.close()


def move(api, token, ref, status):
    with api.client(token) as c:
        r = c.post(f"/api/v1/jobs/{ref}/status", json={"status": status})
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def pending(sub_id: int, refs: list[str]) -> int:
    """Undelivered webhook rows of these jobs (other tests' jobs may change meanwhile: not counted)."""
    with new_session() as s:
        return s.scalar(select(func.count()).select_from(OutboxMessage).join(Job, Job.id == OutboxMessage.job_id)
                        .where(OutboxMessage.destination == f"webhook:{sub_id}", OutboxMessage.state == "pending",
                               Job.reference.in_(refs)))


def dispatched(ref: str) -> bool:
    with new_session() as s:
        return s.scalar(select(OutboxMessage.state).where(OutboxMessage.idempotency_key == f"dispatch:{ref}")) \
            == "delivered"


def arrival(crm: Crm, ref: str, status: str) -> float | None:
    """When the CRM accepted the change of `ref` to `status` (None if it has not)."""
    with crm.lock:
        for r in crm.received:
            body = json.loads(r["body"])
            if body["job"]["reference"] == ref and body["after"]["status"] == status:
                return r["at"]
    return None


def test_a_crm_that_is_down_gets_every_change_once_in_order_when_it_is_back(api, who, crm, monkeypatch):
    from server.config import get_settings

    s = get_settings()
    monkeypatch.setattr(s, "allow_private_webhook_urls", True)
    monkeypatch.setattr(s, "outbox_backoff_base_seconds", 0.05)
    monkeypatch.setattr(s, "outbox_backoff_cap_seconds", 0.2)
    jobs = [report(api, who["advisor"], free_street_light())["job"]["reference"] for _ in range(2)]
    crm.down = True
    steps = ("sent", "accepted", "in_progress", "completed")
    expected = {ref: [] for ref in jobs}
    for step in steps:  # interleaved across the two jobs
        for ref in jobs:
            expected[ref].append(move(api, who["supervisor"], ref, step))
    assert pending(crm.sub["id"], jobs) == 8

    def tried_while_down() -> bool:
        deliver_due(time_budget_s=1)
        return crm.refused >= 4

    wait_until(tried_while_down, timeout=20, interval=0.1)
    assert crm.received == [] and pending(crm.sub["id"], jobs) == 8
    crm.down = False

    def all_in() -> bool:
        deliver_due(time_budget_s=2)
        return pending(crm.sub["id"], jobs) == 0

    wait_until(all_in, timeout=30, interval=0.1)
    bodies = [b for b in crm.bodies() if b["job"]["reference"] in jobs]
    assert len(bodies) == 8 and len({b["event_id"] for b in bodies}) == 8  # each change once
    for ref in jobs:
        mine = [b for b in bodies if b["job"]["reference"] == ref]
        assert [b["event_id"] for b in mine] == expected[ref]  # in order per job
        assert [b["after"]["status"] for b in mine] == list(steps)
        assert mine[-1]["job"]["open311_status"] == "closed" and mine[-1]["job"]["extended_status"] == "fixed"
    assert crm.received
    for r in crm.received:
        assert verify(SECRET, r["headers"], r["body"]) > 0
        assert r["headers"]["X-Kerbside-Event"] == "status_changed"
        with pytest.raises(SignatureError):
            verify("some-other-secret", r["headers"], r["body"])
    with api.client(who["admin"]) as c:
        view = c.get(f"/api/v1/subscriptions/{crm.sub['id']}").json()
    assert view["deliveries"]["delivered"] >= 8 and view["deliveries"]["dead"] == 0


def test_a_status_change_reaches_the_crm_through_the_running_worker_woken_by_its_commit(api, who, crm):
    # The worker's timer is an hour: only the NOTIFY of each change's commit can wake it within the test, so
    # every arrival below proves the wake-up, with no timed assertion.
    env = {**os.environ, "KERBSIDE_ALLOW_PRIVATE_WEBHOOK_URLS": "true", "KERBSIDE_CONTRACTOR_POLL_SECONDS": "3600",
           "KERBSIDE_OUTBOX_INTERVAL_SECONDS": "3600"}
    worker = subprocess.Popen([sys.executable, "-m", "server.worker"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ref = report(api, who["advisor"], free_street_light())["job"]["reference"]
        # The worker is in its steady state once it has dispatched the new job.
        wait_until(lambda: dispatched(ref), timeout=20, interval=0.1)
        latencies = []
        for step in ("sent", "accepted", "in_progress"):
            started = time.monotonic()
            move(api, who["supervisor"], ref, step)
            hit = wait_until(lambda: arrival(crm, ref, step), timeout=30, interval=0.02)
            latencies.append(hit - started)
    finally:
        stop(worker)
    assert [b["after"]["status"] for b in crm.bodies() if b["job"]["reference"] == ref] == \
        ["sent", "accepted", "in_progress"]
    print("\nCRM webhook latency, woken by NOTIFY: " + ", ".join(f"{x * 1000:.0f} ms" for x in latencies))

# Real processes and committed rows: run after the rollback-per-test modules.
pytestmark = pytest.mark.commits
