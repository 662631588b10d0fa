"""CRM webhooks: one outbox row per matching subscription per job event, posted signed by the worker.

fan_out() runs inside append_event, so the rows commit (or roll back) with the change itself. The
worker keeps per-(destination, job) order: a CRM that is down gets every change once it is back, in
order per job. Each body carries `sequence` (the job event id, increasing per job) so a CRM can
also drop a stale change that a supervisor re-sent late.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from contractors.signing import sign
from server import events
from server.config import get_settings
from server.jobs import rules
from server.jobs.models import Job, JobEvent
from server.jobs.service import iso
from server.outbox.models import OutboxMessage, Subscription
from server.outbox.service import enqueue
from server.outbox.worker import DeliveryError, handles

from server.contact_centre.urls import UnsafeUrl, check_url

EVENT_TYPES = (events.STATUS_CHANGED, events.REPORT_ATTACHED)
DEFAULT_EVENT_TYPES = [events.STATUS_CHANGED]
PREFIX = "webhook"
USER_AGENT = "Kerbside-Webhooks/1"
_client: httpx.Client | None = None


def body_for(job: Job, ev: JobEvent) -> dict:
    """What a CRM receives for one job event (no reporter details)."""
    at = ev.at or datetime.now(timezone.utc)
    return {
        "event_id": ev.id, "sequence": ev.id, "type": ev.type, "at": iso(at),
        "job": {"reference": job.reference, "category": job.category_code, "status": job.status,
                "status_in_words": rules.describe_status(job.status),
                "open311_status": rules.open311_status(job.status),
                "extended_status": rules.extended_status(job.status), "priority": job.priority,
                "street": job.street, "due_at": iso(job.due_at), "demand_count": job.demand_count,
                "resolved_at": iso(job.resolved_at)},
        "before": ev.before, "after": ev.after,
    }


def fan_out(session: Session, job: Job, ev: JobEvent) -> int:
    """Queue this event for every active subscription that wants its type; returns how many."""
    if ev.type not in EVENT_TYPES:
        return 0
    ids = list(session.scalars(select(Subscription.id).where(
        Subscription.active.is_(True), Subscription.event_types.contains([ev.type])).order_by(Subscription.id)))
    if not ids:
        return 0
    payload = body_for(job, ev)
    for sid in ids:
        enqueue(session, destination=f"{PREFIX}:{sid}", topic=f"job.{ev.type}", job=job, payload=payload,
                key=f"{PREFIX}:{sid}:{ev.id}")
    return len(ids)


def _http() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=get_settings().webhook_timeout_seconds, follow_redirects=False,
                               headers={"User-Agent": USER_AGENT})
    return _client


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    if not raw:
        return None
    if raw.strip().isdigit():
        return min(float(raw), 3600.0)
    try:
        return max((parsedate_to_datetime(raw) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def post_signed(url: str, secret: str, payload: dict, headers: dict[str, str]) -> httpx.Response:
    """POST the JSON body with the HMAC-SHA256 signature headers (timestamp + "." + body)."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return _http().post(url, content=body, headers={"Content-Type": "application/json", **headers,
                                                    **sign(secret, body)})


@handles(PREFIX)
def deliver(session: Session, msg: OutboxMessage) -> dict | None:
    """Post one job event to one subscription; 5xx, 408, 429 and network errors are retried."""
    try:
        sub = session.get(Subscription, int(msg.destination.split(":", 1)[1]))
    except ValueError:
        raise DeliveryError(f"bad webhook destination {msg.destination!r}", retryable=False) from None
    if sub is None or not sub.active:
        return {"skipped": "the subscription was removed or paused"}
    try:
        url = check_url(sub.url)  # again at send time: the name may now resolve somewhere private
    except UnsafeUrl as exc:
        raise DeliveryError(str(exc), retryable=exc.retryable) from None
    headers = {"X-Kerbside-Event": msg.payload.get("type", ""), "X-Kerbside-Delivery": str(msg.id),
               "Idempotency-Key": msg.idempotency_key}
    try:
        resp = post_signed(url, sub.secret, msg.payload, headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{exc.__class__.__name__}: {exc}", retryable=True) from None
    if 200 <= resp.status_code < 300:
        return {"status": resp.status_code}
    retryable = resp.status_code in (408, 425, 429) or resp.status_code >= 500
    raise DeliveryError(f"the CRM answered HTTP {resp.status_code}", retryable=retryable,
                        retry_after=_retry_after(resp))
