"""The dashboard's side of the reporter loop in Chromium: an adviser records a chaser and opens a reporter's
contact (audited), the figures page draws the avoidable-contact charts, the supervisor sees undelivered messages."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
from sqlalchemy import select

from server.db import new_session
from server.notifications import received
from server.notifications.models import (Chaser, ContactAccess, ContactQueue, Notification, ReceivedQueue,
                                         ReporterContact)
from server.outbox.models import OutboxMessage
from server.reports.models import Report
from tests.browser.live import free_street_light


def _report(api, token: str) -> dict:
    light = free_street_light()
    body = {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": light["lat"], "lon": light["lon"],
            "accuracy_m": 4.0, "observed_at": datetime.now(timezone.utc).isoformat(), "asset_ref": light["ref"],
            "answers": {"fault": "out"},
            "contact": {"first_name": "Iolo", "email": "iolo.dash@example.org", "notify": "email", "consent": True}}
    r = httpx.post(f"{api.url}/api/v1/reports", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def test_adviser_records_a_chaser_and_reads_the_contact_on_the_job_page(page, api, people):
    r = _report(api, people["advisor"])
    job = r["job"]["reference"]
    page.sign_in(people["advisor"], f"job.html?ref={job}")
    tab = page.tab
    tab.locator("#title").wait_for()
    assert "iolo.dash" not in tab.content()  # nothing personal until asked for
    tab.get_by_label("How they got in touch").select_option("phone")
    tab.get_by_role("button", name="Record a chaser").click()
    tab.get_by_text("Recorded at").wait_for()
    tab.get_by_role("button", name=f"Show the contact of report {r['reference']}").click()
    tab.get_by_text("iolo.dash@example.org").wait_for()
    assert tab.get_by_text("has been recorded").count() == 1
    page.shot("contact-shown")
    with new_session() as s:
        chasers = s.scalars(select(Chaser.channel).join(Report, Report.job_id == Chaser.job_id)
                            .where(Report.reference == r["reference"])).all()
        assert chasers == ["phone"]
        reads = s.scalars(select(ContactAccess.note).join(ReporterContact, ReporterContact.id == ContactAccess.contact_id)
                          .join(Report, Report.id == ReporterContact.report_id)
                          .where(Report.reference == r["reference"], ContactAccess.action == "read")).all()
        assert reads == [f"opened from job {job}"]


def test_figures_chart_avoidable_contact_and_supervisors_see_undelivered_messages(page, api, people):
    r = _report(api, people["advisor"])
    with new_session() as s:
        received.write_queued(s)  # what the outbox worker does first (no worker runs here)
        c = s.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                     .where(Report.reference == r["reference"]))
        msg = s.scalar(select(OutboxMessage).where(OutboxMessage.payload["report"].astext == r["reference"]))
        msg.state = "delivered"  # as after a real send: Notify took it, then reported it undeliverable
        s.add(Notification(outbox_id=msg.id, contact_id=c.id, job_id=msg.job_id, template="received", kind="email",
                           notify_id=uuid.uuid4(), reference=f"kerbside-{msg.id}", status="permanent-failure",
                           status_at=datetime.now(timezone.utc), receipts=1))
        s.add(Chaser(job_id=msg.job_id, category_code="street_light", channel="phone", kind="adviser_call"))
        s.commit()
    page.sign_in(people["supervisor"], "figures.html")
    tab = page.tab
    tab.get_by_role("heading", name="Chasers per 100 jobs, by category").wait_for()
    chart = tab.locator("figure.chart", has=tab.get_by_role("heading", name="Chasers before and after"))
    assert chart.locator(".bar.after").count() >= 1
    assert chart.get_by_text("Street light", exact=False).count() >= 1
    page.shot("figures-avoidable")
    tab.goto(f"{api.url}/dashboard/supervisor.html")
    row = tab.locator("#undelivered tr", has_text=r["reference"])
    row.wait_for()
    assert "permanent failure" in row.inner_text() and "iolo" not in row.inner_text().lower()
    page.shot("supervisor-undelivered")


def test_logging_a_fault_for_a_caller_keeps_their_contact_and_choice(page, api, people):
    import re

    from playwright.sync_api import expect

    light = free_street_light()
    tab = page.tab
    page.sign_in(people["advisor"], "log.html")
    tab.get_by_label("What is the problem?").select_option("street_light")
    tab.get_by_label("Go to an asset number or street").fill(light["ref"])
    tab.get_by_role("button", name="Go").click()
    marker = tab.locator(f"path.asset-ref-{re.sub(r'[^A-Za-z0-9_-]', '_', light['ref'])}")
    expect(marker).to_have_count(1)
    marker.click()
    tab.get_by_label("What is wrong with the light? (required)").select_option("out")
    tab.get_by_label("First name").fill("Gethin")
    tab.get_by_label("Mobile").fill("07700 900555")
    tab.get_by_label("Send them updates by").select_option("sms")
    # Without the caller's consent no updates may be promised: the API refuses and says why.
    tab.get_by_role("button", name="Log the fault").click()
    expect(tab.locator("#message")).to_contain_text("consent")
    tab.get_by_label("The caller agreed to be sent updates about this report").check()
    tab.get_by_role("button", name="Log the fault").click()
    expect(tab.locator("#result")).to_be_visible()
    reference = tab.locator("#result-reference").inner_text()
    page.shot("logged-with-caller")
    with new_session() as s:
        # Queued with the report as it came; the outbox worker files it first (no worker runs here).
        queued = s.execute(select(ContactQueue.first_name, ContactQueue.phone, ContactQueue.notify, ContactQueue.tell)
                           .join(Report, Report.id == ContactQueue.report_id)
                           .where(Report.reference == reference)).all()
        assert [tuple(q) for q in queued] == [("Gethin", "07700900555", "sms", True)]
        received.write_queued(s)
        c = s.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                     .where(Report.reference == reference))
        assert (c.first_name, c.phone, c.notify, c.channel) == ("Gethin", "07700900555", "sms", "contact_centre")
        assert s.scalars(select(ReceivedQueue.contact_id).where(ReceivedQueue.contact_id == c.id)).all() == []
        queued = s.scalars(select(OutboxMessage.destination).where(
            OutboxMessage.payload["report"].astext == reference)).all()
        assert queued == ["notify:sms"]
