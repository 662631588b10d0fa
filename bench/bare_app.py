"""The honest intake baseline: bare FastAPI + a psycopg 3 async pool, no ORM, one KNN snap + one INSERT.

The fastest simple endpoint on this stack that does the same database work as the floor of an intake: parse
the body (pydantic, as any FastAPI endpoint does), snap the point to the nearest lamp column (KNN on the GiST
index) and insert a row, both as server-side prepared statements (`prepare=True`) on a pooled connection in
autocommit (the snap only reads, the insert is one statement: no round trips for BEGIN and COMMIT, which made
it about 9 % faster than one transaction per report), answer 201 with orjson. No auth, no duplicate check, no
job, no timeline.

    uvicorn bench.bare_app:create_app --factory      (KERBSIDE_DATABASE_URL names the database)
"""
from __future__ import annotations

import uuid
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict

SNAP = """SELECT a.id, a.external_ref, ST_Distance(a.geom, p.g) AS d
            FROM assets a, (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), %(srid)s) AS g) p
           WHERE a.layer_id = %(layer)s ORDER BY a.geom <-> p.g LIMIT 1"""
INSERT = """INSERT INTO bench_baseline_reports (client_id, asset_id, distance_m, geom)
            VALUES (%(client_id)s, %(asset_id)s, %(d)s,
                    ST_Transform(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), %(srid)s))
            RETURNING id"""


class PointIn(BaseModel):
    """The part of a report the baseline needs (the rest of the body is ignored)."""

    model_config = ConfigDict(extra="ignore")
    client_id: uuid.UUID
    lat: float
    lon: float


def _conninfo() -> str:
    """libpq URL from the SQLAlchemy URL the rest of Kerbside reads."""
    from server.config import get_settings

    return get_settings().database_url.replace("postgresql+psycopg://", "postgresql://")


def create_app(layer: str = "street_lights", pool_size: int = 10) -> FastAPI:
    """The bare baseline app: POST /bench/reports, GET /healthz."""
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from server.config import get_settings

        pool = AsyncConnectionPool(_conninfo(), min_size=pool_size, max_size=pool_size, open=False,
                                   kwargs={"prepare_threshold": 0, "autocommit": True})  # all prepared
        await pool.open(wait=True)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM asset_layers WHERE name = %s", (layer,))
            state["layer"] = (await cur.fetchone())[0]
        state["srid"], state["pool"] = get_settings().srid, pool
        yield
        await pool.close()

    app = FastAPI(title="Kerbside bare intake baseline", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> Response:
        async with state["pool"].connection() as conn:
            await conn.execute("SELECT 1")
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/bench/reports", status_code=201)
    async def report(body: PointIn) -> Response:
        params = {"lon": body.lon, "lat": body.lat, "srid": state["srid"], "layer": state["layer"]}
        async with state["pool"].connection() as conn:  # autocommit: each statement its own transaction
            cur = await conn.execute(SNAP, params, prepare=True)
            asset_id, ref, d = await cur.fetchone()
            cur = await conn.execute(INSERT, {**params, "client_id": body.client_id, "asset_id": asset_id, "d": d},
                                     prepare=True)
            rid = (await cur.fetchone())[0]
        return Response(orjson.dumps({"id": rid, "asset": ref, "distance_m": round(float(d), 1)}), status_code=201,
                        media_type="application/json")

    return app

