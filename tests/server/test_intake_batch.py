"""Group commit for the intake: reports waiting in an API process go to the database as one statement.

The batched path (server/reports/batch.py, migration 0022) takes what the two-statement path takes for most
reports: the database locates each report, judges its caller, snaps it and fills those into the parameter the
API built. These tests hold it to the two-statement path: the same parameter for the same report, the same
rows under concurrency, and everything it declines answered by that path as before.
"""
from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from server.metrics import INTAKE_BATCH, INTAKE_DECLINED
from tests.conftest import auth
from tests.server.test_intake_pool import lamp_column, live, report  # noqa: F401 (live is a fixture)

pytestmark = pytest.mark.commits

TIMES = (("now",), ("dup_since",), ("job", "due_at"), ("job", "risk_at"), ("answer", "received_at"))


def _untimed(p: dict) -> str:
    """A kerbside_intake parameter as canonical JSON, less what hangs on the moment it was built."""
    p = json.loads(json.dumps(p))
    for path in TIMES:
        *parents, leaf = path
        node = p
        for k in parents:
            node = node[k]
        node[leaf] = "(time)"
    p["opening_events"][-1]["after"]["due_at"] = "(time)"
    return json.dumps(p, sort_keys=True)


def _both(db, token: str, body: dict) -> tuple[dict, dict]:
    """The parameter kerbside_intake gets for `body`: filled in by kerbside_intake_ready from the batched item,
    and built by the two-statement path (its first statement run, its write caught before it is sent)."""
    from psycopg.rows import namedtuple_row

    from server.auth.tokens import hash_token
    from server.deps import Caller
    from server.reports import service
    from server.reports.router import REPORTERS, channel_for
    from server.reports.schemas import ReportIn

    data = ReportIn.model_validate(body)
    caller = Caller(hash_token(token), REPORTERS)
    item = service._batch_item(caller, data, channel_for)
    ready = db.execute(text("SELECT kerbside_intake_ready(CAST(:it AS jsonb))"), {"it": item}).scalar_one()
    raw = db.connection().connection.driver_connection
    steps = service._steps(caller, data, channel_for, {}, None, on_pool=True)
    sql, params = next(steps)
    with raw.cursor(row_factory=namedtuple_row) as cur:
        cur.execute(sql.text, params)
        sql, params = steps.send(cur.fetchone())
    assert sql is service._WRITE
    steps.close()
    return ready, json.loads(params["p"])


def test_the_database_fills_in_a_batched_report_as_the_two_statement_path_builds_it(live, db):
    """Lamp columns with and without a close runner-up, GPS fixes good and poor, a contact, both channels, and a
    category without an asset layer: the same kerbside_intake parameter, to the last digit and lock key."""
    _, tokens = live
    rows = db.execute(text("""
        SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326)) FROM assets a
          JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights' AND a.external_ref NOT LIKE 'BL-%'
         ORDER BY a.id LIMIT 40 OFFSET 200""")).all()
    seen: dict[str, set] = {"channel": set(), "runner_up": set(), "layer": set()}
    for i, (lat, lon) in enumerate(rows):
        over = {"accuracy_m": (2.0, 4.0, 12.5, None)[i % 4], "lat": lat + (i % 7 - 3) * 0.00003,
                "lon": lon + (i % 5 - 2) * 0.00004}
        if i % 3 == 0:
            over["contact"] = {"first_name": "Ada", "email": "ada.batch@example.org", "notify": "email",
                               "consent": True}
        if i % 10 == 9:
            over.update(category="graffiti", answers={"offensive": "no"})
        token = tokens["advisor" if i % 2 else "field_worker"]
        body = report(lat, lon)
        body.update(over)
        ready, built = _both(db, token, body)
        if "declined" in ready:  # nothing within the radius of this fix: the two-statement path triages it
            assert ready == {"declined": "snap"} and built["job"]["status"] == "triage"
            continue
        assert _untimed(ready["p"]) == _untimed(built)
        seen["channel"].add(built["answer"]["channel"])
        seen["layer"].add(built["answer"]["job"]["asset"] is not None)
        if built["answer"]["job"]["asset"] is not None:
            seen["runner_up"].add(built["answer"]["snap"]["runner_up"] is not None)
    assert seen["channel"] == {"field_app", "contact_centre"} and seen["layer"] == {True, False}
    assert True in seen["runner_up"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d1=st.floats(0, 60), gap=st.one_of(st.none(), st.floats(0, 60), st.floats(0, 1e-290), st.floats(1000, 5000)),
       accuracy=st.one_of(st.none(), st.floats(0, 80), st.floats(0, 10_000)), radius=st.floats(0.5, 1000),
       category=st.sampled_from(["street_light", "bin_overflowing", "graffiti"]),
       asset=st.one_of(st.none(), st.integers(1, 2**62)))
