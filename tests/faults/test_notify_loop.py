"""The loop with the reporter against running processes: API, worker, the GOV.UK Notify simulator and the
street-lighting contractor simulator, talking real HTTP.

- A report with an email and a phone: "received" email and text at Notify with the reference and the
  promised date; a second reporter of the same light is told too; the contractor completes: "fixed" to
  both; the status page says the same; Notify's receipts are recorded.
- A text in quiet hours waits (the email does not); when the quiet hours end it goes.
- Notify down for a while, then back: every message delivered once, in order; a repeated receipt
  changes nothing.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, text

from server.config import get_settings
from server.db import new_session
from server.dispatch.models import Contractor
from server.jobs.models import Job
from server.notifications.models import Notification
from server.outbox.models import OutboxMessage
from tests.browser.live import commit_token, free_street_light, revoke_tokens
from tests.contractors.conftest import free_port
from tests.faults import procs

CONTRACTOR = "street-lighting"
NEVER_QUIET = {"KERBSIDE_NOTIFY_QUIET_START": "00:00", "KERBSIDE_NOTIFY_QUIET_END": "00:00"}


class Loop:
    """Handles on the running processes."""

    def __init__(self, tmp, api_url, notify_url, notify, tokens, running, sim_url):
        self.tmp, self.api_url, self.notify_url = tmp, api_url, notify_url
        self.sim_url = sim_url
        self.notify, self.tokens, self.running = notify, tokens, running

    def messages(self) -> list[dict]:
        return httpx.get(f"{self.notify_url}/_control/messages", timeout=5).json()["messages"]

    def callbacks(self) -> list[dict]:
        return httpx.get(f"{self.notify_url}/_control/messages", timeout=5).json()["callbacks"]

    def report(self, contact: dict, light: dict, url: str | None = None) -> dict:
        body = {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": light["lat"], "lon": light["lon"],
                "accuracy_m": 4.0, "observed_at": datetime.now(timezone.utc).isoformat(), "location_provider": "gps",
                "asset_ref": light["ref"], "answers": {"fault": "out"}, "contact": contact}
        r = httpx.post(f"{url or self.api_url}/api/v1/reports", json=body, timeout=30,
                       headers={"Authorization": f"Bearer {self.tokens['advisor']}"})
        assert r.status_code == 201, r.text
        return r.json()

    def contractor_update(self, job: str, status: str, light: dict | None = None) -> None:
        body = {"update_id": f"loop-{uuid.uuid4()}", "status": status}
        if status == "scheduled":
            body["scheduled_for"] = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
        if status == "completed":  # the contractor's proof of work: a note, a GPS fix, a photo
            body.update(notes="lamp replaced", lat=light["lat"], lon=light["lon"],
                        photo_url=f"{self.sim_url}/photos/{job}.jpg")
        r = httpx.post(f"{self.api_url}/api/v1/contractor/jobs/{job}/updates", timeout=30, json=body,
                       headers={"Authorization": f"Bearer {self.tokens['contractor']}"})
        assert r.status_code == 200, r.text

    def sent_to_contractor(self, job: str) -> None:
        """Wait for the order to reach the contractor; a light outside its service area waits on the
        supervisor's queue instead, so the supervisor gives it to the contractor."""
        def status() -> dict:
            return httpx.get(f"{self.api_url}/api/v1/jobs/{job}", timeout=10, headers={
                "Authorization": f"Bearer {self.tokens['supervisor']}"}).json()

        def dispatched() -> dict | None:
            with new_session() as db:
                row = db.execute(select(Job.status, Job.queue_reason).where(Job.reference == job)).one()
            return {"status": row.status} if row.status != "new" or row.queue_reason else None

        first = procs.until(dispatched, 30, "dispatch")
        if first["status"] == "new":
            r = httpx.post(f"{self.api_url}/api/v1/jobs/{job}/assign", json={"contractor": CONTRACTOR}, timeout=30,
                           headers={"Authorization": f"Bearer {self.tokens['supervisor']}"})
            assert r.status_code == 200, r.text
        procs.until(lambda: status()["status"] == "sent", 30, f"the order sent ({status()})")

    def to(self, address: str) -> list[dict]:
        return [m for m in self.messages() if m["to"] == address]


