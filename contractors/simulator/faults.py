"""Fault injection: what POST /_control/faults sets, and the middleware that applies it.

Faults apply to the contractor-facing endpoints only (never /_control, /health, /photos).
The RNG is seeded (SIM_SEED, or "seed" in the faults body) and drawn from only for a rate
above zero, so a run with the same seed and the same requests fails the same way.
"""
from __future__ import annotations

import asyncio
import random

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

EXEMPT = ("/_control", "/health", "/photos", "/docs", "/openapi.json")


class Faults(BaseModel):
    """Current faults; POST /_control/faults replaces them all (an empty body clears them)."""

    model_config = ConfigDict(extra="forbid")
    fail_rate: float = Field(default=0.0, ge=0, le=1)  # answer 500 before doing anything
    timeout_rate: float = Field(default=0.0, ge=0, le=1)  # do the work, then sleep timeout_sleep_s before answering
    timeout_sleep_s: float = Field(default=30.0, ge=0, le=300)
    throttle_rate: float = Field(default=0.0, ge=0, le=1)  # answer 429 with Retry-After: 1
    slow_ms: int = Field(default=0, ge=0, le=60_000)  # added to every request
    duplicate_push_rate: float = Field(default=0.0, ge=0, le=1)  # push the same batch twice
    out_of_order: bool = False  # shuffle each batch (pushes and polled pages)
    down: bool = False  # refuse everything with 503
    seed: int | None = None  # reseed the RNG when given


class FaultBox:
    """Faults plus their RNG and counters."""

    def __init__(self, seed: int | None, counters):
        self.faults = Faults()
        self.rng = random.Random(seed)
        self.counters = counters

    def set(self, faults: Faults) -> None:
        """Replace the faults (and reseed when asked)."""
        self.faults = faults
        if faults.seed is not None:
            self.rng.seed(faults.seed)

    def hit(self, rate: float) -> bool:
        """Whether a fault with this rate fires now."""
        return rate > 0 and (rate >= 1 or self.rng.random() < rate)

    def shuffle(self, items: list) -> list:
        """A shuffled copy when out_of_order is on; never the same order for two or more items."""
        if not self.faults.out_of_order or len(items) < 2:
            return items
        out = list(items)
        self.rng.shuffle(out)
        if out == items:
            out.reverse()
        self.counters["batches_shuffled"] += 1
        return out


def middleware(box_of):
    """The HTTP middleware; `box_of(request)` gives the FaultBox (so the app can swap state on reset)."""

    async def apply(request: Request, call_next) -> Response:
        if request.url.path.startswith(EXEMPT):
            return await call_next(request)
        box: FaultBox = box_of(request)
        f, counters = box.faults, box.counters
        counters["requests"] += 1
        if f.down:
            counters["refused_down"] += 1
            return JSONResponse({"code": "down", "detail": "service unavailable"}, 503, headers={"Retry-After": "1"})
        if f.slow_ms:
            await asyncio.sleep(f.slow_ms / 1000)
        if box.hit(f.fail_rate):
            counters["injected_500"] += 1
            return JSONResponse({"code": "internal", "detail": "injected failure"}, 500)
        if box.hit(f.throttle_rate):
            counters["injected_429"] += 1
            return JSONResponse({"code": "throttled", "detail": "slow down"}, 429, headers={"Retry-After": "1"})
        stall = box.hit(f.timeout_rate)
        response = await call_next(request)
        if stall:
            # The work is done (an order may exist) but the answer comes too late: the case idempotency is for.
            counters["injected_timeouts"] += 1
            await asyncio.sleep(f.timeout_sleep_s)
        return response

    return apply