def test_confidence_rounding_and_lock_key_are_the_databases(db, d1, gap, accuracy, radius, category, asset):
    from server.assets import snapping
    from server.reports.service import _lock_key

    d2 = None if gap is None else d1 + gap
    sql = db.execute(text("""
        SELECT kerbside_snap_confidence(:d1, :d2, :a, :r), round(CAST(CAST(:d1 AS float8) AS numeric), 1)::float8,
               kerbside_intake_key(:c, :asset)"""),
                     {"d1": d1, "d2": d2, "a": accuracy, "r": radius, "c": category, "asset": asset}).one()
    assert sql[0] == snapping.confidence(d1, d2, accuracy, radius)
    assert sql[1] == snapping.rounded(d1, 1)
    assert sql[2] == _lock_key(category, asset if asset is not None else "-")


def test_python_rounds_as_the_database_at_the_halves(db):
    """round(2.25, 1) is 2.2 in Python and 2.3 in PostgreSQL: the intake's figures follow PostgreSQL."""
    from server.assets import snapping

    for x in (2.25, 0.15, 12.35, 0.0005, 1.0, 7.45):
        expected = db.execute(text("SELECT round(CAST(CAST(:x AS float8) AS numeric), 1)::float8, "
                                   "round(CAST(CAST(:x AS float8) AS numeric), 3)::float8"), {"x": x}).one()
        assert (snapping.rounded(x, 1), snapping.rounded(x, 3)) == tuple(expected)
    assert snapping.rounded(2.25, 1) == 2.3


def _post_together(client, bodies: list[dict], token: str) -> list:
    """POST every body at once, from threads that start together (the app's event loop interleaves them)."""
    start = threading.Barrier(len(bodies))
    answers: list = [None] * len(bodies)

    def post(i: int) -> None:
        start.wait()
        answers[i] = client.post("/api/v1/reports", json=bodies[i], headers=auth(token))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def _batches() -> tuple[float, float]:
    """(batches sent, reports in them) so far in this process."""
    samples = {s.name: s.value for s in INTAKE_BATCH.collect()[0].samples}
    return samples["kerbside_intake_batch_reports_count"], samples["kerbside_intake_batch_reports_sum"]


def test_reports_of_one_fault_sent_together_open_one_job_in_shared_batches(live, db):
    client, tokens = live
    ref, lat, lon = lamp_column(db)
    n = 16
    batches, reports = _batches()
    answers = _post_together(client, [{**report(lat, lon), "lat": lat} for _ in range(n)], tokens["field_worker"])  # on it
    assert [a.status_code for a in answers] == [201] * n, [a.text for a in answers if a.status_code != 201]
    jobs = {a.json()["job"]["reference"] for a in answers}
    assert len(jobs) == 1
    assert sorted(a.json()["job"]["demand_count"] for a in answers) == list(range(1, n + 1))
    assert sum(not a.json()["job"]["attached"] for a in answers) == 1
    job = jobs.pop()
    row = db.execute(text("""
        SELECT j.demand_count, a.external_ref,
               (SELECT count(*) FROM reports r WHERE r.job_id = j.id),
               (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.type = 'report_received'),
               (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.type = 'report_attached'),
               (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.type = 'job_opened'),
               (SELECT count(*) FROM outbox_messages o WHERE o.idempotency_key = 'dispatch:' || j.reference)
          FROM jobs j JOIN assets a ON a.id = j.asset_id WHERE j.reference = :r"""), {"r": job}).one()
    assert tuple(row) == (n, ref, n, n, n - 1, 1, 1)
    sent, taken = _batches()
    assert taken - reports == n  # every one went by the batched path…
    assert sent - batches < n  # …and some of them shared a statement


