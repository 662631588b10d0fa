"""What-if: the intake's database work behind the bare baseline's app, to size how far app-side work can go.

Not a product path. Two apps on the bare baseline's stack (FastAPI endpoint, pydantic body, psycopg 3 async
pool in autocommit, prepared statements, orjson), each giving the database the intake's work for a report:

- `create_app`, the **floor**: the statements the intake sends, with the same texts taken from
  server/reports/service.py: where the point is (boundary, ward, street, five candidates, with the retry
  lookup and the token lookup riding on it), then `kerbside_intake` (lock, duplicate, job, report, timeline,
  dispatch), then the wake-ups. Everything the intake does in Python is cut to the least that gives the
  database the same rows to write: the body is not validated beyond the bare baseline's three fields, the
  token is looked up but not judged, the nearest candidate is taken, and the deadline is worked out once a
  minute. Its throughput is the most any app-side change could give the intake with its statements as they are.
- `create_app_one`, the **one-statement floor**: the same work as one statement, `kerbside_bench_one` (created
  by `prepare` in the bench database only), which calls `kerbside_locate`, fills in the snapped asset, ward and
  street, and calls `kerbside_intake` with its NOTIFYs inside. It sizes the redesign that would make a report
  one statement (the snap choice and the SLA deadline in SQL): the most that redesign could give.
- `create_app_batched`, the **batched floor**: the API's own batch statement, `kerbside_intake_batch` (migrations
  0022 and 0024: each report located, its caller judged and snapped, the new faults written together, the rest
  one at a time, one commit for them all), then the batch's NOTIFYs, both as server/reports/batch.py sends them,
  with group commit as the API batches: each report is queued in the process; a sender (as many as the API has,
  KERBSIDE_INTAKE_BATCH_SENDERS) takes whatever reports are waiting when it comes free (no timer: a report alone
  goes at once). The item is the one the API builds, less what the app works out per report beyond the floor's
  parameter (the body validated in full, the answers, the warnings): the database does the intake's work.

    uvicorn bench.floor_app:create_app --factory        (KERBSIDE_DATABASE_URL names the database)
    uvicorn bench.floor_app:create_app_one --factory
    uvicorn bench.floor_app:create_app_batched --factory
"""
from __future__ import annotations

import asyncio
import hashlib
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text

from bench.bare_app import PointIn, _conninfo  # the bare baseline's body: the rest of a report is ignored

# The one-statement floor's function (bench database only). c is the nearest candidate: [id, ref, distance, name].
ONE_SQL = """
CREATE OR REPLACE FUNCTION kerbside_bench_one(p jsonb, p_lon float8, p_lat float8, p_srid integer, p_layer text,
                                              p_client uuid, p_token text) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  l record;
  replay json;
  caller json;
  c json;
  aid bigint;
  d numeric;
BEGIN
  SELECT * INTO l FROM kerbside_locate(p_lon, p_lat, p_srid, p_layer);
  replay := kerbside_replay(p_client);
  caller := (SELECT json_build_object('id', t.id, 'name', t.name, 'role', t.role, 'contractor_id', t.contractor_id,
                                      'crew_id', t.crew_id, 'token_hash', t.token_hash, 'revoked_at', t.revoked_at,
                                      'expires_at', t.expires_at)
               FROM api_tokens t WHERE t.token_hash = p_token);
  c := l.candidates->0;
  aid := (c->>0)::bigint;
  d := round((c->>2)::numeric, 1);
  RETURN kerbside_intake(p || jsonb_build_object(
    'asset_id', aid, 'geom', l.ewkt, 'lock', hashtext(p->>'category' || ':' || aid)::bigint,
    'actor', (caller->>'role') || ':' || (caller->>'name'),
    'job', (p->'job') || jsonb_build_object('asset_id', aid, 'ward_id', l.ward_id, 'street', l.street),
    'opening_events', jsonb_set(p->'opening_events', '{1,data}', (p->'opening_events'->1->'data')
                                || jsonb_build_object('asset', c->>1, 'distance_m', d)),
    'answer', jsonb_set(p->'answer', '{job,asset}', jsonb_build_object('layer', p_layer, 'ref', c->>1,
                                                                       'distance_m', d)),
    'report', (p->'report') || jsonb_build_object('asset_id', aid, 'snap_distance_m', (c->>2)::float8,
                                                  'ward_id', l.ward_id, 'street', l.street,
                                                  'token_id', (caller->>'id')::int)))::text;
END
$fn$"""

ONE = ("SELECT kerbside_bench_one(%(p)s::jsonb, %(lon)s, %(lat)s, %(srid)s, %(layer)s, %(client_id)s, "
       "%(token_hash)s)")


def prepare(conn) -> None:
    """The one-statement floor's function, in the bench database (a SQLAlchemy connection, in a transaction)."""
    conn.execute(text(ONE_SQL.replace(":", r"\:")))


