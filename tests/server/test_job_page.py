"""GET /api/v1/jobs/{reference}: the page built in one statement (jobs.page) is the ORM's page (views.job_page),
key for key and in the same order, for every role; refusals answer as before."""
from __future__ import annotations

import json
import tempfile
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select, update

from server.auth.tokens import create_token
from server.config import get_settings
from server.jobs.access import SEE_ALL
from server.jobs.models import Job
from server.jobs.service import append_event
from server.jobs.views import job_page
from server.reports.models import Report
from tests.conftest import auth
from tests.server.test_intake import body, post
from tests.server.test_photos_and_jobs import jpeg_with_gps, upload

ODD_TEXT = 'Bin "empty" \\ again\nnext line, tab\t, bell \u0007, £ and 🚧'


@pytest.fixture(autouse=True)
def photo_root(tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "photo_root", tmp_path)
    return tmp_path


@pytest.fixture
def story(client, tokens, db):
    """A job with two reports (two field workers), photos on a report and on the job, a contractor assignment,
    an event with a note and odd text, and a reporter's details; plus one token per kind of caller."""
    second = create_token(db, "field_worker", name="second-inspector")[1]
    first = post(client, tokens["field_worker"], body(description=ODD_TEXT)).json()
    ref = first["job"]["reference"]
    again = post(client, second, body(description="Still empty", accuracy_m=12.5)).json()
    assert again["job"]["reference"] == ref, again  # the second report joins the same job
    for _ in range(2):
        assert upload(client, tokens["field_worker"], first["reference"], jpeg_with_gps()).status_code == 201
    h = auth(tokens["supervisor"])
    r = client.post(f"/api/v1/jobs/{ref}/assign", json={"contractor": "street-lighting", "note": ODD_TEXT}, headers=h)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/jobs/{ref}/photos", headers=h, data={"client_id": str(uuid.uuid4()), "kind": "progress"},
                    files={"file": ("p.jpg", jpeg_with_gps((320, 240)), "image/jpeg")})
    assert r.status_code == 201, r.text
    db.execute(update(Report).where(Report.reference == again["reference"]).values(
        reporter={"name": "Ann O'Neill", "email": "ann@example.org", "media_url": ["https://example.org/a.jpg"],
                  "client": "fixmystreet"}))
    job = db.scalar(select(Job).where(Job.reference == ref))
    append_event(db, job, "note_added", "supervisor:test", note=ODD_TEXT,
                 data={"share": 1.5, "list": [1, "x", None, {"deep": True}], "big": 2**53 + 1})
    db.flush()
    people = {
        "advisor": tokens["advisor"], "supervisor": tokens["supervisor"], "admin": tokens["admin"],
        "field_worker": tokens["field_worker"], "second_field_worker": second,
        "contractor": create_token(db, "contractor", name="lights", contractor="street-lighting")[1],
        "other_contractor": create_token(db, "contractor", name="parks", contractor="green-spaces")[1],
        "crew": tokens["crew"],
        "stranger": create_token(db, "field_worker", name="stranger")[1],
        "open311_client": create_token(db, "open311_client", name="fixmystreet")[1],
    }
    db.flush()
    return job, people


def expected_page(db, job: Job, role: str) -> dict:
    """The page as the ORM builds it, through JSON as the old handler sent it."""
    db.expire_all()
    return json.loads(json.dumps(job_page(db, db.get(Job, job.id), include_reporters=role in SEE_ALL)))