def test_reports_of_different_faults_sent_together_each_open_their_own_job(live, db):
    client, tokens = live
    columns = [lamp_column(db) for _ in range(8)]
    bodies = [{**report(lat, lon), "lat": lat} for _, lat, lon in columns]  # on each column
    answers = _post_together(client, bodies, tokens["advisor"])
    assert [a.status_code for a in answers] == [201] * len(bodies)
    assert [a.json()["job"]["asset"]["ref"] for a in answers] == [ref for ref, _, _ in columns]
    assert len({a.json()["job"]["reference"] for a in answers}) == len(bodies)
    assert {a.json()["channel"] for a in answers} == {"contact_centre"}
    stored = db.execute(text("SELECT client_id::text, response FROM reports WHERE client_id = ANY(CAST(:c AS uuid[]))"),
                        {"c": [b["client_id"] for b in bodies]}).all()
    by_client = {c: r for c, r in stored}
    for body, answer in zip(bodies, answers):  # what a retry will be answered is what was answered
        assert {k: v for k, v in answer.json()["job"].items() if k != "due_in_words"} == \
            by_client[body["client_id"]]["job"]


def _declined() -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in INTAKE_DECLINED.collect()[0].samples if s.name.endswith("_total")}


def test_what_the_batch_declines_the_two_statement_path_answers(live, db, engine):
    """A retry, a token that expires within the minute, a point outside the area, a fix with no lamp column
    within the radius: each declined with its reason, before anything is written, then answered as always."""
    from server.auth.tokens import create_token
    from server.db import new_session

    client, tokens = live
    _, lat, lon = lamp_column(db)
    before = _declined()
    first = report(lat, lon)
    assert client.post("/api/v1/reports", json=first, headers=auth(tokens["field_worker"])).status_code == 201
    again = client.post("/api/v1/reports", json=first, headers=auth(tokens["field_worker"]))
    assert again.status_code == 200 and again.json()["reference"]

    with new_session() as s:
        soon = create_token(s, "field_worker", name="batch-expiring",
                            expires_at=datetime.now(timezone.utc) + timedelta(seconds=30))[1]
        s.commit()
    late = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(soon))
    assert late.status_code == 201 and late.json()["job"]["attached"] is True

    out = client.post("/api/v1/reports", json=report(51.4545, -2.5879), headers=auth(tokens["field_worker"]))
    assert out.status_code == 422 and out.json()["type"].endswith("/out-of-area")

    far = db.execute(text("""
        SELECT ST_Y(ST_Transform(p.g, 4326)), ST_X(ST_Transform(p.g, 4326))
          FROM (SELECT ST_Translate(a.geom, 0, 400) AS g FROM assets a JOIN asset_layers l ON l.id = a.layer_id
                 WHERE l.name = 'street_lights' AND a.external_ref NOT LIKE 'BL-%' ORDER BY a.id LIMIT 400) p
         WHERE EXISTS (SELECT 1 FROM area_parts b WHERE b.kind = 'boundary' AND ST_Covers(b.geom, p.g))
           AND NOT EXISTS (SELECT 1 FROM assets a JOIN asset_layers l ON l.id = a.layer_id
                            WHERE l.name = 'street_lights' AND ST_DWithin(a.geom, p.g, 60))
         LIMIT 1""")).one()
    triaged = client.post("/api/v1/reports", json=report(*far), headers=auth(tokens["field_worker"]))
    assert triaged.status_code == 201 and triaged.json()["job"]["status"] == "triage"

    after = _declined()
    assert {k: after.get(k, 0) - before.get(k, 0) for k in ("retry", "caller", "out-of-area", "snap")} == \
        {"retry": 1, "caller": 1, "out-of-area": 1, "snap": 1}
    assert db.execute(text("SELECT count(*) FROM reports WHERE client_id = :c"),
                      {"c": first["client_id"]}).scalar_one() == 1


