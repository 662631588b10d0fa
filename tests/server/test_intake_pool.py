"""The report intake on the API's async pool: the path every POST /api/v1/reports takes in a running API.

The rest of tests/server runs the app with its sessions overridden (a rollback per test), which sends the
intake through the session path. Here the app runs as it does in production (its lifespan opens the pool, no
override), so these reports are committed: each test works on lamp columns no other test reports.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from server.notifications import received
from tests.conftest import auth, worker_step

pytestmark = pytest.mark.commits


@pytest.fixture(scope="module")
def live(prepared_db):
    """The app as uvicorn runs it (lifespan, no overrides), a token per role, committed."""
    from server.auth.tokens import create_token
    from server.db import new_session
    from server.main import create_app

    with new_session() as s:
        tokens = {role: create_token(s, role, name=f"pool-{role}")[1] for role in ("field_worker", "advisor")}
        tokens["contractor"] = create_token(s, "contractor", name="pool-contractor", contractor="street-lighting")[1]
        s.commit()
    with TestClient(create_app()) as client:
        yield client, tokens


_taken: set[int] = set()


def lamp_column(db) -> tuple[str, float, float]:
    """A real B&NES lamp column with no open street-light job and none taken by another test here: (ref, lat, lon)."""
    row = db.execute(text("""
        SELECT a.id, a.external_ref, ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326))
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id
         WHERE l.name = 'street_lights' AND a.external_ref NOT LIKE 'BL-%'
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id AND j.category_code = 'street_light')
           AND a.id <> ALL(:taken)
         ORDER BY a.id LIMIT 1"""), {"taken": list(_taken) or [0]}).one()
    _taken.add(row[0])
    return row[1], row[2], row[3]


def report(lat: float, lon: float, **over) -> dict:
    b = {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": lat + 0.00002, "lon": lon,
         "accuracy_m": 4.0, "observed_at": datetime.now(timezone.utc).isoformat(), "answers": {"fault": "out"}}
    b.update(over)
    return b


def served(client) -> int:
    return client.app.state.intake_pool.get_stats().get("requests_num", 0)


def test_a_report_opens_a_job_on_the_pool_and_a_retry_gets_the_same_answer(live, db):
    client, tokens = live
    ref, lat, lon = lamp_column(db)
    before = served(client)
    b = report(lat, lon)
    r = client.post("/api/v1/reports", json=b, headers=auth(tokens["field_worker"]))
    assert r.status_code == 201, r.text
    assert served(client) == before + 1  # the pool's connection, not a session
    a = r.json()
    assert a["job"]["asset"]["ref"] == ref and a["job"]["attached"] is False and a["job"]["demand_count"] == 1
    assert a["job"]["due_in_words"] and a["channel"] == "field_app"
    job = a["job"]["reference"]
    types = db.execute(text("SELECT e.type FROM job_events e JOIN jobs j ON j.id = e.job_id "
                            "WHERE j.reference = :r ORDER BY e.id"), {"r": job}).scalars().all()
    assert types == ["report_received", "job_opened", "snapped", "sla_set"]
    assert db.execute(text("SELECT count(*) FROM outbox_messages WHERE idempotency_key = :k"),
                      {"k": f"dispatch:{job}"}).scalar_one() == 1

    again = client.post("/api/v1/reports", json=b, headers=auth(tokens["field_worker"]))
    assert again.status_code == 200 and again.json() == a
    other = client.post("/api/v1/reports", json={**b, "description": "changed"},
                        headers=auth(tokens["field_worker"]))
    assert other.status_code == 409 and other.json()["type"].endswith("/idempotency-conflict")
    assert db.execute(text("SELECT count(*) FROM reports WHERE client_id = :c"),
                      {"c": b["client_id"]}).scalar_one() == 1


def test_a_second_report_attaches_and_a_more_severe_one_raises_the_priority(live, db):
    client, tokens = live
    _, lat, lon = lamp_column(db)
    first = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["field_worker"])).json()
    second = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["advisor"]))
    assert second.status_code == 201
    s = second.json()
    assert s["job"]["reference"] == first["job"]["reference"] and s["job"]["attached"] is True
    assert s["job"]["demand_count"] == 2 and s["channel"] == "contact_centre"
    # A more severe report needs the ORM's follow-up: the same use case on a session, in one transaction.
    worse = client.post("/api/v1/reports", json=report(lat, lon, answers={"fault": "damaged_exposed_wiring"}),
                        headers=auth(tokens["field_worker"]))
    assert worse.status_code == 201, worse.text
    w = worse.json()
    assert w["job"]["priority"] == "emergency" and w["job"]["demand_count"] == 3
    row = db.execute(text("SELECT priority, demand_count, (SELECT count(*) FROM job_events e WHERE e.job_id = j.id "
                          "AND e.type = 'priority_raised') FROM jobs j WHERE reference = :r"),
                     {"r": first["job"]["reference"]}).one()
    assert tuple(row) == ("emergency", 3, 1)
    assert db.execute(text("SELECT count(*) FROM reports r JOIN jobs j ON j.id = r.job_id WHERE j.reference = :r"),
                      {"r": first["job"]["reference"]}).scalar_one() == 3


def test_the_reporters_contact_and_its_messages_ride_on_the_intake(live, db):
    client, tokens = live
    _, lat, lon = lamp_column(db)
    contact = {"first_name": "Ada", "email": "ada.pool@example.org", "phone": "07700 900456", "notify": "both",
               "consent": True}
    r = client.post("/api/v1/reports", json=report(lat, lon, contact=contact), headers=auth(tokens["advisor"]))
    assert r.status_code == 201, r.text
    ref = r.json()["reference"]
    assert "ada.pool" not in r.text.lower() and "900456" not in r.text  # never in the answer
    # Queued as it came, in the report's transaction; filed by the outbox worker before each delivery run.
    queued = db.execute(text("SELECT q.email, q.phone, q.notify, q.tell FROM contact_queue q "
                             "JOIN reports r ON r.id = q.report_id WHERE r.reference = :r"), {"r": ref}).all()
    assert [tuple(q) for q in queued] == [("ada.pool@example.org", "07700900456", "both", True)]
    # What the outbox worker does before each delivery run; its transaction, still open, holds the job's key
    # (the outbox rows refer to it) and a report joining the job does not wait for it.
    received.write_queued(db)
    c = db.execute(text("SELECT c.id, c.email, c.phone, c.notify, c.consent_at IS NOT NULL, c.channel "
                        "FROM reporter_contacts c JOIN reports r ON r.id = c.report_id WHERE r.reference = :r"),
                   {"r": ref}).one()
    assert tuple(c)[1:] == ("ada.pool@example.org", "07700900456", "both", True, "contact_centre")
    assert db.execute(text("SELECT contact_id FROM received_queue WHERE contact_id = :c"), {"c": c.id}).all() == []
    msgs = db.execute(text("SELECT destination, topic, payload->>'contact_id', payload->>'report' FROM outbox_messages "
                           "WHERE idempotency_key LIKE :k ORDER BY id"), {"k": f"notify:received:{ref}:%"}).all()
    assert [tuple(m) for m in msgs] == [("notify:email", "received", str(c.id), ref),
                                        ("notify:sms", "received", str(c.id), ref)]
    # The same person reporting the same fault again is avoidable contact: a chaser.
    job = r.json()["job"]["reference"]
    again = client.post("/api/v1/reports", json=report(lat, lon, contact={**contact, "email": "ADA.pool@example.org"}),
                        headers=auth(tokens["advisor"]))
    assert again.status_code == 201 and again.json()["job"]["reference"] == job
    received.write_queued(db)
    assert db.execute(text("SELECT count(*) FROM chasers h JOIN jobs j ON j.id = h.job_id "
                           "WHERE j.reference = :j AND h.kind = 'repeat_report'"), {"j": job}).scalar_one() == 1


def test_a_repeat_contact_filed_before_the_earlier_report_is_still_the_one_chaser(live, db, engine):
    """Two workers may file one job's contacts out of order (SKIP LOCKED): the later report is the repeat
    whichever is filed first, and it is counted once."""
    client, tokens = live
    _, lat, lon = lamp_column(db)
    contact = {"email": "order.pool@example.org", "notify": "email", "consent": True}
    a = client.post("/api/v1/reports", json=report(lat, lon, contact=contact), headers=auth(tokens["advisor"])).json()
    b = client.post("/api/v1/reports", json=report(lat, lon, contact={**contact, "email": "Order.Pool@example.org"}),
                    headers=auth(tokens["advisor"])).json()
    job = a["job"]["reference"]
    assert b["job"]["reference"] == job

    def state() -> tuple[list[str], int]:
        filed = db.execute(text("SELECT r.reference FROM reporter_contacts c JOIN reports r ON r.id = c.report_id "
                                "WHERE r.reference IN (:a, :b) ORDER BY r.id"), {"a": a["reference"], "b": b["reference"]})
        chased = db.execute(text("SELECT count(*) FROM chasers h JOIN jobs j ON j.id = h.job_id "
                                 "WHERE j.reference = :j AND h.kind = 'repeat_report'"), {"j": job})
        return list(filed.scalars()), chased.scalar_one()

    with engine.connect() as other:  # another worker is filing A: its queue row is locked
        assert other.execute(text("SELECT count(*) FROM (SELECT 1 FROM contact_queue q JOIN reports r "
                                  "ON r.id = q.report_id WHERE r.reference = :a FOR UPDATE OF q) x"),
                             {"a": a["reference"]}).scalar_one() == 1
        worker_step(db)  # this worker skips A and files B, with A still queued
        assert state() == ([b["reference"]], 1)
        other.rollback()
    worker_step(db)
    assert state() == ([a["reference"], b["reference"]], 1)


def test_refusals_on_the_pool_are_the_same_problems_and_store_nothing(live, db):
    client, tokens = live
    ref, lat, lon = lamp_column(db)

    def count() -> int:
        return db.execute(text("SELECT count(*) FROM reports")).scalar_one()

    def post(b, token=tokens["field_worker"]):
        return client.post("/api/v1/reports", json=b, headers=auth(token) if token else {})

    n = count()
    assert post(report(lat, lon), token=None).status_code == 401
    assert post(report(lat, lon), token="ks_" + "x" * 43).status_code == 401
    assert post(report(lat, lon), token=tokens["contractor"]).status_code == 403
    bad = post(report(lat, lon, answers={"fault": "on_fire"}))
    assert bad.status_code == 422 and bad.json()["type"].endswith("/invalid-answer")
    out = post(report(51.4545, -2.5879))  # Bristol: outside B&NES
    assert out.status_code == 422 and out.json()["type"].endswith("/out-of-area")
    unknown = post(report(lat, lon, asset_ref="NO-SUCH-COLUMN"))
    assert unknown.status_code == 422 and unknown.json()["fields"] == ["asset_ref"]
    assert post(report(lat, lon, category="no_such_category")).status_code == 422
    assert count() == n
    hinted = post(report(lat, lon, asset_ref=ref))
    assert hinted.status_code == 201 and hinted.json()["job"]["asset"]["ref"] == ref
    assert count() == n + 1


def test_an_attach_with_webhooks_subscribed_is_declined_on_the_pool_and_taken_once_on_a_session(live, db,
                                                                                              engine):
    """On the pool (autocommit) kerbside_intake declines an attach that CRM webhooks wait for, before writing
    anything; the session path then stores the report once, with the webhook's message, in one transaction."""
    client, tokens = live
    _, lat, lon = lamp_column(db)
    h = auth(tokens["field_worker"])
    first = client.post("/api/v1/reports", json=report(lat, lon), headers=h).json()
    with engine.begin() as c:
        sid = c.execute(text("INSERT INTO subscriptions (url, secret, event_types, active) VALUES "
                             "('https://crm.example.org/hook', 'not-a-real-secret', '[\"report_attached\"]', true) "
                             "RETURNING id")).scalar_one()
    try:
        before = served(client)
        again = client.post("/api/v1/reports", json=report(lat, lon), headers=h)
        assert again.status_code == 201, again.text
        assert again.json()["job"]["attached"] is True and again.json()["job"]["demand_count"] == 2
        assert served(client) == before + 1  # the pool was asked first
        job = first["job"]["reference"]
        counts = db.execute(text("""
            SELECT (SELECT count(*) FROM reports r WHERE r.job_id = j.id),
                   (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.type = 'report_attached'),
                   (SELECT count(*) FROM outbox_messages o WHERE o.job_id = j.id AND o.destination = :d),
                   j.demand_count
              FROM jobs j WHERE j.reference = :r"""), {"r": job, "d": f"webhook:{sid}"}).one()
        assert tuple(counts) == (2, 1, 1, 2)
    finally:
        with engine.begin() as c:
            c.execute(text("UPDATE subscriptions SET active = false WHERE id = :i"), {"i": sid})


