"""The simulator's in-memory world: orders, their progress, and the update feed (no HTTP here).

Two kinds of order share one engine: "bsl" (the street-lighting API, statuses in capitals) and
"open311" (the GeoReport back office, extended statuses in lower case). Every status change is an
Update with a global sequence number: the bsl feed's cursor, and what pushes carry.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

STEPS = {"bsl": ("ACKNOWLEDGED", "SCHEDULED", "IN_PROGRESS", "FIXED"),
         "open311": ("investigating", "action_scheduled", "in_progress", "fixed")}
INITIAL = {"bsl": "RECEIVED", "open311": "open"}
FINAL = {"bsl": frozenset({"FIXED", "CANCELLED", "REJECTED", "NOT_FOUND"}),
         "open311": frozenset({"fixed", "closed", "duplicate", "not_councils_responsibility", "no_further_action",
                               "internal_referral"})}
NOTES = {"ACKNOWLEDGED": "Order received and acknowledged", "SCHEDULED": "Visit booked",
         "IN_PROGRESS": "Engineer on site", "FIXED": "Lamp replaced, column tested",
         "investigating": "Inspector assigned", "action_scheduled": "Repair booked",
         "in_progress": "Crew on site", "fixed": "Repaired"}
SCHEDULED = {"SCHEDULED", "action_scheduled"}
RESUME_STEP = 2  # IN_PROGRESS / in_progress
DONE = {"FIXED", "fixed"}


def now() -> datetime:
    """Aware UTC now (one place, so tests could pin it)."""
    return datetime.now(timezone.utc)


def fingerprint(payload: Any) -> str:
    """Stable hash of a request payload (same content, same hash, whatever the key order)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Update:
    """One status change of one order."""

    seq: int
    kind: str
    ref: str
    update_id: str
    status: str
    occurred_at: datetime
    job_reference: str | None
    note: str | None = None
    scheduled_for: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    photo_url: str | None = None

    def bsl_json(self) -> dict:
        """As the street-lighting API shows it (feed and pushes)."""
        return {"seq": self.seq, "update_id": self.update_id, "reference": self.ref,
                "client_reference": self.job_reference, "status": self.status,
                "occurred_at": self.occurred_at.isoformat(), "note": self.note,
                "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
                "fix": {"lat": self.lat, "lon": self.lon} if self.lat is not None else None,
                "photo_url": self.photo_url}

    def open311_json(self) -> dict:
        """As GeoReport servicerequestupdates shows it."""
        return {"update_id": self.update_id, "service_request_id": self.ref, "status": self.status,
                "updated_datetime": self.occurred_at.isoformat(), "description": self.note or "",
                "media_url": self.photo_url or ""}


@dataclass
class Order:
    """One order (bsl) or service request (open311)."""

    ref: str
    kind: str
    key: str | None
    fingerprint: str
    job_reference: str | None
    lat: float
    lon: float
    payload: dict
    created_at: datetime
    status: str
    answer: dict = field(default_factory=dict)  # what POST answered, replayed for a repeated key
    step: int = -1  # index into STEPS[kind] reached so far
    held: bool = False  # an explicit non-step status (ON_HOLD…): the next advance resumes in progress
    last_change: float = 0.0  # monotonic seconds, for timed progress
    cancel_reason: str | None = None
    history: list[Update] = field(default_factory=list)
    comments: dict[str, dict] = field(default_factory=dict)  # the council's comments (Open311 OPEN updates) by update_id

    @property
    def finished(self) -> bool:
        """No more steps."""
        return self.status in FINAL[self.kind]

    def summary(self) -> dict:
        """For GET /orders/{ref} and the control state."""
        return {"reference": self.ref, "kind": self.kind, "status": self.status, "idempotency_key": self.key,
                "client_reference": self.job_reference, "created_at": self.created_at.isoformat(),
                "cancel_reason": self.cancel_reason, "history": [u.bsl_json() for u in self.history],
                "comments": list(self.comments.values())}