def test_a_batch_that_fails_whole_is_answered_report_by_report(live, db, engine):
    """A batch statement that fails (here: the database refuses it) writes nothing; each of its reports is then
    taken on its own by the two-statement path, and stored once."""
    from server.migrations.earlier import migration

    client, tokens = live
    _, lat, lon = lamp_column(db)
    with engine.begin() as c:
        c.execute(text("CREATE OR REPLACE FUNCTION kerbside_intake_batch(items jsonb) RETURNS text LANGUAGE plpgsql "
                       "AS $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$"))
    try:
        before = _declined().get("batch", 0)
        body = report(lat, lon)
        r = client.post("/api/v1/reports", json=body, headers=auth(tokens["field_worker"]))
        assert r.status_code == 201, r.text
        assert _declined().get("batch", 0) == before + 1
    finally:
        with engine.begin() as c:
            c.execute(text(migration("0024_intake_new_jobs_together.py").BATCH.replace(":", r"\:")))
    assert db.execute(text("SELECT count(*) FROM reports WHERE client_id = :c"),
                      {"c": body["client_id"]}).scalar_one() == 1
    again = client.post("/api/v1/reports", json=report(lat, lon), headers=auth(tokens["field_worker"]))
    assert again.status_code == 201 and again.json()["job"]["demand_count"] == 2
    assert _declined().get("batch", 0) == before + 1  # the batch is back


def test_a_report_alone_is_not_held_back(live, db):
    """No timer: a report with nothing else waiting goes at once, as a batch of one."""
    client, tokens = live
    _, lat, lon = lamp_column(db)
    batches, reports = _batches()
    r = client.post("/api/v1/reports", json={**report(lat, lon), "client_id": str(uuid.uuid4())},
                    headers=auth(tokens["field_worker"]))
    assert r.status_code == 201
    assert _batches() == (batches + 1, reports + 1)


def test_one_report_sent_twice_at_once_is_stored_once_and_both_get_its_answer(live, db):
    """A device retrying while its first send is still in flight: the two may share a batch. One is stored; the
    other loses the race for the client_id and is answered as a retry."""
    client, tokens = live
    _, lat, lon = lamp_column(db)
    body = report(lat, lon)
    for _ in range(3):
        answers = _post_together(client, [body] * 4, tokens["field_worker"])
        assert sorted(a.status_code for a in answers) in ([200, 200, 200, 201], [200, 200, 200, 200])
        assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert db.execute(text("SELECT count(*) FROM reports WHERE client_id = :c"),
                      {"c": body["client_id"]}).scalar_one() == 1


def test_each_api_process_has_one_batch_in_flight_by_default(live, monkeypatch):
    """KERBSIDE_INTAKE_BATCH_SENDERS (1 by default, at most the pool's size): reports arriving while a batch is
    in the database wait for the next, so batches grow with the load."""
    from server.config import Settings

    client, _ = live
    assert len(client.app.state.intake_batcher._senders) == 1
    monkeypatch.setenv("KERBSIDE_INTAKE_BATCH_SENDERS", "3")
    assert Settings(_env_file=None).intake_batch_senders == 3
    monkeypatch.setenv("KERBSIDE_INTAKE_BATCH_SENDERS", "0")
    with pytest.raises(ValueError):
        Settings(_env_file=None)


