"""Control API for tests and demos (unauthenticated: the simulator binds to loopback by default).

    POST /_control/advance  {"ref"?, "steps"?: 1, "status"?, "note"?}  → {"updates": [...]}
    POST /_control/faults   Faults (replaces all; {} clears)             → current faults
    POST /_control/config   {"step_seconds"?, "callback_url"?, "callback_path"?, "callback_token"?,
                             "push_retries"?, "push_backoff_s"?}          → public settings
    POST /_control/reset    orders, updates, counters, faults and settings back to start-up
    GET  /_control/state    settings (no secrets), faults, counters, orders, pending pushes
"""
from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from contractors.simulator.faults import Faults

router = APIRouter(prefix="/_control")


class Advance(BaseModel):
    """Which order (all unfinished ones when omitted), how many steps, or a status to set."""

    model_config = ConfigDict(extra="forbid")
    ref: str | None = None
    steps: int = Field(default=1, ge=1, le=20)
    status: str | None = None
    note: str | None = None


@router.post("/advance")
async def advance(body: Advance, request: Request) -> dict:
    """Move orders along (the only way they move when step_seconds is 0)."""
    sim = request.app.state.sim
    if body.ref and body.ref not in sim.engine.orders:
        raise HTTPException(404, f"no order {body.ref}")
    updates = sim.engine.advance(body.ref, body.steps, body.status, body.note, time.monotonic())
    return {"updates": [u.bsl_json() if u.kind == "bsl" else u.open311_json() for u in updates]}


@router.post("/faults")
async def set_faults(body: Faults, request: Request) -> dict:
    """Replace the faults."""
    sim = request.app.state.sim
    sim.faults.set(body)
    return sim.faults.faults.model_dump()


@router.post("/config")
async def set_config(body: dict, request: Request) -> dict:
    """Change run-time settings (callback, speed, push retries)."""
    sim = request.app.state.sim
    try:
        sim.settings = sim.settings.with_changes(body)
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, str(exc)) from None
    return sim.settings.public()


@router.post("/reset")
async def reset(request: Request) -> dict:
    """Back to the state at start-up."""
    request.app.state.sim.reset()
    return {"ok": True}


@router.get("/state")
async def state(request: Request) -> dict:
    """Everything worth looking at."""
    sim = request.app.state.sim
    return {"settings": sim.settings.public(), "faults": sim.faults.faults.model_dump(),
            "counters": dict(sim.counters), "orders": [o.summary() for o in sim.engine.orders.values()],
            "updates": len(sim.engine.updates), "pushes_queued": sim.pusher.queue.qsize()}
