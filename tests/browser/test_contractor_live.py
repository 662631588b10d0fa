"""The job page follows the real contractor: the simulator completes the order and the open page changes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from server.db import new_session
from server.dispatch.models import Contractor
from server.jobs.models import Job
from server.outbox.worker import deliver_due
from tests.browser.live import ROOT, free_street_light, report, stop
from tests.contractors.conftest import Sim, free_port, wait_until

CONTRACTOR = "street-lighting"


@pytest.fixture(scope="module")
def sim(api, tmp_path_factory):
    """A simulator acting as the seeded street-lighting contractor, pushing to the browser tests' API
    (the contractor's base_url points at it for this module and is restored afterwards)."""
    port = free_port()
    log = tmp_path_factory.mktemp("browser-sim") / "sim.log"
    with new_session() as s:
        c = s.scalar(select(Contractor).where(Contractor.name == CONTRACTOR))
        original = dict(c.config)
        c.config = {**c.config, "base_url": f"http://127.0.0.1:{port}", "poll": False}
        s.commit()
        cfg = dict(c.config)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SIM_API_KEY": cfg["api_key"], "SIM_SECRET": cfg["webhook_secret"],
           "SIM_STEP_SECONDS": "0", "SIM_CALLBACK_URL": api.url,
           "SIM_CALLBACK_PATH": f"/api/v1/contractors/{CONTRACTOR}/webhook",
           # Its own reference prefix, so its orders never meet those of a simulator that served this contractor earlier.
           "SIM_REF_PREFIX": "B" + uuid.uuid4().hex[:6].upper()}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "contractors.simulator", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    handle = Sim(f"http://127.0.0.1:{port}")
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return handle.http.get("/health", timeout=1).status_code == 200
            except Exception:
                return False

        wait_until(up, timeout=30, interval=0.1)
        yield handle
    finally:
        handle.http.close()
        stop(proc)
        with new_session() as s:
            s.scalar(select(Contractor).where(Contractor.name == CONTRACTOR)).config = original
            s.commit()


def test_the_job_page_shows_the_contractor_fixing_it_without_reloading(page, api, people, sim):
    light = free_street_light()
    answer = report(api, people["advisor"], light)
    ref = answer["job"]["reference"]
    assert answer["job"]["attached"] is False

    # The worker's next runs, in-process: dispatch, then the order to the contractor (our simulator).
    def sent() -> str | None:
        deliver_due(time_budget_s=2)
        with new_session() as s:
            job = s.scalar(select(Job).where(Job.reference == ref))
            return job.contractor_ref if job.status == "sent" and job.contractor_ref else None

    contractor_ref = wait_until(sent, timeout=30, interval=0.2)
    assert [o for o in sim.state()["orders"] if o.get("client_reference") == ref]

    # Find it by its lamp-column number and open it.
    tab = page.tab
    page.sign_in(people["advisor"])
    box = tab.get_by_label("Job or report reference, asset number, contractor reference or street")
    box.fill(light["ref"])
    box.press("Enter")
    expect(tab.locator("#results")).to_contain_text(ref)
    tab.locator(f'a.job-link[href="job.html?ref={ref}"]').click()
    tab.wait_for_url(f"**/job.html?ref={ref}")
    status = tab.locator("#status")
    expect(status).not_to_have_text(re.compile(r"^Fixed"))
    expect(tab.locator("#live-state")).to_have_text("Live")
    before = status.inner_text()
    # In the page: note when #status first reads "Fixed …"; a reload would lose both marks.
    tab.evaluate("""() => {
        window.__noReload = true;
        window.__fixedAt = 0;
        const check = () => {
            const el = document.getElementById('status');
            if (!window.__fixedAt && el && /^Fixed/.test(el.textContent)) window.__fixedAt = Date.now();
        };
        new MutationObserver(check).observe(document.body, {childList: true, subtree: true, characterData: true});
    }""")
    page.shot("before-fixed")

    started = time.time() * 1000
    updates = sim.advance(ref=contractor_ref, steps=4)  # pushed, signed, to our webhook as they happen
    assert updates, "the simulator made no updates"
    expect(status).to_have_text(re.compile(r"^Fixed by .*waiting to be signed off$"), timeout=20_000)
    fixed_at = tab.evaluate("() => window.__fixedAt")
    assert tab.evaluate("() => window.__noReload") is True  # the same page, never reloaded
    expect(tab.locator("#timeline")).to_contain_text("Fixed")
    page.shot("fixed")
    latency = fixed_at - started
    print(f"\njob page, simulator advance to FIXED → '#status' changed in the browser: {latency:.0f} ms "
          f"(was {before!r}, now {status.inner_text()!r})")
    assert latency > 0
    with new_session() as s:
        assert s.scalar(select(Job.status).where(Job.reference == ref)) == "completed"
