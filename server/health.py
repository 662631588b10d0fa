"""GET /healthz: database, PostGIS, worker heartbeat and what is loaded."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text

from server.areas.models import Area
from server.assets.models import Asset, AssetLayer
from server.config import get_settings
from server.db import new_session
from server.inbound.models import WorkerHeartbeat

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and what is loaded")
def healthz() -> JSONResponse:
    """Report database and PostGIS versions, the worker heartbeat and layer/area counts."""
    body: dict = {"status": "ok"}
    try:
        with new_session() as s:
            body["database"] = s.execute(text("SHOW server_version")).scalar_one()
            body["postgis"] = s.execute(text("SELECT postgis_lib_version()")).scalar_one()
            counts = dict(
                s.execute(
                    select(AssetLayer.name, func.count(Asset.id))
                    .outerjoin(Asset, Asset.layer_id == AssetLayer.id)
                    .group_by(AssetLayer.name)
                ).all()
            )
            body["layers"] = dict(sorted(counts.items()))
            areas = dict(s.execute(select(Area.kind, func.count()).group_by(Area.kind)).all())
            body["areas"] = {"boundary": areas.get("boundary", 0), "wards": areas.get("ward", 0),
                             **{k: v for k, v in areas.items() if k not in ("boundary", "ward")}}
            beat = s.scalar(select(func.max(WorkerHeartbeat.beat_at)))
    except Exception as exc:  # the point of a health check is to say so, not to 500
        return JSONResponse({"status": "error", "database": "unreachable", "detail": exc.__class__.__name__},
                            status_code=503, headers={"Retry-After": "5"})
    limit = 3 * get_settings().worker_heartbeat_seconds
    if beat is None:
        body["worker"] = {"status": "absent"}
    else:
        age = (datetime.now(timezone.utc) - beat).total_seconds()
        body["worker"] = {"status": "ok" if age <= limit else "stale", "last_beat": beat.isoformat(),
                          "age_s": round(age, 1)}
    if body["worker"]["status"] != "ok" or not body["layers"]:
        body["status"] = "degraded"
    return JSONResponse(body)
