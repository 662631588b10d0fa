"""What-if: the intake's database work behind the bare baseline's app, to size how far app-side work can go.

Not a product path. The bare baseline's stack (FastAPI endpoint, pydantic body, psycopg 3 async pool in
autocommit, prepared statements, orjson), sending the statements the intake sends, with the same texts taken
from server/reports/service.py: where the point is (boundary, ward, street, five candidates, the retry lookup
and the token lookup riding on it), then `kerbside_intake` (lock, duplicate, job, report, timeline, dispatch),
then the wake-ups. Everything the intake does in Python is reduced to the least that gives the database the
same rows to write: the body is not validated beyond the bare baseline's three fields, the token is not judged
(only looked up), the nearest candidate is taken, and the deadline is the category's, worked out once a minute.

Its throughput is the ceiling of the intake with its database design unchanged: the intake cannot pass it by
taking work out of the app, so `floor / bare` says whether goal 1 is within reach of app-side work at all.

    uvicorn bench.floor_app:create_app --factory      (KERBSIDE_DATABASE_URL names the database)
"""
from __future__ import annotations

import hashlib
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict

from bench.bare_app import _conninfo


class PointIn(BaseModel):
    """The bare baseline's body (the rest of the report is ignored, as there)."""

    model_config = ConfigDict(extra="ignore")
    client_id: uuid.UUID
    lat: float
    lon: float


def create_app(category_code: str = "street_light", pool_size: int | None = None) -> FastAPI:
    """The floor app: POST /bench/reports (a bearer token as the API takes it), GET /healthz. Its pool is the
    API's size (`KERBSIDE_DB_ASYNC_POOL_SIZE`): in an A/B it served more, with a lower p99, than with the bare
    baseline's 10 (which serves the bare baseline best)."""
    from server import events
    from server.catalogue.answers import priority_for
    from server.catalogue.service import known_category
    from server.config import get_settings
    from server.jobs import sla
    from server.jobs.transitions import risk_at_for
    from server.outbox.service import CHANNEL as OUTBOX_CHANNEL
    from server.reports import service

    settings = get_settings()
    pool_size = pool_size or settings.db_async_pool_size
    category = known_category(category_code)
    priority = priority_for(category, {"fault": "out"})  # what bench/post_reports.lua answers
    policy = category.sla_for(priority)
    locate, write, notify = service._LOCATE_REPLAY_CALLER.text, service._WRITE.text, service._NOTIFY
    state: dict = {"due": (None, None)}

    def due(now: datetime) -> datetime:
        minute, at = state["due"]
        if minute != now.replace(second=0, microsecond=0):
            minute = now.replace(second=0, microsecond=0)
            at = sla.due_at(policy, now, tz=settings.timezone, country=settings.holiday_country,
                            subdiv=settings.holiday_subdivision)
            state["due"] = (minute, at)
        return at

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = AsyncConnectionPool(_conninfo(), min_size=pool_size, max_size=pool_size, open=False,
                                   kwargs={"prepare_threshold": 0, "autocommit": True})
        await pool.open(wait=True)
        state["pool"] = pool
        yield
        await pool.close()

    app = FastAPI(title="Kerbside intake floor (what-if)", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/bench/reports", status_code=201)
    async def report(body: PointIn, request: Request) -> Response:
        token = request.headers.get("authorization", "")[7:]
        now = datetime.now(timezone.utc)
        params = {"lon": body.lon, "lat": body.lat, "srid": settings.srid, "layer": category.layer,
                  "client_id": body.client_id, "token_hash": hashlib.sha256(token.encode()).hexdigest()}
        async with state["pool"].connection() as conn:
            async with conn.cursor(row_factory=namedtuple_row) as cur:
                await cur.execute(locate, params, prepare=True)
                row = await cur.fetchone()
            caller = row.caller  # looked up, not judged: {"id", "name", "role", ...} or None
            actor = f"{caller['role']}:{caller['name']}" if caller else "bench"
            asset_id, ref, dist, _ = row.candidates[0]
            d = due(now)
            p = {
                "lock": service._lock_key(category.code, asset_id), "category": category.code, "asset_id": asset_id,
                "dup_radius_m": category.duplicate_radius_m,
                "dup_since": now - timedelta(hours=category.duplicate_window_hours), "geom": row.ewkt, "now": now,
                "actor": actor, "actor_role": "field_worker",
                "event_channel": events.CHANNEL, "outbox_channel": OUTBOX_CHANNEL, "defer_notify": True,
                "defer_follow_up": True, "dispatch": {"destination": "dispatch", "topic": "job.opened"},
                "job": {"asset_id": asset_id, "ward_id": row.ward_id, "street": row.street, "priority": priority,
                        "status": "new", "triage_reason": None, "sla_policy": policy, "due_at": d,
                        "risk_at": risk_at_for(now, d), "description": ""},
                "received_data": {"channel": "app", "client_id": str(body.client_id)},
                "opening_events": [
                    {"type": events.JOB_OPENED, "actor": actor, "actor_role": "field_worker",
                     "after": {"status": "new", "priority": priority}, "data": {"category": category.code},
                     "with_geom": True, "notify": False},
                    {"type": events.SNAPPED, "actor": "system:snapping", "actor_role": "system", "notify": False,
                     "data": {"asset": ref, "distance_m": round(dist, 1), "confidence": 0.9, "reason": "nearest"}},
                    {"type": events.SLA_SET, "actor": "system:sla", "actor_role": "system",
                     "after": {"due_at": d.isoformat()}, "data": {"policy": policy, "priority": priority},
                     "notify": True}],
                "answer": {"client_id": str(body.client_id), "received_at": now.isoformat(), "channel": "app",
                           "job": {"category": category.code,
                                   "asset": {"layer": category.layer, "ref": ref, "distance_m": round(dist, 1)}},
                           "snap": {"confidence": 0.9, "reason": "nearest", "runner_up": None}, "warnings": []},
                "report": {"client_id": str(body.client_id), "payload_hash": params["token_hash"], "channel": "app",
                           "lat": body.lat, "lon": body.lon, "accuracy_m": 5, "observed_at": now,
                           "mock_location": False,
                           "description": "", "answers": {"fault": "out"}, "asset_id": asset_id,
                           "snap_distance_m": dist, "snap_confidence": 0.9, "ward_id": row.ward_id,
                           "street": row.street, "token_id": caller["id"] if caller else None, "reporter": {}},
                "contact": None,
            }
            cur = await conn.execute(write, {"p": orjson.dumps(p).decode()}, prepare=True)
            written = orjson.loads((await cur.fetchone())[0])
            if written.get("notify"):
                await conn.execute(notify, {"notes": orjson.dumps(written["notify"]).decode()}, prepare=True)
        return Response(orjson.dumps(written["answer"]), status_code=201, media_type="application/json")

    return app