def test_the_wake_ups_are_sent_after_the_report_commits(live, db):
    """The pool's intake sends its NOTIFYs in a transaction of its own after the report's commit: listeners
    (event streams, the outbox worker) still hear of the new job, its SLA event and its dispatch."""
    import psycopg

    from server import events
    from server.config import get_settings
    from server.outbox.service import CHANNEL as OUTBOX

    client, tokens = live
    _, lat, lon = lamp_column(db)
    url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {events.CHANNEL}")
        listener.execute(f"LISTEN {OUTBOX}")
        r = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["field_worker"]))
        assert r.status_code == 201
        job = r.json()["job"]["reference"]
        heard = []
        for note in listener.notifies(timeout=10, stop_after=2):
            heard.append((note.channel, note.payload))
    by_channel = dict(heard)
    assert by_channel[OUTBOX] == ""
    event = json.loads(by_channel[events.CHANNEL])
    assert event["job"] == job and event["type"] == "sla_set" and event["status"] == "new"
    # …and the event it names is committed by then.
    assert db.execute(text("SELECT type FROM job_events WHERE id = :i"), {"i": event["event_id"]}).scalar_one() == \
        "sla_set"


def test_the_pool_is_sized_by_its_own_setting_not_the_sessions(live):
    from server.config import get_settings

    client, _ = live
    s = get_settings()
    assert client.app.state.intake_pool.max_size == s.db_async_pool_size


