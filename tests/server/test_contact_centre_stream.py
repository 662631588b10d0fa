"""GET /api/v1/events against real API processes: live delivery across processes, Last-Event-ID catch-up, scoping."""
from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import select, text

from server.db import new_session
from server.dispatch.models import Contractor
from server.jobs.models import Job, JobEvent
from tests.browser.live import Sse, commit_token, free_street_light, report, revoke_tokens, start_api, stop


@pytest.fixture(scope="module")
def apis(prepared_db, tmp_path_factory):
    """Two API processes on the same database (as behind a load balancer)."""
    logs = tmp_path_factory.mktemp("cc-stream")
    first = start_api(logs / "api1.log")
    try:
        second = start_api(logs / "api2.log")
    except Exception:
        stop(first.proc)
        raise
    yield first, second
    stop(first.proc)
    stop(second.proc)


@pytest.fixture(scope="module")
def who(apis):
    made = {role: commit_token(role) for role in ("advisor", "supervisor", "field_worker")}
    made["contractor"] = commit_token("contractor", contractor="street-lighting")
    yield {role: secret for role, (_, secret) in made.items()}
    revoke_tokens([i for i, _ in made.values()])


def move(api, token, ref, status):
    with api.client(token) as c:
        r = c.post(f"/api/v1/jobs/{ref}/status", json={"status": status, "note": f"test move to {status}"})
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def test_a_change_made_through_one_process_reaches_a_stream_on_another(apis, who):
    api1, api2 = apis
    job = report(api2, who["advisor"], free_street_light())["job"]["reference"]
    with api1.client(who["advisor"]) as c, c.stream("GET", "/api/v1/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        sse = Sse(r.iter_lines())
        ready = sse.next()
        assert ready["event"] == "ready" and ready["data"]["caught_up"] == 0
        started = time.monotonic()
        event_id = move(api2, who["supervisor"], job, "sent")
        frame = sse.until(lambda f: f["event"] == "job" and f["data"]["job"]["reference"] == job)
        latency = time.monotonic() - started
    assert int(frame["id"]) == event_id and frame["data"]["type"] == "status_changed"
    assert frame["data"]["job"]["status"] == "sent" and frame["data"]["after"]["status"] == "sent"
    assert "_contractor_id" not in frame["data"]
    assert latency < 2.0, f"live event took {latency:.2f} s"
    print(f"\nSSE latency across processes: {latency * 1000:.0f} ms")


def test_reconnecting_with_last_event_id_catches_up_from_the_table_in_order(apis, who):
    api1, api2 = apis
    job = report(api1, who["advisor"], free_street_light())["job"]["reference"]
    with api1.client(who["advisor"]) as c, c.stream("GET", "/api/v1/events") as r:
        last = Sse(r.iter_lines()).next()["data"]["last_event_id"]
    # Changes while the dashboard is away (through the other process).
    missed = [move(api2, who["supervisor"], job, s) for s in ("sent", "accepted", "in_progress")]
    with new_session() as s:
        expected = list(s.scalars(select(JobEvent.id).where(JobEvent.id > last).order_by(JobEvent.id)))
    assert set(missed) <= set(expected)
    with api1.client(who["advisor"]) as c, c.stream("GET", "/api/v1/events",
                                                   headers={"Last-Event-ID": str(last)}) as r:
        sse = Sse(r.iter_lines())
        frames = []
        while (f := sse.next())["event"] != "ready":
            frames.append(f)
        ready = f
        # Still live after the catch-up.
        live_id = move(api2, who["supervisor"], job, "completed")
        live = sse.until(lambda f: f["event"] == "job")
    assert [int(f["id"]) for f in frames] == expected
    assert ready["data"] == {"last_event_id": expected[-1], "caught_up": len(expected)}
    ours = [f["data"]["after"]["status"] for f in frames if f["data"]["type"] == "status_changed"
            and f["data"]["job"]["reference"] == job]
    assert ours == ["sent", "accepted", "in_progress"]
    assert int(live["id"]) == live_id and live["data"]["job"]["status"] == "completed"


def test_a_contractor_stream_carries_only_that_contractors_jobs(apis, who):
    api1, api2 = apis
    theirs = report(api1, who["advisor"], free_street_light())["job"]["reference"]
    other = report(api1, who["advisor"], free_street_light())["job"]["reference"]
    with new_session() as s:
        cid = s.scalar(select(Contractor.id).where(Contractor.name == "street-lighting"))
        s.execute(text("UPDATE jobs SET contractor_id = :c WHERE reference = :r"), {"c": cid, "r": theirs})
        s.execute(text("UPDATE jobs SET contractor_id = NULL WHERE reference = :r"), {"r": other})
        s.commit()
        start = s.scalar(select(JobEvent.id).order_by(JobEvent.id.desc()).limit(1))
    with api1.client(who["contractor"]) as c, c.stream("GET", "/api/v1/events") as r:
        sse = Sse(r.iter_lines())
        assert sse.next()["event"] == "ready"
        move(api2, who["supervisor"], other, "sent")
        mine = move(api2, who["supervisor"], theirs, "sent")
        frame = sse.until(lambda f: f["event"] == "job")
    assert frame["data"]["job"]["reference"] == theirs and int(frame["id"]) == mine
    # Catch-up is scoped the same way: every frame is the contractor's job.
    with api1.client(who["contractor"]) as c, c.stream("GET", "/api/v1/events",
                                                      headers={"Last-Event-ID": str(start)}) as r:
        sse = Sse(r.iter_lines())
        frames = []
        while (f := sse.next())["event"] != "ready":
            frames.append(f)
    assert frames and {f["data"]["job"]["reference"] for f in frames} == {theirs}
    with new_session() as s:
        other_ids = set(s.scalars(select(JobEvent.id).join(Job, Job.id == JobEvent.job_id)
                                  .where(Job.reference == other, JobEvent.id > start)))
    assert other_ids and not other_ids & {int(f["id"]) for f in frames}


def test_the_stream_refuses_field_workers_strangers_and_bad_ids(apis, who):
    api1, _ = apis
    with api1.client(who["field_worker"]) as c:
        r = c.get("/api/v1/events")
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    with api1.client() as c:
        assert c.get("/api/v1/events").status_code == 401
    with api1.client(who["advisor"]) as c:
        r = c.get("/api/v1/events", headers={"Last-Event-ID": "1; DROP TABLE jobs"})
    assert r.status_code == 422 and r.json()["fields"] == ["Last-Event-ID"]


def test_an_api_process_with_open_streams_stops_promptly(who, tmp_path):
    api = start_api(tmp_path / "api.log")
    try:
        with api.client(who["advisor"]) as c, c.stream("GET", "/api/v1/events") as r:
            sse = Sse(r.iter_lines())
            assert sse.next()["event"] == "ready"
            started = time.monotonic()
            api.proc.terminate()  # uvicorn waits for open responses: the streams must end themselves
            with pytest.raises(EOFError):
                sse.next()
            api.proc.wait(10)
        took = time.monotonic() - started
    finally:
        stop(api.proc)
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert api.proc.returncode in (0, -signal.SIGTERM) and took < 5, (api.proc.returncode, took)

# Real processes and committed rows: run after the rollback-per-test modules.
pytestmark = pytest.mark.commits