def _app(mode: str, category_code: str, pool_size: int | None) -> FastAPI:
    from server import events
    from server.catalogue.answers import priority_for
    from server.catalogue.service import known_category
    from server.config import get_settings
    from server.jobs import sla
    from server.jobs.transitions import risk_at_for
    from server.outbox.service import CHANNEL as OUTBOX_CHANNEL
    from server.reports import batch as intake_batch
    from server.reports import service

    one = mode != "three"
    settings = get_settings()
    pool_size = pool_size or settings.db_async_pool_size
    category = known_category(category_code)
    priority = priority_for(category, {"fault": "out"})  # what bench/post_reports.lua answers
    policy = category.sla_for(priority)
    state: dict = {"due": (None, None)}

    def due(now: datetime) -> datetime:
        minute, at = state["due"]
        if minute != now.replace(second=0, microsecond=0):
            minute = now.replace(second=0, microsecond=0)
            at = sla.due_at(policy, now, tz=settings.timezone, country=settings.holiday_country,
                            subdiv=settings.holiday_subdivision)
            state["due"] = (minute, at)
        return at

    def params(body: PointIn, now: datetime, digest: str) -> dict:
        """kerbside_intake's parameter, less the snapped asset, the place and the caller."""
        d = due(now)
        return {
            "category": category.code, "dup_radius_m": category.duplicate_radius_m,
            "dup_since": now - timedelta(hours=category.duplicate_window_hours), "now": now,
            "actor_role": "field_worker", "event_channel": events.CHANNEL, "outbox_channel": OUTBOX_CHANNEL,
            "defer_notify": not one, "defer_follow_up": True,
            "dispatch": {"destination": "dispatch", "topic": "job.opened"},
            "job": {"priority": priority, "status": "new", "triage_reason": None, "sla_policy": policy, "due_at": d,
                    "risk_at": risk_at_for(now, d), "description": ""},
            "received_data": {"channel": "app", "client_id": str(body.client_id)},
            "opening_events": [
                {"type": events.JOB_OPENED, "actor": "-", "actor_role": "field_worker",
                 "after": {"status": "new", "priority": priority}, "data": {"category": category.code},
                 "with_geom": True, "notify": False},
                {"type": events.SNAPPED, "actor": "system:snapping", "actor_role": "system", "notify": False,
                 "data": {"confidence": 0.9, "reason": "nearest"}},
                {"type": events.SLA_SET, "actor": "system:sla", "actor_role": "system",
                 "after": {"due_at": d.isoformat()}, "data": {"policy": policy, "priority": priority},
                 "notify": True}],
            "answer": {"client_id": str(body.client_id), "received_at": now.isoformat(), "channel": "app",
                       "job": {"category": category.code, "asset": None},
                       "snap": {"confidence": 0.9, "reason": "nearest", "runner_up": None}, "warnings": []},
            "report": {"client_id": str(body.client_id), "payload_hash": digest, "channel": "app", "lat": body.lat,
                       "lon": body.lon, "accuracy_m": 5, "observed_at": now, "mock_location": False,
                       "description": "", "answers": {"fault": "out"}, "snap_confidence": 0.9, "reporter": {}},
            "contact": None,
        }

    def fill(p: dict, row) -> dict:
        """The floor's Python side of what kerbside_bench_one does in SQL: the nearest candidate and the place."""
        asset_id, ref, dist, _ = row.candidates[0]
        caller = row.caller  # looked up, not judged
        actor = f"{caller['role']}:{caller['name']}" if caller else "-"
        p.update(asset_id=asset_id, geom=row.ewkt, lock=service._lock_key(category.code, asset_id), actor=actor)
        p["job"].update(asset_id=asset_id, ward_id=row.ward_id, street=row.street)
        p["opening_events"][0]["actor"] = actor
        p["opening_events"][1]["data"].update(asset=ref, distance_m=round(dist, 1))
        p["answer"]["job"]["asset"] = {"layer": category.layer, "ref": ref, "distance_m": round(dist, 1)}
        p["report"].update(asset_id=asset_id, snap_distance_m=dist, ward_id=row.ward_id, street=row.street,
                           token_id=caller["id"] if caller else None)
        return p

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = AsyncConnectionPool(_conninfo(), min_size=pool_size, max_size=pool_size, open=False,
                                   kwargs={"prepare_threshold": 0, "autocommit": True})
        await pool.open(wait=True)
        state["pool"] = pool
        n = min(settings.intake_batch_senders, pool_size) if mode == "batched" else 0  # as the API batches
        senders = [asyncio.create_task(send_batches(pool)) for _ in range(n)]
        yield
        for task in senders:
            task.cancel()
        await pool.close()

    waiting: asyncio.Queue = asyncio.Queue()  # (one report's arguments as JSON, the future its answer goes to)

    async def send_batches(pool) -> None:
        """One connection's sender: whatever reports are waiting, as one statement and one commit; under load it
        waits once for the reports on their way, as the API's sender does (server/reports/batch.py)."""
        def drain(batch: list) -> None:
            while len(batch) < intake_batch.BATCH_MAX and not waiting.empty():
                batch.append(waiting.get_nowait())

        linger, last = settings.intake_batch_linger_ms / 1000, 0
        while True:
            batch = [await waiting.get()]
            drain(batch)
            if linger and last >= intake_batch.LINGER_AFTER and len(batch) < last // 2:
                await asyncio.sleep(linger)
                drain(batch)
            last = len(batch)
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(intake_batch.STATEMENT,
                                             {"items": "[" + ",".join(item for item, _ in batch) + "]"}, prepare=True)
                    outcomes = orjson.loads((await cur.fetchone())[0])
                    notes = [n for o in outcomes for n in (o.get("written") or {}).get("notify") or []]
                    if notes:
                        await conn.execute(intake_batch.NOTIFY, {"notes": orjson.dumps(notes).decode()},
                                           prepare=True)
            except Exception as exc:  # the statement failed as a whole: every report in it fails
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (item, future), outcome in zip(batch, outcomes):
                if outcome.get("declined") == "40P01":  # a deadlock with another batch: sent again
                    waiting.put_nowait((item, future))
                elif "written" in outcome:
                    future.set_result(outcome["written"])
                else:  # nothing the floor's reports should meet: the bench refuses a run with a 500
                    future.set_exception(RuntimeError(f"the batch declined a floor report: {outcome}"))

    def arguments(p: dict, body: PointIn, digest: str) -> dict:
        return {"lon": body.lon, "lat": body.lat, "srid": settings.srid, "layer": category.layer,
                "client_id": body.client_id, "token_hash": digest, "p": p}

    def item(p: dict, body: PointIn, digest: str) -> dict:
        """kerbside_intake_ready's item, as service._batch_item builds it (the caller's role is the bench
        token's), with the members it fills in as the API leaves them."""
        p["answer"]["job"]["asset"] = {"ref": "", "name": None, "layer": category.layer, "distance_m": 0.0}
        p["opening_events"][1]["data"].update(hint=None, asset="", runner_up=None, distance_m=0.0)
        p["report"].update(asset_id=0, snap_distance_m=0.0, runner_up_asset_id=None, runner_up_distance_m=None)
        p["job"].update(asset_id=0, ward_id=None, street=None)
        p.update(asset_id=0, geom=None, lock=0, actor="")
        return {**arguments(p, body, digest), "roles": ["field_worker"],
                "channels": {"field_worker": "field_app", "admin": "field_app"},
                "radius_m": category.snap_radius_m, "accuracy_m": 5.0}

    app = FastAPI(title="Kerbside intake floor (what-if)", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/bench/reports", status_code=201)
    async def report(body: PointIn, request: Request) -> Response:
        digest = hashlib.sha256(request.headers.get("authorization", "")[7:].encode()).hexdigest()
        now = datetime.now(timezone.utc)
        p = params(body, now, digest)
        if mode == "batched":
            future = asyncio.get_running_loop().create_future()
            waiting.put_nowait((orjson.dumps(item(p, body, digest)).decode(), future))
            written = await future
            return Response(orjson.dumps(written["answer"]), status_code=201, media_type="application/json")
        async with state["pool"].connection() as conn:
            if one:
                cur = await conn.execute(ONE, {**arguments(p, body, digest), "p": orjson.dumps(p).decode()},
                                         prepare=True)
                written = orjson.loads((await cur.fetchone())[0])
            else:
                async with conn.cursor(row_factory=namedtuple_row) as cur:
                    await cur.execute(service._LOCATE_REPLAY_CALLER.text,
                                      {"lon": body.lon, "lat": body.lat, "srid": settings.srid,
                                       "layer": category.layer, "client_id": body.client_id, "token_hash": digest},
                                      prepare=True)
                    row = await cur.fetchone()
                cur = await conn.execute(service._WRITE.text, {"p": orjson.dumps(fill(p, row)).decode()},
                                         prepare=True)
                written = orjson.loads((await cur.fetchone())[0])
                if written.get("notify"):
                    await conn.execute(service._NOTIFY, {"notes": orjson.dumps(written["notify"]).decode()},
                                       prepare=True)
        return Response(orjson.dumps(written["answer"]), status_code=201, media_type="application/json")

    return app


def create_app(category_code: str = "street_light", pool_size: int | None = None) -> FastAPI:
    """The floor: the intake's three statements. Its pool is the API's size (`KERBSIDE_DB_ASYNC_POOL_SIZE`): in
    an A/B it served more, with a lower p99, than with the bare baseline's 10 (which serves that one best)."""
    return _app("three", category_code, pool_size)


def create_app_one(category_code: str = "street_light", pool_size: int | None = None) -> FastAPI:
    """The one-statement floor: the same work as `kerbside_bench_one`."""
    return _app("one", category_code, pool_size)


def create_app_batched(category_code: str = "street_light", pool_size: int | None = None) -> FastAPI:
    """The batched floor: the API's batch statement, `kerbside_intake_batch`, and its NOTIFYs, for the reports
    waiting together (group commit)."""
    return _app("batched", category_code, pool_size)