def test_the_apps_connections_have_no_jit_compiling(live, engine):
    """Both pools' connections (the sessions' and the async one's) run with jit off (server/db.py)."""
    client, _ = live

    async def show() -> str:
        async with client.app.state.intake_pool.connection() as conn:
            return (await (await conn.execute("SHOW jit")).fetchone())[0]

    assert client.portal.call(show) == "off"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"


def test_a_pinged_connection_is_handed_out_idle_to_the_page_and_the_intake(live, db, monkeypatch):
    """A connection idle for db_ping_idle_seconds is pinged before use; the ping leaves no transaction open
    (the page's autocommit could not be set on one, and a report would run inside it)."""
    from server.config import get_settings

    client, tokens = live
    _, lat, lon = lamp_column(db)
    monkeypatch.setattr(get_settings(), "db_ping_idle_seconds", 0)  # every checkout is pinged
    a = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["advisor"]))
    assert a.status_code == 201, a.text
    for _ in range(3):
        r = client.get(f"/api/v1/jobs/{a.json()['job']['reference']}", headers=auth(tokens["advisor"]))
        assert r.status_code == 200, r.text
    again = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["advisor"]))
    assert again.status_code == 201 and again.json()["job"]["demand_count"] == 2


def test_the_job_page_is_read_on_the_pool_and_is_the_sessions_page(live, db):
    """GET /api/v1/jobs/{reference} in a running API reads on the async pool; its page is the one the session
    path builds (tests/server/test_job_page.py holds that one to the ORM's page), refusals included."""
    from server.deps import Caller
    from server.auth.models import ROLES
    from server.auth.tokens import hash_token
    from server.db import new_session
    from server.jobs.page import job_page_json

    client, tokens = live
    _, lat, lon = lamp_column(db)
    a = client.post("/api/v1/reports", json=report(lat, lon, description="Dark since Tuesday"),
                    headers=auth(tokens["field_worker"])).json()
    client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["advisor"]))
    job = a["job"]["reference"]

    def by_session(token: str) -> dict:
        with new_session() as s:
            return json.loads(job_page_json(s, Caller(hash_token(token), ROLES), job))

    for role in ("advisor", "field_worker"):
        before = served(client)
        r = client.get(f"/api/v1/jobs/{job}", headers=auth(tokens[role]))
        assert r.status_code == 200, r.text
        assert served(client) == before + 1  # the pool's connection, not a session
        page, expected = r.json(), by_session(tokens[role])
        # The SLA's "remaining" is worked out at the moment of asking: everything else is equal.
        for p in (page, expected):
            p["sla"].pop("remaining_seconds", None)
        assert page == expected
        assert page["reference"] == job and page["demand_count"] == 2 and len(page["reports"]) == 2
    # Whether the reporters are shown follows the caller's role, as on the session path.
    assert "reporter" in client.get(f"/api/v1/jobs/{job}", headers=auth(tokens["advisor"])).json()["reports"][0]
    # Refusals: the same problems as on the session path.
    other = client.get(f"/api/v1/jobs/{job}", headers=auth(tokens["contractor"]))
    assert other.status_code == 404 and other.json()["type"].endswith("/job-not-found")
    assert client.get(f"/api/v1/jobs/{job}", headers=auth("ks_" + "x" * 43)).status_code == 401
    assert client.get(f"/api/v1/jobs/{job}").status_code == 401
    missing = client.get("/api/v1/jobs/J-99999999", headers=auth(tokens["advisor"]))
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    refused = client.get("/api/v1/jobs/J-1%00", headers=auth(tokens["advisor"]))  # a value PostgreSQL refuses
    assert refused.status_code == 422 and refused.json()["type"].endswith("/invalid-value")
    # The reads hand their connections back out of autocommit: a report's write is still one transaction.
    again = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["advisor"]))
    assert again.status_code == 201 and again.json()["job"]["demand_count"] == 3


