"""The whole path over real HTTP: report → dispatch → contractor order → pushed updates → completed."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from server.auth.tokens import create_token
from server.db import new_session
from server.dispatch.models import Contractor
from server.jobs.models import Job, JobEvent
from server.outbox.worker import deliver_due
from tests.contractors.conftest import Sim, free_port, wait_until

pytestmark = pytest.mark.commits
ROOT = Path(__file__).resolve().parents[2]


def _serve(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(prepared_db, tmp_path_factory):
    """Our API and a simulator acting as the seeded street-lighting contractor, pointed at each other."""
    logs = tmp_path_factory.mktemp("e2e")
    api_port, sim_port = free_port(), free_port()
    with new_session() as s:
        c = s.scalar(select(Contractor).where(Contractor.name == "street-lighting"))
        original = dict(c.config)
        c.config = {**c.config, "base_url": f"http://127.0.0.1:{sim_port}", "poll": False}
        s.commit()
        cfg = dict(c.config)
    api = _serve(["uvicorn", "server.main:create_app", "--factory", "--port", str(api_port), "--log-level",
                  "warning"], {}, logs / "api.log")
    sim = _serve(["contractors.simulator", "--port", str(sim_port)], {
        "SIM_API_KEY": cfg["api_key"], "SIM_SECRET": cfg["webhook_secret"], "SIM_STEP_SECONDS": "0",
        "SIM_CALLBACK_URL": f"http://127.0.0.1:{api_port}",
        "SIM_CALLBACK_PATH": "/api/v1/contractors/street-lighting/webhook"}, logs / "sim.log")
    try:
        wait_until(lambda: _up(f"http://127.0.0.1:{api_port}/healthz") and _up(f"http://127.0.0.1:{sim_port}/health"),
                   timeout=30, interval=0.2)
        yield f"http://127.0.0.1:{api_port}", Sim(f"http://127.0.0.1:{sim_port}")
    finally:
        for p in (api, sim):
            p.terminate()
            p.wait(10)
        with new_session() as s:
            s.scalar(select(Contractor).where(Contractor.name == "street-lighting")).config = original
            s.commit()


def test_a_street_light_report_is_ordered_from_the_contractor_and_completed(stack):
    api, sim = stack
    with new_session() as s:
        _, token = create_token(s, "field_worker", name="e2e")
        lat, lon = s.execute(text("""
            SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326)) FROM assets a
              JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id)
             ORDER BY a.id DESC LIMIT 1""")).one()
        s.commit()
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{api}/api/v1/reports", headers=h, json={
        "client_id": str(uuid.uuid4()), "category": "street_light", "lat": lat, "lon": lon, "accuracy_m": 4,
        "observed_at": datetime.now(timezone.utc).isoformat(), "answers": {"fault": "out"}})
    assert r.status_code == 201, r.text
    ref = r.json()["job"]["reference"]
    assert r.json()["job"]["attached"] is False
    due = datetime.fromisoformat(r.json()["job"]["due_at"])
    assert due.weekday() < 5  # three working days: never a weekend

    # The worker's next runs: dispatch, then the order to the contractor.
    def sent() -> Job | None:
        deliver_due(time_budget_s=2)
        with new_session() as s:
            job = s.scalar(select(Job).where(Job.reference == ref))
            return job if job.status == "sent" and job.contractor_ref else None

    job = wait_until(sent, timeout=30, interval=0.2)
    orders = sim.state()["orders"]
    assert len([o for o in orders if o.get("client_reference") == ref]) == 1, (job.contractor_ref, orders)

    sim.advance(ref=job.contractor_ref, steps=4)  # pushed to our webhook as they happen

    def completed() -> bool:
        with new_session() as s:
            return s.scalar(select(Job.status).where(Job.reference == ref)) == "completed"

    try:
        wait_until(completed, timeout=30, interval=0.2)
    except AssertionError:
        state = sim.state()
        raise AssertionError(f"not completed; simulator counters {state['counters']}, "
                             f"pending pushes {state.get('pending_pushes') or state.get('pushes')}") from None
    with new_session() as s:
        job = s.scalar(select(Job).where(Job.reference == ref))
        moves = [e.after["status"] for e in s.scalars(select(JobEvent).where(
            JobEvent.job_id == job.id, JobEvent.type == "status_changed").order_by(JobEvent.id))]
    assert moves == ["sent", "accepted", "scheduled", "in_progress", "completed"]
    page = httpx.get(f"{api}/api/v1/jobs/{ref}", headers=h).json()
    assert page["status"] == "completed" and page["assignee"]["kind"] == "contractor"
    assert page["assignee"]["name"] == "street-lighting" and page["contractor_ref"] == job.contractor_ref
