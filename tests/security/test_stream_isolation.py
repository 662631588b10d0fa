"""The live event stream: contractor A receives its own jobs' events and nothing of contractor B's.

The stream reads committed rows (catch-up) and is fed by NOTIFY at commit, so this module commits a
small world of its own (and removes its outbox rows and subscription, and revokes its tokens, after).
"""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update

from server.auth.models import ApiToken
from server.jobs.models import Job, JobEvent
from server.outbox.models import OutboxMessage, Subscription
from tests.security.asgi import Stream
from tests.security.world import auth, build

pytestmark = pytest.mark.commits


@pytest.fixture(scope="module")
def committed(prepared_db, tmp_path_factory):
    """(app, world, last event id before the world) with every row committed; cleaned up after."""
    from server.config import get_settings
    from server.db import new_session
    from server.main import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(get_settings(), "photo_root", tmp_path_factory.mktemp("stream-photos"))
        app = create_app()
        with new_session() as s:
            before = s.scalar(select(func.coalesce(func.max(JobEvent.id), 0)))
            w = build(TestClient(app), s, commit=s.commit)
            s.commit()
        try:
            yield app, w, before
        finally:
            with new_session() as s:
                jobs = select(Job.id).where(Job.reference.in_([w.job_a, w.job_b, w.job_crew]))
                s.execute(delete(OutboxMessage).where(OutboxMessage.job_id.in_(jobs)))
                s.execute(delete(OutboxMessage).where(OutboxMessage.destination == f"webhook:{w.subscription}"))
                s.execute(delete(Subscription).where(Subscription.id == w.subscription))
                s.execute(update(ApiToken).where(ApiToken.name.like("sec-%"), ApiToken.revoked_at.is_(None))
                          .values(revoked_at=func.now()))
                s.commit()


def job_frames(frames: list[dict]) -> list[dict]:
    return [json.loads(f["data"]) for f in frames if f.get("event") == "job"]


def test_catch_up_gives_a_its_events_and_none_of_b(committed):
    app, w, before = committed
    headers = {**auth(w.tokens["contractor_a"]), "Last-Event-ID": str(before)}
    with Stream(app, "/api/v1/events", headers) as s:
        assert s.status == 200 and s.headers["content-type"].startswith("text/event-stream")
        frames = s.frames(lambda f: f.get("event") == "ready")
        raw = s.raw
    events = job_frames(frames)
    assert events, "contractor A's own job has events since the world was built"
    assert {e["job"]["reference"] for e in events} == {w.job_a}
    assert not [m for m in w.marker_b if m.encode() in raw]
    # Positive control: B catching up from the same point gets B's job and not A's.
    with Stream(app, "/api/v1/events", {**auth(w.tokens["contractor_b"]), "Last-Event-ID": str(before)}) as s:
        b_events = job_frames(s.frames(lambda f: f.get("event") == "ready"))
    assert {e["job"]["reference"] for e in b_events} == {w.job_b}


def test_live_changes_to_b_never_reach_a(committed):
    app, w, _ = committed
    sup = TestClient(app)
    with Stream(app, "/api/v1/events", auth(w.tokens["contractor_a"])) as s:
        s.frames(lambda f: f.get("event") == "ready")
        # B's job changes first: were the filter broken, its frame would arrive before A's.
        for ref in (w.job_b, w.job_a):
            r = sup.post(f"/api/v1/jobs/{ref}/status", headers=auth(w.tokens["supervisor"]),
                         json={"status": "sent", "note": f"stream isolation {ref}"})
            assert r.status_code == 200, r.text
        frames = s.frames(lambda f: f.get("event") == "job" and json.loads(f["data"])["job"]["reference"] == w.job_a)
        raw = s.raw
    events = job_frames(frames)
    assert [e["job"]["reference"] for e in events] == [w.job_a]
    assert events[0]["type"] == "status_changed" and events[0]["job"]["status"] == "sent"
    assert not [m for m in w.marker_b if m.encode() in raw]