def _count(route: str, status: int) -> float:
    from server.metrics import REGISTRY

    return REGISTRY.get_sample_value("kerbside_http_requests_total",
                                     {"method": "POST", "route": route, "status": str(status)}) or 0.0


def test_what_the_intake_route_does_not_take_goes_on_to_the_api_route_with_its_body(live, db):
    """server/poolroute.py: the intake's PoolRoute answers a valid report on the pool, ahead of the APIRoute; a body
    that fails validation or a request with a query string goes on to the APIRoute, which reads the same body."""
    client, tokens = live
    ref, lat, lon = lamp_column(db)
    h = auth(tokens["field_worker"])
    before, n201 = served(client), _count("/api/v1/reports", 201)
    taken = client.post("/api/v1/reports", json=report(lat, lon), headers=h)
    assert taken.status_code == 201 and served(client) == before + 1
    assert _count("/api/v1/reports", 201) == n201 + 1  # the same route label as the APIRoute's
    # A body that fails validation: the token and role are judged first, then the field at fault is named.
    no_lat = report(lat, lon)
    del no_lat["lat"]
    assert client.post("/api/v1/reports", json=no_lat).status_code == 401
    assert client.post("/api/v1/reports", json=no_lat, headers=auth(tokens["contractor"])).status_code == 403
    bad = client.post("/api/v1/reports", json=no_lat, headers=h)
    assert bad.status_code == 422 and bad.json()["fields"] == ["lat"]
    assert bad.headers["content-type"].startswith("application/problem+json")
    # A query string: the APIRoute takes it (through the request's session, not the pool), body and all.
    after = served(client)
    b = report(lat + 0.00001, lon)
    queried = client.post("/api/v1/reports?via=query", json=b, headers=h)
    assert queried.status_code == 201 and queried.json()["client_id"] == b["client_id"]
    assert served(client) == after
    stored = db.execute(text("SELECT count(*) FROM reports WHERE client_id = :c"), {"c": b["client_id"]}).scalar_one()
    assert stored == 1
    # Other methods are the APIRoute's answer: 405, naming POST.
    get = client.get("/api/v1/reports", headers=h)
    assert get.status_code == 405 and "POST" in get.headers["allow"]