def same_shape(got, want, where="page") -> None:
    """Equal, with the keys of every object in the same order."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (where, list(got), list(want))
        for k in want:
            same_shape(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            same_shape(g, w, f"{where}[{i}]")
    else:
        assert got == want and type(got) is type(want), (where, got, want)


def fetch_page(client, db, job, person: str, token: str) -> tuple[dict, dict]:
    """(the new page, the ORM's page) read at about the same moment; the seconds left on the clock may tick."""
    before = expected_page(db, job, person)
    r = client.get(f"/api/v1/jobs/{job.reference}", headers=auth(token))
    after = expected_page(db, job, person)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    got = r.json()
    left = got["sla"].get("remaining_seconds")
    if left is not None:
        assert after["sla"]["remaining_seconds"] <= left <= before["sla"]["remaining_seconds"]
        got["sla"]["remaining_seconds"] = before["sla"]["remaining_seconds"]
    return got, before


@pytest.mark.parametrize("person", ["advisor", "supervisor", "admin", "field_worker", "second_field_worker",
                                    "contractor"])
def test_the_page_is_the_orm_page_for_every_role_that_may_see_it(client, db, story, person):
    job, people = story
    got, want = fetch_page(client, db, job, person, people[person])
    same_shape(got, want)
    # What the story put there is on the page (so the comparison above compared something).
    assert len(got["reports"]) == 2 and len(got["photos"]) == 3 and len(got["timeline"]) >= 4
    assert got["assignee"]["kind"] == "contractor" and got["assignee"]["name"] == "street-lighting"
    assert got["asset"]["layer"] == "grit_bins" and {"lat", "lon"} <= set(got["asset"])
    assert [e["id"] for e in got["timeline"]] == sorted((e["id"] for e in got["timeline"]), reverse=True)
    assert got["reports"][0]["description"] == ODD_TEXT
    assert any(e["note"] == ODD_TEXT for e in got["timeline"])
    assert [p["kind"] for p in got["photos"]] == ["report", "report", "progress"]
    shown = [("reporter" in r) for r in got["reports"]]
    assert shown == [person in SEE_ALL] * 2
    if person in SEE_ALL:
        assert got["reports"][1]["reporter"]["name"] == "Ann O'Neill"


def test_datetimes_are_written_as_isoformat_writes_them(client, db, story):
    """With and without microseconds, and in another session time zone than UTC."""
    job, people = story
    whole = datetime(2026, 7, 1, 9, 30, tzinfo=timezone.utc)
    append_event(db, job, "note_added", "supervisor:test", note="on the hour", at=whole)  # no microseconds
    db.execute(update(Job).where(Job.id == job.id).values(on_hold_since=whole + timedelta(microseconds=120),
                                                        status="on_hold"))
    db.flush()
    got, want = fetch_page(client, db, job, "advisor", people["advisor"])
    same_shape(got, want)
    assert got["timeline"][0]["at"] == "2026-07-01T09:30:00+00:00"
    assert got["sla"]["on_hold_since"] == "2026-07-01T09:30:00.000120+00:00"
    db.connection().exec_driver_sql("SET LOCAL TIME ZONE 'America/St_Johns'")  # -02:30 in July
    got, want = fetch_page(client, db, job, "advisor", people["advisor"])
    same_shape(got, want)
    assert got["timeline"][0]["at"] == "2026-07-01T07:00:00-02:30"


@contextmanager
def wire(driver):
    """What a psycopg connection sent and received meanwhile (libpq's protocol trace), one message a line."""
    from psycopg import pq

    with tempfile.TemporaryFile("w+") as f:
        driver.pgconn.trace(f.fileno())
        driver.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        lines: list[str] = []
        try:
            yield lines
        finally:
            driver.pgconn.untrace()
            f.seek(0)
            lines.extend(f.read().splitlines())


def statements(lines: list[str]) -> list[str]:
    """The statements the server completed ("SELECT 1", "SAVEPOINT"…)."""
    return [line.split("\t")[-1].strip().strip('"') for line in lines if "\tCommandComplete\t" in line]


def test_one_statement_answers_the_page(client, db, story):
    job, people = story
    with wire(db.connection().connection.driver_connection) as lines:
        r = client.get(f"/api/v1/jobs/{job.reference}", headers=auth(people["advisor"]))
    assert r.status_code == 200
    assert [s for s in statements(lines) if s not in ("SAVEPOINT", "RELEASE")] == ["SELECT 1"], lines


@pytest.mark.parametrize("person", ["other_contractor", "crew", "stranger"])
def test_a_job_not_yours_is_a_404_as_if_it_did_not_exist(client, story, person):
    job, people = story
    r = client.get(f"/api/v1/jobs/{job.reference}", headers=auth(people[person]))
    missing = client.get("/api/v1/jobs/J-999999999", headers=auth(people[person]))
    for resp, ref in ((r, job.reference), (missing, "J-999999999")):
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/problem+json")
        p = resp.json()
        assert p["type"].endswith("/job-not-found") and p["fields"] == ["reference"]
        assert p["detail"] == f"no job {ref!r}" and p["instance"] == f"/api/v1/jobs/{ref}"


def test_refusals_answer_as_before(client, db, story):
    job, people = story
    url = f"/api/v1/jobs/{job.reference}"
    revoked_row, revoked = create_token(db, "advisor", name="gone")
    revoked_row.revoked_at = datetime.now(timezone.utc)
    _, expired = create_token(db, "advisor", name="old", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    db.flush()
    cases = [({}, "send 'Authorization: Bearer <token>'"), ({"Authorization": "Basic abc"},
                                                            "send 'Authorization: Bearer <token>'"),
             (auth("ks_unknown"), "the token is unknown, revoked or expired"),
             (auth(revoked), "the token is unknown, revoked or expired"),
             (auth(expired), "the token is unknown, revoked or expired")]
    for headers, detail in cases:
        r = client.get(url, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert r.headers["content-type"].startswith("application/problem+json")
        p = r.json()
        assert p["detail"] == detail and p["fields"] == ["Authorization"] and p["type"].endswith("/unauthorized")
        assert job.reference not in r.text.replace(url, "")
    r = client.get(url, headers=auth(people["open311_client"]))
    assert r.status_code == 403 and r.json()["detail"] == "an open311_client token is an api_key for /open311/v2 only"
    assert job.reference not in r.text.replace(url, "")
    r = client.get("/api/v1/jobs/J-1%00", headers=auth(people["advisor"]))
    assert r.status_code == 422 and r.json()["type"].endswith("/invalid-value")


FLOATS = [5.0, -0.0, 0.0, 0.1, 1.5, 51.381234567891, -2.359, 1e-05, 0.0001, 123456789.0, 99999999999999.0,
          2.5e-300, 1.7976931348623157e308, 1 / 3]
MOMENTS = [datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=timezone.utc), datetime(2026, 3, 29, 1, tzinfo=timezone.utc),
           datetime(1999, 12, 31, 23, 59, 59, 10, tzinfo=timezone.utc), datetime(2026, 7, 1, 9, 30, 0, 500000,
                                                                                  tzinfo=timezone.utc)]


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "America/St_Johns", "Asia/Kolkata"])
def test_floats_and_datetimes_in_the_arrays_are_written_as_python_writes_them(db, zone):
    from server.jobs.page import _float, _iso

    conn = db.connection()
    conn.exec_driver_sql(f"SET LOCAL TIME ZONE '{zone}'")
    for x in FLOATS:
        got = conn.exec_driver_sql(f"SELECT ({_float('v')})::text FROM (SELECT %(x)s::float8 AS v) s", {"x": x})
        assert got.scalar_one() == json.dumps(x), x
    for m in MOMENTS:
        text_, back = conn.exec_driver_sql(f"SELECT {_iso('v')}, v FROM (SELECT %(m)s::timestamptz AS v) s",
                                           {"m": m}).one()
        assert text_ == back.isoformat(), (zone, m)  # as psycopg hands it to Python in this session


