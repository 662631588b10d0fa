"""A minimal Open311 GeoReport v2 back office under /open311 (JSON only).

    GET  /open311/services.json
    POST /open311/requests.json              urlencoded; deduplicated on attribute[<external_id_attribute>]
    GET  /open311/requests/{id}.json
    GET  /open311/servicerequestupdates.json?api_key=&start_date=&end_date=   (start_date inclusive)
    POST /open311/servicerequestupdates.json the council's own update (status CLOSED closes the request)

Errors are GeoReport's shape: [{"code": 400, "description": "..."}].
"""
from __future__ import annotations

import math
import time
from datetime import datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(prefix="/open311")

SERVICES = [
    {"service_code": "SL", "service_name": "Street light fault", "group": "Street lighting", "type": "realtime",
     "metadata": True, "keywords": "lamp, light", "description": "A street light is out, on by day or damaged"},
    {"service_code": "PH", "service_name": "Pothole", "group": "Roads", "type": "realtime", "metadata": True,
     "keywords": "road, hole", "description": "A pothole in the road or pavement"},
]


def _error(status: int, description: str) -> JSONResponse:
    return JSONResponse([{"code": status, "description": description}], status)


def _key_ok(request: Request, given: str | None) -> bool:
    settings = request.app.state.sim.settings
    return given == (settings.open311_api_key or settings.api_key)


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.utcoffset() is None:
        raise ValueError("time without an offset")
    return parsed


@router.get("/services.json")
async def services() -> JSONResponse:
    """The service list (any non-empty service_code is accepted anyway)."""
    return JSONResponse(SERVICES)


@router.post("/requests.json")
async def create_request(request: Request) -> JSONResponse:
    """Create a service request, or answer the existing one for a repeated external id."""
    sim = request.app.state.sim
    form = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    fields = dict(form)
    if not _key_ok(request, fields.get("api_key")):
        return _error(403, "Invalid api_key")
    if not fields.get("service_code"):
        return _error(400, "service_code is required")
    try:
        lat, lon = float(fields["lat"]), float(fields["long"])
        if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
            raise ValueError
    except (KeyError, ValueError):
        return _error(400, "lat and long are required and must be coordinates")
    external = fields.get(f"attribute[{sim.settings.external_id_attribute}]") or None
    if external:
        existing = sim.engine.find_key("open311", external)
        if existing:
            sim.counters["duplicates_suppressed"] += 1
            return JSONResponse(existing.answer)
    payload = {"form": form}
    order = sim.engine.create("open311", external, payload, external, lat, lon, time.monotonic())
    order.answer = [{"service_request_id": order.ref, "service_notice": "", "account_id": None}]
    return JSONResponse(order.answer)


@router.get("/requests/{ref}.json")
async def get_request(ref: str, request: Request) -> JSONResponse:
    """One service request."""
    order = request.app.state.sim.engine.orders.get(ref)
    if order is None or order.kind != "open311":
        return _error(404, f"no request {ref}")
    return JSONResponse([{"service_request_id": order.ref, "status": "closed" if order.finished else "open",
                          "extended_status": order.status, "lat": order.lat, "long": order.lon,
                          "requested_datetime": order.created_at.isoformat()}])


@router.get("/servicerequestupdates.json")
async def list_updates(request: Request, api_key: str | None = None, start_date: str | None = None,
                       end_date: str | None = None) -> JSONResponse:
    """Updates with start_date ≤ updated_datetime ≤ end_date."""
    sim = request.app.state.sim
    if not _key_ok(request, api_key):
        return _error(403, "Invalid api_key")
    try:
        start, end = _time(start_date), _time(end_date)
    except ValueError:
        return _error(400, "start_date and end_date must be W3C datetimes with an offset")
    items = [u for u in sim.engine.updates if u.kind == "open311"
             and (start is None or u.occurred_at >= start) and (end is None or u.occurred_at <= end)]
    return JSONResponse({"service_request_updates": sim.faults.shuffle([u.open311_json() for u in items])})


@router.post("/servicerequestupdates.json")
async def post_update(request: Request) -> JSONResponse:
    """The council's own update on a request; CLOSED closes it, OPEN is a comment (no update is fed back: it is
    theirs)."""
    sim = request.app.state.sim
    items = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    fields = dict(items)
    if not _key_ok(request, fields.get("api_key")):
        return _error(403, "Invalid api_key")
    order = sim.engine.orders.get(fields.get("service_request_id", ""))
    if order is None or order.kind != "open311":
        return _error(404, f"no request {fields.get('service_request_id')!r}")
    if not fields.get("update_id") or not fields.get("status"):
        return _error(400, "update_id and status are required")
    if fields["status"].strip().lower() == "closed" and not order.finished:
        sim.engine.cancel(order, fields.get("description") or "closed by the council", time.monotonic(), emit=False)
    elif fields["status"].strip().lower() == "open":  # a comment: kept once per update_id, the status unchanged
        order.comments.setdefault(fields["update_id"], {
            "update_id": fields["update_id"], "description": fields.get("description", ""),
            "media_url": [v for k, v in items if k == "media_url"]})
    return JSONResponse([{"update_id": fields["update_id"]}])
