"""The street-lighting contractor's API, as the simulator serves it.

    POST   /orders            signed, Bearer api_key, Idempotency-Key → 201 {"reference", "status", "accepted_at"}
    GET    /orders/{ref}      → the order and its history
    DELETE /orders/{ref}      body {"reason"} → 200; CANCELLED appears in the feed
    GET    /updates?cursor=&limit=  → {"updates": [...], "cursor", "has_more"} (cursor = last seq)

Idempotency: same key + same body → the first answer again (header Idempotent-Replayed: true);
same key + other body → 422; an unfinished order for the same client_reference under another
key → 409 {"code": "duplicate", "reference": existing}.
"""
from __future__ import annotations

import json
import math
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from contractors import signing
from contractors.simulator.engine import fingerprint

router = APIRouter()
PRIORITIES = ("P1", "P2", "P3", "P4")


def _problem(status: int, code: str, detail: str, **extra) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail, **extra}, status)


async def _authorised(request: Request) -> tuple[bytes, JSONResponse | None]:
    """The raw body, or an error answer when the bearer key or the signature is wrong."""
    sim = request.app.state.sim
    body = await request.body()
    if request.headers.get("authorization") != f"Bearer {sim.settings.api_key}":
        return body, _problem(401, "unauthorised", "missing or wrong API key")
    if sim.settings.verify_signatures:
        try:
            signing.verify(sim.settings.secret, request.headers, body)
        except signing.SignatureError as exc:
            sim.counters["bad_signatures"] += 1
            return body, _problem(401, "bad-signature", str(exc), reason=exc.reason)
    return body, None


def _invalid(order: object) -> str | None:
    """Why an order body is unacceptable, or None."""
    if not isinstance(order, dict):
        return "body must be a JSON object"
    if not isinstance(order.get("client_reference"), str) or not order["client_reference"]:
        return "client_reference is required"
    loc = order.get("location")
    if not isinstance(loc, dict):
        return "location is required"
    for key, bound in (("lat", 90), ("lon", 180)):
        value = loc.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) > bound:
            return f"location.{key} must be a number within ±{bound}"
    if order.get("priority") not in PRIORITIES:
        return f"priority must be one of {', '.join(PRIORITIES)}"
    return None


@router.post("/orders")
async def create_order(request: Request) -> JSONResponse:
    """Take an order (idempotent on Idempotency-Key)."""
    sim = request.app.state.sim
    body, error = await _authorised(request)
    if error:
        return error
    key = request.headers.get("idempotency-key")
    if not key:
        return _problem(400, "missing-idempotency-key", "Idempotency-Key header is required")
    try:
        payload = json.loads(body)
    except ValueError:
        return _problem(400, "bad-json", "body is not JSON")
    existing = sim.engine.find_key("bsl", key)
    if existing:
        if existing.fingerprint != fingerprint(payload):
            return _problem(422, "idempotency-key-reused", "this Idempotency-Key was used for a different order",
                            reference=existing.ref)
        sim.counters["duplicates_suppressed"] += 1
        return JSONResponse(existing.answer, 201, headers={"Idempotent-Replayed": "true"})
    reason = _invalid(payload)
    if reason:
        return _problem(422, "invalid-order", reason)
    duplicate = sim.engine.open_for_job("bsl", payload["client_reference"])
    if duplicate:
        sim.counters["duplicates_suppressed"] += 1
        return _problem(409, "duplicate", f"an open order exists for {payload['client_reference']}",
                        reference=duplicate.ref, accepted_at=duplicate.created_at.isoformat())
    order = sim.engine.create("bsl", key, payload, payload["client_reference"], float(payload["location"]["lat"]),
                              float(payload["location"]["lon"]), time.monotonic())
    order.answer = {"reference": order.ref, "status": order.status, "client_reference": order.job_reference,
                    "accepted_at": order.created_at.isoformat()}
    return JSONResponse(order.answer, 201)


@router.get("/orders/{ref}")
async def get_order(ref: str, request: Request) -> JSONResponse:
    """One order with its history."""
    _, error = await _authorised(request)
    if error:
        return error
    order = request.app.state.sim.engine.orders.get(ref)
    if order is None or order.kind != "bsl":
        return _problem(404, "not-found", f"no order {ref}")
    return JSONResponse(order.summary())


@router.delete("/orders/{ref}")
async def cancel_order(ref: str, request: Request) -> JSONResponse:
    """Cancel an unfinished order; a cancelled one answers 200 again, a finished one 409."""
    sim = request.app.state.sim
    body, error = await _authorised(request)
    if error:
        return error
    order = sim.engine.orders.get(ref)
    if order is None or order.kind != "bsl":
        return _problem(404, "not-found", f"no order {ref}")
    if order.status == "CANCELLED":
        return JSONResponse({"reference": ref, "status": order.status})
    if order.finished:
        return _problem(409, "already-finished", f"order {ref} is {order.status}", order_status=order.status)
    try:
        reason = (json.loads(body) if body else {}).get("reason") or "no reason given"
    except (ValueError, AttributeError):
        return _problem(400, "bad-json", "body must be a JSON object")
    sim.engine.cancel(order, str(reason), time.monotonic())
    return JSONResponse({"reference": ref, "status": order.status})


@router.get("/updates")
async def updates(request: Request, cursor: str | None = None, limit: int = 100) -> JSONResponse:
    """The feed after `cursor` (a sequence number; none = from the start)."""
    sim = request.app.state.sim
    _, error = await _authorised(request)
    if error:
        return error
    try:
        after = int(cursor) if cursor else 0
    except ValueError:
        return _problem(400, "bad-cursor", f"cursor {cursor!r} is not one this feed gave out")
    page, more = sim.engine.feed("bsl", after, max(1, min(limit, 1000)))
    next_cursor = str(page[-1].seq if page else after)
    return JSONResponse({"updates": sim.faults.shuffle([u.bsl_json() for u in page]), "cursor": next_cursor,
                         "has_more": more})
