"""The intake baseline: a bare FastAPI app on Kerbside's stack doing one KNN snap + one INSERT per request.

Same engine and session factory as the API (server.db: SQLAlchemy 2, psycopg 3, same pool settings), a
sync endpoint (run in the threadpool like the intake router), the same assets table and layer. No auth,
no validation beyond parsing, no duplicate check, no job: the floor the intake is measured against.

    uvicorn bench.baseline_app:create_app --factory
"""
from __future__ import annotations

import gc
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.engine import Connection

from server.config import get_settings
from server.db import get_engine, new_session

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_baseline_reports (
  id bigserial PRIMARY KEY,
  client_id uuid NOT NULL UNIQUE,
  asset_id bigint,
  distance_m double precision,
  geom geometry(Point, {srid}) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)"""

_SNAP = text(
    """SELECT a.id, a.external_ref, ST_Distance(a.geom, p.g) AS d
         FROM assets a, (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid) AS g) p
        WHERE a.layer_id = :layer ORDER BY a.geom <-> p.g LIMIT 1"""
)
_INSERT = text(
    """INSERT INTO bench_baseline_reports (client_id, asset_id, distance_m, geom)
       VALUES (:client_id, :asset_id, :d, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid))
       RETURNING id"""
)


class PointIn(BaseModel):
    """The part of a report the baseline needs (the rest of the intake body is ignored)."""

    model_config = ConfigDict(extra="ignore")
    client_id: uuid.UUID
    lat: float
    lon: float


def prepare(conn: Connection) -> None:
    """Create the baseline's table (called once by the benchmark driver, before the server starts)."""
    conn.execute(text(TABLE_DDL.format(srid=int(get_settings().srid))))


def create_app(layer: str = "street_lights") -> FastAPI:
    """The baseline app: POST /bench/reports, GET /healthz."""
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        with get_engine().connect() as conn:
            state["layer"] = conn.execute(text("SELECT id FROM asset_layers WHERE name = :n"),
                                          {"n": layer}).scalar_one()
        state["srid"] = get_settings().srid
        gc.collect()  # the same process tuning as the API's lifespan (server/main.py), for a like-for-like floor
        gc.freeze()
        yield

    app = FastAPI(title="Kerbside intake baseline", lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.post("/bench/reports", status_code=201)
    def report(body: PointIn):
        params = {"lon": body.lon, "lat": body.lat, "srid": state["srid"]}
        with new_session() as session:
            snap = session.execute(_SNAP, {**params, "layer": state["layer"]}).one()
            rid = session.execute(_INSERT, {**params, "client_id": body.client_id, "asset_id": snap.id,
                                            "d": snap.d}).scalar_one()
            session.commit()
        return JSONResponse({"id": rid, "asset": snap.external_ref, "distance_m": round(float(snap.d), 1)},
                            status_code=201)

    return app