class Engine:
    """Orders and updates; `on_update` hears every new update (the pusher)."""

    def __init__(self, base_url: str, ref_prefix: str = "BSL", on_update: Callable[[Update], None] | None = None,
                 counters: Counter[str] | None = None):
        self.base_url = base_url
        self.ref_prefix = ref_prefix
        self.on_update = on_update
        self.counters: Counter[str] = Counter() if counters is None else counters  # shared with faults/pushes
        self.reset()

    def reset(self) -> None:
        """Forget every order and update (counters are cleared by their owner)."""
        self.orders: dict[str, Order] = {}
        self.keys: dict[tuple[str, str], str] = {}
        self.updates: list[Update] = []
        self._numbers: Counter[str] = Counter()

    def find_key(self, kind: str, key: str) -> Order | None:
        """The order made under this idempotency (or external) key."""
        ref = self.keys.get((kind, key))
        return self.orders.get(ref) if ref else None

    def open_for_job(self, kind: str, job_reference: str) -> Order | None:
        """An unfinished order for the same job (a duplicate under another key)."""
        return next((o for o in self.orders.values()
                     if o.kind == kind and o.job_reference == job_reference and not o.finished), None)

    def create(self, kind: str, key: str | None, payload: dict, job_reference: str | None, lat: float, lon: float,
               clock: float) -> Order:
        """A new order in its initial status (no update yet: the first step acknowledges it)."""
        self._numbers[kind] += 1
        prefix = self.ref_prefix if kind == "bsl" else "311"
        ref = f"{prefix}-{self._numbers[kind]:06d}"
        order = Order(ref=ref, kind=kind, key=key, fingerprint=fingerprint(payload), job_reference=job_reference,
                      lat=lat, lon=lon, payload=payload, created_at=now(), status=INITIAL[kind], last_change=clock)
        self.orders[ref] = order
        if key:
            self.keys[(kind, key)] = ref
        self.counters["orders_received"] += 1
        return order

    def _emit(self, order: Order, status: str, note: str | None, clock: float) -> Update:
        at = now()
        if order.kind == "open311":
            at = at.replace(microsecond=0)  # GeoReport servers commonly stamp to the second
        seq = len(self.updates) + 1
        update = Update(seq=seq, kind=order.kind, ref=order.ref, status=status, occurred_at=at,
                        update_id=f"{order.ref}/{len(order.history) + 1}" if order.kind == "bsl" else str(seq),
                        job_reference=order.job_reference, note=note if note is not None else NOTES.get(status))
        if status in SCHEDULED:
            update.scheduled_for = (at + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
        if status in DONE:
            # A fix a few metres from where we said: close enough to pass a proof-of-work check.
            update.lat, update.lon = round(order.lat + 0.00003, 7), round(order.lon + 0.00003, 7)
            update.photo_url = f"{self.base_url}/photos/{order.ref}.jpg"
        order.status = status
        order.last_change = clock
        order.history.append(update)
        self.updates.append(update)
        self.counters["updates"] += 1
        if self.on_update:
            self.on_update(update)
        return update

    def step(self, order: Order, clock: float) -> Update | None:
        """Move one order one step along its path; None when it is finished."""
        if order.finished:
            return None
        steps = STEPS[order.kind]
        if order.held:
            # Work resumes in progress (our lifecycle leaves on_hold only for in_progress).
            order.held = False
            order.step = max(order.step, RESUME_STEP)
            return self._emit(order, steps[order.step], "Work resumed", clock)
        order.step += 1
        return self._emit(order, steps[order.step], None, clock)

    def set_status(self, order: Order, status: str, note: str | None, clock: float) -> Update:
        """Put an order in any status (ON_HOLD, REJECTED, duplicate…), emitting its update."""
        steps = STEPS[order.kind]
        if status in steps:
            order.step, order.held = steps.index(status), False
        else:
            order.held = True
        return self._emit(order, status, note, clock)

    def advance(self, ref: str | None, steps: int, status: str | None, note: str | None, clock: float) -> list[Update]:
        """Control: step one order (or every unfinished one) `steps` times, or set `status`."""
        targets = [self.orders[ref]] if ref else [o for o in self.orders.values() if not o.finished]
        out: list[Update] = []
        for order in targets:
            if status:
                out.append(self.set_status(order, status, note, clock))
                continue
            for _ in range(steps):
                update = self.step(order, clock)
                if update is None:
                    break
                out.append(update)
        return out

    def tick(self, clock: float, step_seconds: float) -> list[Update]:
        """Timed progress: every unfinished order whose last change is old enough takes one step."""
        return [u for o in list(self.orders.values())
                if not o.finished and clock - o.last_change >= step_seconds and (u := self.step(o, clock))]

    def cancel(self, order: Order, reason: str, clock: float, emit: bool = True) -> Update | None:
        """Cancel at the client's request (bsl emits CANCELLED; an Open311 close is the council's own update)."""
        order.cancel_reason = reason
        self.counters["cancels"] += 1
        if emit:
            return self._emit(order, "CANCELLED", f"Cancelled at the council's request: {reason}", clock)
        order.status = "closed"
        return None

    def feed(self, kind: str, after_seq: int, limit: int) -> tuple[list[Update], bool]:
        """Updates of one kind after a sequence number, oldest first, and whether more wait."""
        items = [u for u in self.updates if u.kind == kind and u.seq > after_seq]
        return items[:limit], len(items) > limit