@pytest.fixture(scope="module")
def loop(prepared_db, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notify-loop")
    api_port, notify_port, sim_port = free_port(), free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    notify_url = f"http://127.0.0.1:{notify_port}"
    s = get_settings()
    with new_session() as db:
        c = db.scalar(select(Contractor).where(Contractor.name == CONTRACTOR))
        original = dict(c.config)
        c.config = {**c.config, "base_url": f"http://127.0.0.1:{sim_port}", "poll": False, "timeout_s": 2.0}
        db.commit()
        cfg = dict(c.config)
    # A quiet window around now (local time) for a worker of the quiet-hours test: texts it writes wait for
    # the window's end.
    local = datetime.now(ZoneInfo(s.timezone))
    quiet = {"KERBSIDE_NOTIFY_QUIET_START": (local - timedelta(hours=1)).strftime("%H:%M"),
             "KERBSIDE_NOTIFY_QUIET_END": (local + timedelta(hours=2)).strftime("%H:%M")}
    running = procs.Procs()
    made = {role: commit_token(role) for role in ("advisor", "supervisor")}
    made["contractor"] = commit_token("contractor", contractor=CONTRACTOR)
    notify = procs.Proc("notify-sim", ["notify_simulator", "--port", str(notify_port)], tmp / "notify.log", {
        "NOTIFY_SIM_API_KEY": s.notify_api_key, "NOTIFY_SIM_RECEIPT_URL": f"{api_url}/api/v1/notify/receipts",
        "NOTIFY_SIM_INBOUND_URL": f"{api_url}/api/v1/notify/inbound-sms",
        "NOTIFY_SIM_CALLBACK_TOKEN": s.notify_callback_token, "NOTIFY_SIM_RECEIPT_DELAY": "0.1",
        "NOTIFY_SIM_LOG": str(tmp / "notify-messages.jsonl")})
    try:
        api = running.add(procs.api(api_port, tmp / "api.log", NEVER_QUIET)).start()
        running.add(procs.simulator(sim_port, tmp / "sim.log", {
            "SIM_API_KEY": cfg["api_key"], "SIM_SECRET": cfg["webhook_secret"], "SIM_STEP_SECONDS": "0",
            "SIM_CALLBACK_URL": api_url, "SIM_CALLBACK_PATH": f"/api/v1/contractors/{CONTRACTOR}/webhook",
            "SIM_SEED": "23", "SIM_REF_PREFIX": "N" + uuid.uuid4().hex[:6].upper()})).start()
        running.add(notify).start()
        worker_env = {**NEVER_QUIET, "KERBSIDE_NOTIFY_BASE_URL": notify_url, "KERBSIDE_PUBLIC_BASE_URL": api_url}
        worker = running.add(procs.worker(tmp / "worker.log", worker_env)).start()
        procs.wait_up(api, api_url + "/healthz", ok=(200,))
        procs.wait_up(notify, notify_url + "/_control/messages", ok=(200,))
        handle = Loop(tmp, api_url, notify_url, notify,
                      {role: secret for role, (_, secret) in made.items()}, running, f"http://127.0.0.1:{sim_port}")
        handle.quiet_end = quiet["KERBSIDE_NOTIFY_QUIET_END"]
        handle.worker, handle.quiet_worker = worker, running.add(procs.worker(tmp / "quiet-worker.log",
                                                                              {**worker_env, **quiet}))
        yield handle
    finally:
        running.stop_all()
        revoke_tokens([i for i, _ in made.values()])
        with new_session() as db:
            db.scalar(select(Contractor).where(Contractor.name == CONTRACTOR)).config = original
            db.commit()


def _addr(tag: str) -> str:
    return f"loop-{tag}-{uuid.uuid4().hex[:8]}@example.org"


def _phone() -> str:
    return "077009" + str(uuid.uuid4().int)[:5]


def test_reporters_hear_received_then_fixed_and_the_status_page_agrees(loop):
    light = free_street_light()
    first, second, phone = _addr("first"), _addr("second"), _phone()
    a = loop.report({"first_name": "Ada", "email": first, "phone": phone, "notify": "both", "consent": True}, light)
    b = loop.report({"email": second, "notify": "email", "consent": True}, light)
    assert b["job"]["attached"] and b["job"]["reference"] == a["job"]["reference"]
    job = a["job"]["reference"]
    promised = a["job"]["due_in_words"].removeprefix("by ")
    got = procs.until(lambda: len(loop.to(first)) + len(loop.to(phone)) >= 2 and loop.to(second), 30,
                      "the received email, text and second reporter's email at Notify")
    assert got
    [email], [sms], [other] = loop.to(first), loop.to(phone), loop.to(second)
    for m, ref in ((email, a["reference"]), (sms, a["reference"]), (other, b["reference"])):
        assert ref in m["body"] and promised in m["body"], m["body"]
        assert m["reference"].startswith("kerbside-") and f"/r/{ref}" in m["body"]
    assert email["type"] == "email" and sms["type"] == "sms" and email["subject"].endswith(a["reference"])
    assert email["one_click_unsubscribe_url"] and "/u/" in email["one_click_unsubscribe_url"]
    # The job reaches the contractor (dispatch and the order go through the outbox), who books and fixes it.
    loop.sent_to_contractor(job)
    loop.contractor_update(job, "accepted")
    loop.contractor_update(job, "completed", light)
    procs.until(lambda: all(any("fixed" in m["subject"] + m["body"] for m in loop.to(x)) for x in (first, second))
                and len(loop.to(phone)) == 2, 30, "the fixed messages")
    assert [("fixed" in m["body"]) for m in loop.to(phone)] == [False, True]
    page = httpx.get(f"{loop.api_url}/r/{b['reference']}", timeout=10)
    assert page.status_code == 200 and "Fixed" in page.text and first not in page.text and "Ada" not in page.text
    # Every message's receipt came back from Notify and was recorded.
    ids = {m["id"] for m in loop.to(first) + loop.to(second) + loop.to(phone)}

    def delivered():
        with new_session() as db:
            rows = db.scalars(select(Notification).where(Notification.notify_id.in_(ids))).all()
            return len(rows) == len(ids) and all(n.status == "delivered" for n in rows)

    procs.until(delivered, 30, "delivery receipts recorded")


def test_a_text_in_quiet_hours_waits_and_the_email_does_not(loop):
    light = free_street_light()
    address, phone = _addr("quiet"), _phone()
    # The worker writes a report's messages and holds texts: during this test it runs in a quiet window.
    loop.worker.stop()
    loop.quiet_worker.start()
    try:
        r = loop.report({"email": address, "phone": phone, "notify": "both", "consent": True}, light)
        procs.until(lambda: loop.to(address), 30, "the email, sent at once")
        time.sleep(1.5)  # several worker passes: the text is not due
        assert loop.to(phone) == []
        with new_session() as db:
            row = db.scalar(select(OutboxMessage).where(OutboxMessage.destination == "notify:sms",
                                                        OutboxMessage.payload["report"].astext == r["reference"]))
            assert row.state == "pending" and row.attempts == 0
            local = row.next_attempt_at.astimezone(ZoneInfo(get_settings().timezone))
            assert local.strftime("%H:%M") == loop.quiet_end and local.second == 0
    finally:
        loop.quiet_worker.stop()
        loop.worker.start()
    with new_session() as db:
        # The quiet hours end (the clock reaching the window's end, brought forward): the text goes.
        db.get(OutboxMessage, row.id).next_attempt_at = datetime.now(timezone.utc)
        db.execute(text("NOTIFY kerbside_outbox"))
        db.commit()
    procs.until(lambda: loop.to(phone), 30, "the text after the quiet hours")
    assert r["reference"] in loop.to(phone)[0]["body"]


def test_notify_down_then_back_every_message_once_in_order_and_repeat_receipts_change_nothing(loop):
    light = free_street_light()
    address = _addr("outage")
    loop.notify.stop()
    r = loop.report({"email": address, "notify": "email", "consent": True}, light)
    job = r["job"]["reference"]
    loop.sent_to_contractor(job)
    loop.contractor_update(job, "accepted")
    loop.contractor_update(job, "scheduled")
    loop.contractor_update(job, "completed", light)

    def failed_attempts() -> int:
        with new_session() as db:
            return db.scalar(text("""SELECT coalesce(sum(attempts), 0) FROM outbox_messages
                                     WHERE destination = 'notify:email' AND payload->>'report' = :r"""),
                             {"r": r["reference"]})

    procs.until(lambda: failed_attempts() >= 3, 30, "the worker trying Notify while it is down")
    time.sleep(3)  # Notify stays down a while longer
    loop.notify.start()
    procs.wait_up(loop.notify, loop.notify_url + "/_control/messages", ok=(200,))
    got = procs.until(lambda: len(loop.to(address)) >= 3 and loop.to(address), 60, "every message after the outage")
    time.sleep(1.0)  # any duplicate would arrive by now
    got = loop.to(address)
    subjects = [m["subject"] for m in got]
    assert len(got) == 3, subjects
    assert ["have your report" in subjects[0], "booked" in subjects[1], "fixed" in subjects[2]] == [True] * 3
    assert len({m["reference"] for m in got}) == 3
    # Every receipt arrives; sending one again (Notify may) changes nothing.
    ids = [m["id"] for m in got]

    def receipts():
        with new_session() as db:
            return {str(n.notify_id): (n.status, n.receipts)
                    for n in db.scalars(select(Notification).where(Notification.notify_id.in_(ids)))}

    procs.until(lambda: set(receipts().values()) == {("delivered", 1)} and len(receipts()) == 3, 30, "receipts")
    before = len(loop.callbacks())
    assert httpx.post(f"{loop.notify_url}/_control/resend-receipt/{ids[0]}", timeout=5).status_code == 200
    procs.until(lambda: len(loop.callbacks()) > before, 10, "the repeated receipt delivered")
    assert loop.callbacks()[-1]["answer"] == 204
    assert set(receipts().values()) == {("delivered", 1)}
