"""The outbox's Notify sender against the Notify simulator (a real HTTP server; the real
notifications-python-client): what is sent, and what each of Notify's answers does to the row."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from server.config import get_settings
from server.notifications import received
from server.notifications.models import Notification, ReporterContact
from server.notifications.sender import client as notify_client
from server.notifications.templates import template_id
from server.outbox.models import OutboxMessage
from server.outbox.worker import process
from tests.conftest import auth
from tests.contractors.conftest import free_port, wait_until
from tests.server.test_notifications import CONTACT, _body, _light, _notify_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def notify_sim(prepared_db, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("notify") / "notify.log"
    env = {**os.environ, "NOTIFY_SIM_API_KEY": get_settings().notify_api_key, "NOTIFY_SIM_RECEIPT_URL": ""}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "notify_simulator", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(url), timeout=20, interval=0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/_control/messages", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def sim(notify_sim, monkeypatch):
    httpx.post(f"{notify_sim}/_control/reset", timeout=5)
    monkeypatch.setattr(get_settings(), "notify_base_url", notify_sim)
    monkeypatch.setattr(get_settings(), "notify_quiet_start", "00:00")
    monkeypatch.setattr(get_settings(), "notify_quiet_end", "00:00")
    return notify_sim


def _messages(sim: str) -> list[dict]:
    return httpx.get(f"{sim}/_control/messages", timeout=5).json()["messages"]


def _received(db, client, tokens, contact=CONTACT, n=20) -> tuple[dict, list[OutboxMessage]]:
    r = client.post("/api/v1/reports", json=_body(_light(db, n), contact), headers=auth(tokens["advisor"]))
    assert r.status_code == 201, r.text
    received.write_queued(db)  # what the outbox worker does before each delivery run
    job_id = db.scalar(select(OutboxMessage.job_id).where(OutboxMessage.payload["report"].astext == r.json()["reference"]))
    return r.json(), _notify_rows(db, job_id)


def test_received_email_and_text_reach_notify_and_are_recorded(db, client, tokens, sim):
    answer, rows = _received(db, client, tokens)
    for msg in rows:
        assert process(db, msg) == "delivered", msg.last_error
    sent = _messages(sim)
    assert sorted((m["type"], m["to"]) for m in sent) == [("email", "pat.caller@example.org"), ("sms", "07700900123")]
    email = next(m for m in sent if m["type"] == "email")
    assert email["template_id"] == template_id("received", "email")
    assert answer["reference"] in email["subject"] and answer["job"]["due_in_words"].removeprefix("by ") in email["body"]
    assert email["one_click_unsubscribe_url"].endswith(email["personalisation"]["unsubscribe_url"].split("/u/")[1])
    recorded = {str(n.notify_id): n for n in db.scalars(select(Notification).where(
        Notification.outbox_id.in_([m.id for m in rows])))}
    assert set(recorded) == {m["id"] for m in sent}
    assert {n.reference for n in recorded.values()} == {f"kerbside-{m.id}" for m in rows} == {m["reference"] for m in sent}
    # The one-click link Notify put in the email ends this reporter's messages (RFC 8058: a POST).
    path = "/u/" + email["one_click_unsubscribe_url"].split("/u/", 1)[1]
    assert client.post(path, content=b"List-Unsubscribe=One-Click").status_code == 200
    contact = db.get(ReporterContact, rows[0].payload["contact_id"])
    db.refresh(contact)
    assert contact.unsubscribed_at is not None


def test_a_wrong_key_is_refused_by_notify_and_the_message_goes_to_the_dead_list(db, client, tokens, sim, monkeypatch):
    _, rows = _received(db, client, tokens, n=21)
    other = "kerbside_demo-5b1a0c3e-7d2f-4e8a-9c61-2f4b8d0e1a73-" + str(uuid.uuid4())
    monkeypatch.setattr(get_settings(), "notify_api_key", other)
    assert process(db, rows[0]) == "dead"
    assert "403" in rows[0].last_error and "Invalid token" in rows[0].last_error
    assert _messages(sim) == []


def test_notify_errors_5xx_and_429_are_retried_and_the_retry_sends_once(db, client, tokens, sim):
    _, rows = _received(db, client, tokens, n=22)
    msg = rows[0]
    httpx.post(f"{sim}/_control/outage", json={"status": 500, "count": 1}, timeout=5)
    assert process(db, msg) == "pending" and msg.attempts == 1 and "500" in msg.last_error
    httpx.post(f"{sim}/_control/outage", json={"status": 429, "count": 1}, timeout=5)
    assert process(db, msg) == "pending" and "429" in msg.last_error
    assert msg.next_attempt_at >= datetime.now(timezone.utc) + timedelta(seconds=55)  # Notify's rate limit: a minute
    assert process(db, msg) == "delivered"
    assert len(_messages(sim)) == 1


def test_a_retry_after_a_lost_answer_finds_the_first_send_by_reference(db, client, tokens, sim):
    _, rows = _received(db, client, tokens, n=23)
    msg = rows[0]
    # The first attempt reached Notify but its answer never came back (we recorded nothing).
    first = notify_client().send_email_notification(
        email_address="pat.caller@example.org", template_id=template_id("received", "email"),
        personalisation={k: "x" for k in ("category", "street", "reference", "promised_date", "status_url",
                                          "unsubscribe_url")}, reference=f"kerbside-{msg.id}")
    msg.attempts = 1
    assert process(db, msg) == "delivered"
    assert [m["id"] for m in _messages(sim)] == [first["id"]]
    n = db.scalar(select(Notification).where(Notification.outbox_id == msg.id))
    assert str(n.notify_id) == first["id"]


def test_a_number_notify_refuses_is_dead_at_once(db, client, tokens, sim):
    _, [msg] = _received(db, client, tokens, {"phone": "+12025550123", "notify": "sms", "consent": True}, n=24)
    assert process(db, msg) == "dead"
    assert "400" in msg.last_error and "Not a UK mobile number" in msg.last_error


def test_a_text_due_in_quiet_hours_waits_for_the_morning_without_counting_an_attempt(db, client, tokens, sim,
                                                                                      monkeypatch):
    _, rows = _received(db, client, tokens, n=25)
    sms = next(m for m in rows if m.destination == "notify:sms")
    zone = ZoneInfo(get_settings().timezone)
    local = datetime.now(zone)
    end = (local + timedelta(hours=3)).strftime("%H:%M")
    monkeypatch.setattr(get_settings(), "notify_quiet_start", (local - timedelta(hours=1)).strftime("%H:%M"))
    monkeypatch.setattr(get_settings(), "notify_quiet_end", end)
    assert process(db, sms) == "pending"
    assert sms.attempts == 0 and sms.last_error is None
    assert sms.next_attempt_at.astimezone(zone).strftime("%H:%M") == end
    assert _messages(sim) == []
