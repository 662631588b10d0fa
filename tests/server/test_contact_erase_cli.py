"""`python -m server.cli contact erase` in its own process, on committed rows: the person goes, the report,
the job and its timeline stay, and the erase is on the contact's audit trail."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.db import new_session
from server.jobs.models import Job, JobEvent
from server.notifications.models import ContactAccess, ReporterContact
from server.reports.models import Report
from tests.browser.live import commit_token, free_street_light, revoke_tokens
from tests.conftest import auth
from tests.server.test_notifications import _body

pytestmark = pytest.mark.commits
ROOT = Path(__file__).resolve().parents[2]


def test_erase_on_request_from_the_command_line(prepared_db):
    from server.main import create_app

    token_id, token = commit_token("advisor")
    light = free_street_light()
    contact = {"first_name": "Rhiannon", "email": "rhiannon.erase@example.org", "phone": "07700900999",
               "notify": "email", "consent": True}
    try:
        with TestClient(create_app()) as client:
            r = client.post("/api/v1/reports", json=_body(light, contact), headers=auth(token))
        assert r.status_code == 201, r.text
        ref = r.json()["reference"]
        with new_session() as s:
            job_id = s.scalar(select(Report.job_id).where(Report.reference == ref))
            events = s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id))
        refused = subprocess.run([sys.executable, "-m", "server.cli", "contact", "erase"], cwd=ROOT,
                                 capture_output=True, text=True)
        assert refused.returncode != 0 and "exactly one" in refused.stderr + refused.stdout
        done = subprocess.run([sys.executable, "-m", "server.cli", "contact", "erase", "--phone", "07700 900999"],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout.strip()) >= 1
        with new_session() as s:
            c = s.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                         .where(Report.reference == ref))
            assert (c.first_name, c.email, c.phone, c.erase_reason) == (None, None, None, "request")
            assert s.get(Job, job_id) is not None
            assert s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id)) == events
            trail = s.scalars(select(ContactAccess.action).where(ContactAccess.contact_id == c.id)).all()
            assert trail == ["erase"]
            assert s.scalar(select(func.count()).select_from(ReporterContact)
                            .where(ReporterContact.email == "rhiannon.erase@example.org")) == 0
    finally:
        revoke_tokens([token_id])