@pytest.mark.commits
def test_on_its_own_engine_the_page_is_one_round_trip_outside_a_transaction(prepared_db):
    """Without the tests' session and without the async pool (an app run without its lifespan: the API's own
    runs read on the pool, tests/server/test_intake_pool.py): the read takes a connection of the engine's pool
    in autocommit (one round trip: no BEGIN, no COMMIT), and the connection goes back to the pool as it was."""
    from fastapi.testclient import TestClient

    from server.db import get_engine, new_session
    from server.main import create_app
    from tests.browser.live import commit_token, free_street_light, revoke_tokens

    made = [commit_token("advisor"), commit_token("field_worker")]
    (_, advisor), (_, reporter) = made
    light = free_street_light()
    traced: list = []
    tracing = ExitStack()

    def checkout(driver, record, proxy):
        traced.append((driver, tracing.enter_context(wire(driver))))

    try:
        with TestClient(create_app()) as client:
            r = client.post("/api/v1/reports", headers=auth(reporter), json={
                "client_id": str(uuid.uuid4()), "category": "street_light", "lat": light["lat"], "lon": light["lon"],
                "accuracy_m": 5.0, "observed_at": datetime.now(timezone.utc).isoformat(), "asset_ref": light["ref"],
                "answers": {"fault": "out"}, "description": "Lamp out"})
            assert r.status_code == 201, r.text
            ref = r.json()["job"]["reference"]
            pool, client.app.state.intake_pool = client.app.state.intake_pool, None  # the engine's path
            pages = []
            event.listen(get_engine(), "checkout", checkout)
            try:
                for _ in range(7):  # psycopg prepares a statement on its 6th execution on a connection
                    pages.append(client.get(f"/api/v1/jobs/{ref}", headers=auth(advisor)))
            finally:
                event.remove(get_engine(), "checkout", checkout)
                tracing.close()
            used: list = []

            def note(driver, record, proxy):
                used.append(driver)

            event.listen(get_engine(), "checkout", note)
            try:  # a value the database refuses: a 422, and the connection goes back as it was
                bad = client.get("/api/v1/jobs/J-1%00", headers=auth(advisor))
            finally:
                event.remove(get_engine(), "checkout", note)
                client.app.state.intake_pool = pool
        assert bad.status_code == 422 and bad.json()["type"].endswith("/invalid-value")
        assert len(used) == 1 and used[0].autocommit is False and used[0].info.transaction_status.name == "IDLE"
        assert [p.status_code for p in pages] == [200] * 7
        assert len(traced) == 7  # one connection each
        for driver, lines in traced:
            assert statements(lines) == ["SELECT 1"], lines
            assert sum("\tSync" in line for line in lines) <= 2, lines  # a second only when psycopg prepares
            assert [line for line in lines if "\tReadyForQuery\t" in line][-1].endswith("I")  # no transaction
            assert driver.autocommit is False  # back in the pool as it was
        with new_session() as s:
            want = json.loads(json.dumps(job_page(s, s.scalar(select(Job).where(Job.reference == ref)),
                                                  include_reporters=True)))
        got = pages[-1].json()
        got["sla"]["remaining_seconds"] = want["sla"]["remaining_seconds"]  # read a moment apart
        same_shape(got, want)
    finally:
        revoke_tokens([i for i, _ in made])


