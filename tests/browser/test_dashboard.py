"""The contact-centre dashboard in Debian's Chromium against a real API process and database."""
from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import expect
from sqlalchemy import select, text

from server.db import new_session
from server.jobs import sla
from server.jobs.models import Job, JobEvent
from server.outbox.models import OutboxMessage
from server.reports.models import Report
from server.reports.service import with_words
from tests.browser.live import free_street_light, report

LONDON = ZoneInfo("Europe/London")


def safe(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", ref)


def due_in_nine_days(ref: str) -> datetime:
    """Give a job a deadline nine days out at 17:30 local, so its words are a weekday and a date."""
    local = (datetime.now(LONDON) + timedelta(days=9)).replace(hour=17, minute=30, second=0, microsecond=0)
    with new_session() as s:
        s.execute(text("UPDATE jobs SET due_at = :d WHERE reference = :r"), {"d": local, "r": ref})
        s.commit()
    return local.astimezone(timezone.utc)


def tab_until(tab, selector: str, limit: int = 15) -> None:
    for _ in range(limit):
        tab.keyboard.press("Tab")
        if tab.evaluate("(sel) => document.activeElement && document.activeElement.matches(sel)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_find_a_job_by_lamp_column_number_and_by_street_then_read_the_due_date(page, api, people):
    light = free_street_light()
    answer = report(api, people["advisor"], light)
    ref = answer["job"]["reference"]
    due = due_in_nine_days(ref)
    expected = "Should be fixed " + sla.describe_due(due, datetime.now(timezone.utc))
    assert re.fullmatch(r"Should be fixed by 17:30 on \w+day \d{1,2} \w+", expected)
    tab = page.tab
    page.sign_in(people["advisor"])
    # Keyboard only: the search box has focus, Enter searches, Tab reaches the result, Enter opens it.
    expect(tab.get_by_label("Job or report reference, asset number, contractor reference or street")).to_be_focused()
    tab.keyboard.type(light["ref"])
    tab.keyboard.press("Enter")
    expect(tab.locator("#results")).to_contain_text(ref)
    expect(tab.locator("#assets")).to_contain_text(light["ref"])
    page.shot("found-by-lamp-column")
    tab_until(tab, f'a.job-link[href="job.html?ref={ref}"]')
    tab.keyboard.press("Enter")
    tab.wait_for_url(f"**/job.html?ref={ref}")
    expect(tab.locator("#due")).to_have_text(expected)
    expect(tab.locator("#status")).to_have_text("Logged and waiting to be passed to a team")
    expect(tab.locator("#time-left")).to_have_text(re.compile(r"^\d+ days?( \d+ hours?)? left$"))
    expect(tab.locator("#demand")).to_have_text("1 person")
    expect(tab.locator("#asset")).to_contain_text(light["ref"])
    first = tab.locator("#timeline li").first
    expect(first).to_contain_text(re.compile(r"Target date set|Report received|Job opened|Matched"))
    assert tab.locator("#timeline li").count() >= 3
    expect(tab.locator("#map-note")).to_have_text("Base map unavailable: showing wards and assets only.")
    expect(tab.locator("#map path.job-marker")).to_have_count(1)
    page.shot("job-page")
    # And by the job's street, typed into the same box (the named road nearest the report, which for a lamp
    # column near a junction need not be the street its own record names).
    tab.goto(f"{api.url}/dashboard/index.html")
    tab.get_by_label("Job or report reference, asset number, contractor reference or street").fill(
        answer["job"]["street"])
    tab.get_by_role("button", name="Find").click()
    expect(tab.locator("#results")).to_contain_text(ref)
    expect(tab.locator("#map path.job-marker").first).to_be_visible()
    page.shot("found-by-street")


def test_log_a_fault_for_a_caller_by_clicking_the_lamp_on_the_map(page, api, people):
    light = free_street_light()
    tab = page.tab
    page.sign_in(people["advisor"], "log.html")
    tab.get_by_label("What is the problem?").select_option("street_light")
    tab.get_by_label("Go to an asset number or street").fill(light["ref"])
    tab.get_by_role("button", name="Go").click()
    marker = tab.locator(f"path.asset-ref-{safe(light['ref'])}")
    expect(marker).to_have_count(1)
    page.shot("assets-on-map")
    marker.click()
    expect(tab.locator("#picked")).to_contain_text(f"Picked: {light['ref']}")
    expect(tab.locator(f"path.asset-ref-{safe(light['ref'])}.selected")).to_have_count(1)
    tab.get_by_label("What is wrong with the light? (required)").select_option("out")
    tab.get_by_label("What the caller says (plain text)").fill("Caller says the lamp outside no. 4 is out")
    tab.get_by_role("button", name="Log the fault").click()
    expect(tab.locator("#result")).to_be_visible()
    reference = tab.locator("#result-reference").inner_text()
    assert re.fullmatch(r"R-\d{6}", reference)
    due_words = tab.locator("#result-due").inner_text()
    assert due_words.startswith("Should be fixed by ")
    page.shot("reference-to-read-out")
    with new_session() as s:
        row = s.execute(select(Report, Job).join(Job, Job.id == Report.job_id)
                        .where(Report.reference == reference)).one()
    rep, job = row
    assert rep.channel == "contact_centre" and rep.asset_hint == light["ref"]
    assert rep.answers == {"fault": "out"} and job.category_code == "street_light"
    # The stored answer keeps the deadline; its words are derived from it as of when the report arrived.
    assert due_words == "Should be fixed " + with_words(rep.response)["job"]["due_in_words"]
    assert rep.response["job"]["asset"]["ref"] == light["ref"]


def test_the_live_board_changes_a_row_without_reloading(page, api, people):
    light = free_street_light()
    answer = report(api, people["advisor"], light)
    ref, ward = answer["job"]["reference"], answer["job"]["ward"]
    tab = page.tab
    page.sign_in(people["advisor"], "board.html")
    tab.get_by_label("Category").select_option("street_light")
    tab.get_by_label("Ward").select_option(ward)
    row = tab.locator(f"#row-{safe(ref)}")
    expect(row.locator(".status")).to_have_text("Logged and waiting to be passed to a team")
    expect(tab.locator("#live-state")).to_have_text("Live")
    # In the page: note the moment the row's status cell first shows the words we wait for.
    tab.evaluate("""(id) => {
        window.__notReloaded = true;
        new MutationObserver(() => {
            const cell = document.querySelector('#' + id + ' .status');
            if (cell && window.__want && cell.textContent === window.__want && !window.__changedAt) {
                window.__changedAt = Date.now();
            }
        }).observe(document.getElementById('rows'), {childList: true, subtree: true, characterData: true});
    }""", f"row-{safe(ref)}")
    page.shot("before")
    latencies = []
    for step, words in (("sent", "With the team, waiting for them to accept it"), ("accepted", "Accepted by the team")):
        tab.evaluate("(w) => { window.__changedAt = 0; window.__want = w; }", words)
        started = time.time() * 1000
        r = httpx.post(f"{api.url}/api/v1/jobs/{ref}/status", json={"status": step},
                       headers={"Authorization": f"Bearer {people['supervisor']}"}, timeout=10)
        assert r.status_code == 200, r.text
        expect(row.locator(".status")).to_have_text(words, timeout=3000)
        latencies.append(tab.evaluate("() => window.__changedAt") - started)
    assert tab.evaluate("() => window.__notReloaded") is True  # the same page, never reloaded
    expect(row).to_have_class(re.compile(r"\bchanged\b"))
    page.shot("after")
    print("\nlive board, status change POSTed to row changed in the browser: "
          + ", ".join(f"{x:.0f} ms" for x in latencies))
    assert 0 < max(latencies) < 2000


def test_a_supervisor_sends_a_dead_delivery_again(page, api, people):
    answer = report(api, people["advisor"], free_street_light())
    with new_session() as s:
        job = s.scalar(select(Job).where(Job.reference == answer["job"]["reference"]))
        msg = OutboxMessage(destination="webhook:999999", topic="job.status_changed", job_id=job.id, payload={},
                            state="dead", attempts=10, idempotency_key=f"test-dead:{uuid.uuid4()}",
                            last_error="DeliveryError: the CRM answered HTTP 503")
        s.add(msg)
        s.commit()
        msg_id = msg.id
    tab = page.tab
    page.sign_in(people["supervisor"], "supervisor.html")
    expect(tab.get_by_role("heading", name="Waiting for a supervisor (triage and dispatch queue)")).to_be_visible()
    expect(tab.get_by_role("heading", name="Overdue")).to_be_visible()
    row = tab.locator(f"#dead-{msg_id}")
    expect(row).to_contain_text("HTTP 503")
    page.shot("dead-delivery")
    row.get_by_role("button", name=f"Send delivery {msg_id} again").click()
    expect(row).to_contain_text("Queued to send again")
    page.shot("sent-again")
    with new_session() as s:
        again = s.get(OutboxMessage, msg_id)
        assert again.state == "pending" and again.attempts == 0
        retried = s.scalars(select(JobEvent).where(JobEvent.job_id == again.job_id,
                                                   JobEvent.type == "delivery_retried")).all()
        assert [e.actor_role for e in retried] == ["supervisor"]
        again.state = "delivered"  # nobody is listening at webhook:999999; keep the queue clean
        s.commit()
    tab.get_by_role("navigation", name="Main").get_by_role("link", name="Figures").click()
    expect(tab.get_by_role("heading", name="SLA compliance")).to_be_visible()
    expect(tab.get_by_role("heading", name="Resolved at first contact")).to_be_visible()
    page.shot("figures")


def test_an_adviser_sees_no_supervisor_actions_and_the_api_refuses_them(page, api, people):
    tab = page.tab
    page.sign_in(people["advisor"])
    nav = tab.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Live board")).to_be_visible()
    expect(nav.get_by_role("link", name="Supervisor")).to_have_count(0)
    tab.goto(f"{api.url}/dashboard/supervisor.html")
    expect(tab.locator("#message")).to_have_text("This page is for supervisors.")
    expect(tab.locator("#supervisor")).to_be_hidden()
    expect(tab.get_by_role("button", name=re.compile("Send .* again"))).to_have_count(0)
    status = tab.evaluate("""async () => (await fetch('/api/v1/outbox/1/retry', {method: 'POST',
        headers: {Authorization: 'Bearer ' + sessionStorage.getItem('kerbside.token')}})).status""")
    assert status == 403


def test_user_text_is_shown_as_text_never_run(page, api, people):
    light = free_street_light()
    ref = report(api, people["advisor"], light)["job"]["reference"]
    evil = f'<img src=x onerror="window.__xss=1">Evil Row {uuid.uuid4().hex[:6]}'
    with new_session() as s:
        street = s.scalar(select(Job.street).where(Job.reference == ref))
        s.execute(text("UPDATE jobs SET street = :s WHERE reference = :r"), {"s": evil, "r": ref})
        s.commit()
    try:
        _shown_as_text(page, api, people, ref, evil)
    finally:
        with new_session() as s:
            s.execute(text("UPDATE jobs SET street = :s WHERE reference = :r"), {"s": street, "r": ref})
            s.commit()


def _shown_as_text(page, api, people, ref: str, evil: str) -> None:
    tab = page.tab
    page.sign_in(people["advisor"])
    box = tab.get_by_label("Job or report reference, asset number, contractor reference or street")
    box.fill('<script>window.__xss=1</script>"><svg onload=window.__xss=1>')
    box.press("Enter")
    expect(tab.locator("#message")).to_contain_text('No jobs found for “<script>window.__xss=1</script>')
    box.fill(evil)
    box.press("Enter")
    expect(tab.locator("#results")).to_contain_text(evil)
    tab.goto(f"{api.url}/dashboard/job.html?ref={ref}")
    expect(tab.locator("#where")).to_contain_text(evil)
    assert tab.locator("#main img[src='x']").count() == 0
    assert tab.evaluate("() => window.__xss") is None