def test_a_batch_the_database_holds_answers_503s_and_stores_what_it_took_once(live, db):
    """A batch held in the database (here: by another session holding its duplicate check's lock) holds the one
    sender. The report queued behind it gets PoolTimeout (the API's 503) after the pool's timeout, as a request
    waiting for a connection does, and is never sent. The held report gets its 503 after that timeout once more
    (not acknowledged: the device sends it again); its batch commits when the lock goes, once."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import psycopg
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    from server.auth.tokens import hash_token
    from server.config import get_settings
    from server.deps import Caller
    from server.reports import service
    from server.reports.batch import IntakeBatcher
    from server.reports.router import REPORTERS, channel_for
    from server.reports.schemas import ReportIn

    _, tokens = live
    caller = Caller(hash_token(tokens["field_worker"]), REPORTERS)
    held, queued = [{**report(lat, lon), "lat": lat} for _, lat, lon in (lamp_column(db), lamp_column(db))]
    asset = db.execute(text("SELECT a.id FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                            "WHERE l.name = 'street_lights' ORDER BY a.geom <-> ST_Transform(ST_SetSRID("
                            "ST_MakePoint(:lon, :lat), 4326), 27700) LIMIT 1"), held).scalar_one()
    url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def stored(body: dict) -> int:
        return db.execute(text("SELECT count(*) FROM reports WHERE client_id = :c"),
                          {"c": body["client_id"]}).scalar_one()

    async def outcome(task) -> object:
        try:
            return await task
        except PoolTimeout as exc:
            return exc

    async def scenario() -> tuple[object, object, float, float]:
        async def autocommit(conn):
            await conn.set_autocommit(True)

        pool = AsyncConnectionPool(url, min_size=1, max_size=1, open=False, configure=autocommit)
        await pool.open(wait=True)
        batcher = IntakeBatcher(pool, 1, 0.6)
        loop = asyncio.get_running_loop()
        try:
            with psycopg.connect(url, autocommit=True) as blocker:
                blocker.execute("SELECT pg_advisory_lock(%s)", (service._lock_key("street_light", asset),))
                t0 = loop.time()
                first = asyncio.create_task(outcome(batcher.submit(
                    service._batch_item(caller, ReportIn.model_validate(held), channel_for))))
                await asyncio.sleep(0.2)
                second = await outcome(batcher.submit(
                    service._batch_item(caller, ReportIn.model_validate(queued), channel_for)))
                second_at = loop.time() - t0
                first_answer = await first
                first_at = loop.time() - t0
                blocker.execute("SELECT pg_advisory_unlock_all()")
            for _ in range(100):  # the held batch now commits
                if stored(held):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the sender is free: the refused report must not go now
            return first_answer, second, first_at, second_at
        finally:
            await batcher.close()
            await pool.close()

    with ThreadPoolExecutor(1) as thread:  # a loop of its own, whatever the test process runs in this thread
        first, second, first_at, second_at = thread.submit(asyncio.run, scenario()).result()
    assert isinstance(second, PoolTimeout) and isinstance(first, PoolTimeout)
    assert second_at < first_at  # the queued one was refused first, the held one after its second wait
    assert stored(held) == 1 and stored(queued) == 0


def test_under_load_a_sender_waits_once_for_the_reports_on_their_way(live, db):
    """KERBSIDE_INTAKE_BATCH_LINGER_MS: after a batch of eight (load), a sender that finds one report waiting waits
    once, and a report arriving meanwhile goes in the same statement. After a batch of two (no load), or with the
    wait set to 0, the same two reports go as two statements."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from psycopg_pool import AsyncConnectionPool

    from server.auth.tokens import hash_token
    from server.config import Settings, get_settings
    from server.deps import Caller
    from server.reports import service
    from server.reports.batch import IntakeBatcher
    from server.reports.router import REPORTERS, channel_for
    from server.reports.schemas import ReportIn

    _, tokens = live
    caller = Caller(hash_token(tokens["field_worker"]), REPORTERS)
    items = [service._batch_item(caller, ReportIn.model_validate({**report(lat, lon), "lat": lat}), channel_for)
             for _, lat, lon in (lamp_column(db) for _ in range(24))]
    url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    async def pair(batcher: IntakeBatcher, first: str, second: str) -> list[dict]:
        """`first` now and `second` 5 ms later, as a device's report on its way."""
        loop = asyncio.get_running_loop()
        later: list = []
        loop.call_later(0.005, lambda: later.append(asyncio.ensure_future(batcher.submit(second))))
        one = await batcher.submit(first)
        while not later:
            await asyncio.sleep(0.001)
        return [one, await later[0]]

    async def scenario(linger: float, items: list[str]) -> list[tuple[float, float]]:
        async def autocommit(conn):
            await conn.set_autocommit(True)

        pool = AsyncConnectionPool(url, min_size=1, max_size=1, open=False, configure=autocommit)
        await pool.open(wait=True)
        batcher = IntakeBatcher(pool, 1, 5.0, linger)
        seen = [_batches()]
        try:
            out = await asyncio.gather(*(batcher.submit(it) for it in items[:8]))  # load: one batch of eight
            seen.append(_batches())
            out += await pair(batcher, items[8], items[9])
            seen.append(_batches())
            out += await pair(batcher, items[10], items[11])
            seen.append(_batches())
        finally:
            await batcher.close()
            await pool.close()
        assert all("written" in o for o in out), out
        return [(b - a, r - q) for (a, q), (b, r) in zip(seen, seen[1:])]

    with ThreadPoolExecutor(1) as thread:
        waiting = thread.submit(asyncio.run, scenario(0.05, items[:12])).result()
        never = thread.submit(asyncio.run, scenario(0.0, items[12:])).result()
    # (statements, reports): eight together; then, waiting, two in one; then, the load gone, two in two
    assert waiting == [(1, 8), (1, 2), (2, 2)]
    assert never[1] == (2, 2)  # not waiting: the report on its way goes in a statement of its own
    assert Settings(_env_file=None).intake_batch_linger_ms == 1.0
