"""The outbox handler for `notify:email` and `notify:sms`: one message to GOV.UK Notify per row.

Notify has no idempotency key, so a retry first asks Notify for a notification with this row's
reference (GET /v2/notifications?reference=): a first attempt whose answer was lost is recorded, not
sent again. Texts wait out quiet hours; an erased or unsubscribed contact is sent nothing.
"""
from __future__ import annotations

from datetime import datetime, timezone

from notifications_python_client.errors import APIError
from notifications_python_client.notifications import NotificationsAPIClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.catalogue.service import get_catalogue
from server.config import get_settings
from server.jobs import sla
from server.jobs.models import Job
from server.jobs.service import append_event
from server.notifications import quiet, templates
from server.notifications.contacts import token_of
from server.notifications.models import Notification, ReporterContact
from server.notifications.service import kinds_of
from server.outbox.models import OutboxMessage
from server.outbox.worker import WORKER, Deferred, DeliveryError, handles


def client() -> NotificationsAPIClient:
    """A Notify client for the configured key and base URL."""
    s = get_settings()
    return NotificationsAPIClient(s.notify_api_key, base_url=s.notify_base_url, timeout=10)


def personalisation(session: Session, job: Job, contact: ReporterContact, payload: dict) -> dict[str, str]:
    """Every placeholder the templates use, from the job as it is now."""
    s = get_settings()
    try:
        category = get_catalogue().get(job.category_code).name
    except Exception:  # a category retired since: its code still reads
        category = job.category_code.replace("_", " ")
    now = datetime.now(timezone.utc)
    promised = (sla.describe_due(job.due_at, now, s.timezone).removeprefix("by ") if job.due_at
                else "a date we will set soon")
    base = s.public_base_url.rstrip("/")
    return {"reference": payload["report"], "job_reference": job.reference, "category": category,
            "street": job.street or "the place you showed us", "promised_date": promised,
            "status_url": f"{base}/r/{payload['report']}", "unsubscribe_url": f"{base}/u/{token_of(contact)}",
            "other_reference": payload.get("other_reference", ""), "who_to_contact": payload.get("who_to_contact", "")}


def _fail(exc: APIError) -> DeliveryError:
    status = exc.status_code
    # 400: the request is wrong (a bad number, a missing placeholder); 403: the key is wrong. Neither
    # improves by waiting: the row goes to the supervisor's dead list. 429 and 5xx are worth retrying.
    retryable = status == 429 or status >= 500
    return DeliveryError(f"Notify answered {status}: {exc.message}", retryable=retryable,
                         retry_after=60.0 if status == 429 else None)


@handles("notify")
def send(session: Session, msg: OutboxMessage) -> dict | None:
    """Send one message through Notify and record it (or skip it, or wait for the morning)."""
    s = get_settings()
    p = msg.payload
    kind = p["kind"]
    contact = session.get(ReporterContact, p["contact_id"])
    if contact is None or contact.erased_at or contact.unsubscribed_at or kind not in kinds_of(contact.notify):
        return {"skipped": "the reporter no longer wants (or can be sent) updates"}
    now = datetime.now(timezone.utc)
    if kind == "sms" and quiet.is_quiet(now, s.notify_quiet_start, s.notify_quiet_end, s.timezone):
        raise Deferred(quiet.next_allowed(now, s.notify_quiet_start, s.notify_quiet_end, s.timezone),
                       "no texts in quiet hours")
    job = session.get(Job, msg.job_id)
    if job is None:
        raise DeliveryError("the job no longer exists", retryable=False)
    reference = f"kerbside-{msg.id}"
    notify = client()
    if msg.attempts > 1 or msg.last_error:  # an earlier attempt (even before a "send again") may have got through
        try:
            found = notify.get_all_notifications(reference=reference).get("notifications", [])
        except APIError as exc:
            raise _fail(exc) from exc
        if found:
            return _record(session, msg, contact, job, found[0]["id"], reference, found[0].get("status", "created"))
    values = personalisation(session, job, contact, p)
    template_id = templates.template_id(p["template"], kind)
    try:
        if kind == "email":
            sent = notify.send_email_notification(
                email_address=contact.email, template_id=template_id, personalisation=values, reference=reference,
                one_click_unsubscribe_url=values["unsubscribe_url"])
        else:
            sent = notify.send_sms_notification(phone_number=contact.phone, template_id=template_id,
                                                personalisation=values, reference=reference)
    except APIError as exc:
        raise _fail(exc) from exc
    return _record(session, msg, contact, job, sent["id"], reference, "created")


def _record(session: Session, msg: OutboxMessage, contact: ReporterContact, job: Job, notify_id: str,
            reference: str, status: str) -> dict:
    existing = session.scalar(select(Notification).where(Notification.outbox_id == msg.id))
    if existing is None:
        session.add(Notification(outbox_id=msg.id, contact_id=contact.id, job_id=job.id, template=msg.topic,
                                 kind=msg.payload["kind"], notify_id=notify_id, reference=reference, status=status,
                                 receipts=0))
    # The timeline says a message went, never to whom.
    append_event(session, job, "reporter_notified", WORKER, data={
        "template": msg.topic, "kind": msg.payload["kind"], "report": msg.payload["report"]}, notify=False)
    session.flush()
    return {"notify_id": notify_id}