def test_the_job_page_route_on_the_pool_hands_on_what_it_does_not_take(live, db):
    """server/poolroute.py: the job page's PoolRoute answers GET on the pool under the APIRoute's route label;
    a query string and HEAD go on to the APIRoute (the engine's connection, or a 405); /jobs/overdue,
    matched ahead of it, is still the overdue list."""
    from server.metrics import REGISTRY

    client, tokens = live
    _, lat, lon = lamp_column(db)
    job = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["field_worker"])).json()
    ref = job["job"]["reference"]
    h = auth(tokens["advisor"])

    def count() -> float:
        return REGISTRY.get_sample_value("kerbside_http_requests_total", {
            "method": "GET", "route": "/api/v1/jobs/{reference}", "status": "200"}) or 0.0

    before, n = served(client), count()
    page = client.get(f"/api/v1/jobs/{ref}", headers=h)
    assert page.status_code == 200 and served(client) == before + 1 and count() == n + 1
    queried = client.get(f"/api/v1/jobs/{ref}?view=full", headers=h)
    assert queried.status_code == 200 and served(client) == before + 1 and count() == n + 2
    assert queried.json()["reference"] == ref == page.json()["reference"]
    head = client.head(f"/api/v1/jobs/{ref}", headers=h)  # the APIRoute's answer, as before the PoolRoute
    assert head.status_code == 405 and head.headers["allow"] == "GET" and served(client) == before + 1
    overdue = client.get("/api/v1/jobs/overdue", headers=h)
    assert overdue.status_code == 200 and served(client) == before + 1
