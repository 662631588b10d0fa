"""Durable delivery: claim due rows (FOR UPDATE SKIP LOCKED), hand each to its destination, back off on failure.

A row is locked for the whole attempt, so two workers never send it at once; a worker killed
mid-attempt releases the lock with its connection and the row is simply tried again (every
message carries an idempotency key, so the far side applies it once).
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from server.config import get_settings
from server.db import new_session
from server.jobs.models import Job
from server.jobs.service import append_event
from server.outbox.models import OutboxMessage

log = logging.getLogger("kerbside.outbox")
WORKER = "system:outbox"


class Deferred(Exception):
    """Not now, and not a failure: try again at `until` (a text in quiet hours). No attempt is counted."""

    def __init__(self, until: datetime, reason: str):
        super().__init__(reason)
        self.until = until


class DeliveryError(Exception):
    """A failed attempt: `retryable` says whether to back off and try again or give up now."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


Handler = Callable[[Session, OutboxMessage], dict | None]
_HANDLERS: dict[str, Handler] = {}


def handles(prefix: str) -> Callable[[Handler], Handler]:
    """Register the handler for destinations equal to `prefix` or starting with `prefix:`."""

    def register(fn: Handler) -> Handler:
        _HANDLERS[prefix] = fn
        return fn

    return register


def _handler_for(destination: str) -> Handler:
    _load_handlers()
    key = destination.split(":", 1)[0]
    if key not in _HANDLERS:
        raise DeliveryError(f"no handler for destination {destination!r}", retryable=False)
    return _HANDLERS[key]


def _load_handlers() -> None:
    # Handlers live with their domain; importing registers them.
    import server.contact_centre.webhooks  # noqa: F401
    import server.outbox.handlers  # noqa: F401
    import server.notifications.sender  # noqa: F401


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait before the next attempt: exponential with jitter, capped, at least retry_after."""
    s = get_settings()
    base = min(s.outbox_backoff_cap_seconds, s.outbox_backoff_base_seconds * 2 ** max(attempts - 1, 0))
    delay = base * random.uniform(0.5, 1.5)
    return max(delay, retry_after or 0.0)


def _claim(session: Session) -> OutboxMessage | None:
    """The oldest due pending row not locked by another worker, whose job has no earlier pending row here."""
    now = datetime.now(timezone.utc)
    earlier = aliased(OutboxMessage)
    # Per job and destination, messages go in order: a later one waits while an earlier one is pending.
    blocked = exists(select(earlier.id).where(and_(
        earlier.destination == OutboxMessage.destination, earlier.job_id == OutboxMessage.job_id,
        earlier.state == "pending", earlier.id < OutboxMessage.id)))
    q = (select(OutboxMessage)
         .where(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= now, ~blocked)
         .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(1)
         .with_for_update(skip_locked=True, of=OutboxMessage))
    return session.scalars(q).first()


def _job(session: Session, msg: OutboxMessage) -> Job | None:
    return session.get(Job, msg.job_id) if msg.job_id else None


def process(session: Session, msg: OutboxMessage) -> str:
    """One attempt at one claimed message; commits. Returns the new state."""
    now = datetime.now(timezone.utc)
    msg.attempts += 1
    try:
        handler = _handler_for(msg.destination)
        with session.begin_nested():  # the handler's changes are undone if it fails
            handler(session, msg)
    except Deferred as exc:
        msg.attempts -= 1
        msg.next_attempt_at = exc.until
        session.commit()
        return msg.state
    except Exception as exc:  # every failure is recorded on the row; none is lost
        retryable = getattr(exc, "retryable", True)
        retry_after = getattr(exc, "retry_after", None)
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        msg.last_error = error
        job = _job(session, msg)
        if retryable and msg.attempts < get_settings().outbox_max_attempts:
            msg.next_attempt_at = now + timedelta(seconds=backoff(msg.attempts, retry_after))
            if job is not None:
                append_event(session, job, "delivery_failed", WORKER, data={
                    "destination": msg.destination, "topic": msg.topic, "attempt": msg.attempts, "error": error,
                    "next_attempt_at": msg.next_attempt_at.isoformat()})
            log.warning("outbox %s attempt %d failed: %s", msg.id, msg.attempts, error)
        else:
            msg.state = "dead"
            if job is not None:
                append_event(session, job, "delivery_dead", WORKER, data={
                    "destination": msg.destination, "topic": msg.topic, "attempts": msg.attempts, "error": error,
                    "outbox_id": msg.id})
                if msg.topic == "order.submit" and job.status in ("new", "triage"):
                    job.queue_reason = f"delivery to {msg.destination.split(':', 1)[-1]} failed: {error}"[:300]
            log.error("outbox %s is dead after %d attempts: %s", msg.id, msg.attempts, error)
        session.commit()
        return msg.state
    msg.state = "delivered"
    msg.delivered_at = now
    msg.last_error = None
    session.commit()
    return "delivered"


def deliver_due(max_messages: int = 100, time_budget_s: float = 20.0) -> int:
    """Deliver due messages, one transaction each, until none are due or the budget is spent."""
    from server.notifications import received

    done = 0
    deadline = time.monotonic() + time_budget_s
    # Reports' queued contacts are filed and their "received" messages become outbox rows first (a batch per
    # transaction), then go below.
    drain = received.Drain()
    while True:
        with new_session() as session:
            taken = received.write_queued(session, drain=drain)
            session.commit()
        if taken < received.BATCH or time.monotonic() >= deadline:
            break
    while done < max_messages and time.monotonic() < deadline:
        with new_session() as session:
            msg = _claim(session)
            if msg is None:
                return done
            process(session, msg)
            done += 1
    return done


def retry(session: Session, msg: OutboxMessage, who) -> None:
    """Send a dead (or waiting) message again now: the supervisor's "send again"."""
    before = {"state": msg.state, "attempts": msg.attempts}
    msg.state = "pending"
    msg.attempts = 0
    msg.next_attempt_at = datetime.now(timezone.utc)
    job = _job(session, msg)
    if job is not None:
        if msg.topic == "order.submit":
            job.queue_reason = None
        append_event(session, job, "delivery_retried", who, before=before,
                     data={"destination": msg.destination, "outbox_id": msg.id})