def test_the_statement_is_short_enough_for_psycopgs_statement_cache():
    """psycopg parses a statement again on every execution when it is longer than this (it was, at 7,500)."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    from server.jobs.page import SQL

    assert len(SQL) <= MAX_CACHED_STATEMENT_LENGTH


def test_database_errors_are_raised_as_sqlalchemys_and_a_lost_connection_is_invalidated(engine):
    """What server.errors answers from: a refused value is a DataError (422), a lost connection an
    OperationalError with the connection invalidated (503), as when SQLAlchemy runs the statement."""
    from sqlalchemy.exc import DataError, OperationalError

    from server.jobs.page import _execute

    with engine.connect() as conn:
        with pytest.raises(DataError):
            _execute(conn, {"token_hash": "x", "reference": "J-1\x00"})
        assert not conn.invalidated
        assert _execute(conn, {"token_hash": "x", "reference": "J-1"}) is None  # no such token: no row
        pid = conn.connection.driver_connection.info.backend_pid
        with engine.connect() as other:
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar_one() is True
        with pytest.raises(OperationalError) as lost:
            _execute(conn, {"token_hash": "x", "reference": "J-1"})
        assert lost.value.connection_invalidated and conn.invalidated


def test_a_connection_lost_in_the_pool_is_a_503_and_the_pool_recovers(engine):
    """The read on a pooled connection whose server went away: invalidated (not handed out again), and the
    connection is left in autocommit only if it is gone."""
    from sqlalchemy.exc import OperationalError

    from server.jobs.page import _execute

    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        pid = driver.info.backend_pid
        with engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(OperationalError) as lost:
            _execute(conn, {"token_hash": "x", "reference": "J-1"}, autocommit=True)
        assert lost.value.connection_invalidated and conn.invalidated
    with engine.connect() as conn:
        assert _execute(conn, {"token_hash": "x", "reference": "J-1"}, autocommit=True) is None
        assert conn.connection.driver_connection.autocommit is False
