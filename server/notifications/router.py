"""HTTP: an adviser reading a reporter's contact (audited), chasers, failed messages, Notify's callbacks."""
from __future__ import annotations

import hmac
import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from server.config import get_settings
from server.deps import Principal, SessionDep, require
from server.errors import NotFound, Unauthorized
from server.jobs.access import job_or_404
from server.jobs.models import Job
from server.jobs.service import append_event
from server.notifications import contacts
from server.notifications.models import Chaser, Notification, ReporterContact
from server.reports.models import Report

router = APIRouter(prefix="/api/v1", tags=["notifications"])
Advisers = Annotated[Principal, require("advisor", "supervisor")]
Supervisor = Annotated[Principal, require("supervisor")]
STATUSES = ("created", "sending", "delivered", "permanent-failure", "temporary-failure", "technical-failure")
FINAL = ("delivered", "permanent-failure", "temporary-failure", "technical-failure")


@router.get("/reports/{reference}/contact", summary="Adviser: the reporter's contact (every read is audited)")
def get_contact(reference: str, session: SessionDep, who: Advisers,
                reason: str | None = Query(None, max_length=300, description="why it is read (kept on the trail)")
                ) -> dict:
    """The name, email, phone and choice of updates of a report's reporter; the read goes on the audit trail."""
    report = session.scalar(select(Report).where(Report.reference == reference.upper()))
    if report is None:
        raise NotFound(f"no report {reference!r}", fields=["reference"], code="report-not-found")
    found = contacts.read_for_adviser(session, who, report, reason)
    if found is None:
        raise NotFound(f"report {reference!r} has no contact", fields=["reference"], code="contact-not-found")
    return {"report": report.reference, "contact": found}


class ChaserIn(BaseModel):
    """A caller (or writer) asking about a job that already exists."""

    model_config = ConfigDict(extra="forbid")
    channel: Literal["phone", "email", "in_person", "letter", "web", "social"] = "phone"
    note: str | None = Field(None, max_length=500)


@router.post("/jobs/{reference}/chasers", status_code=201, summary="Adviser: a caller is chasing this job")
def post_chaser(reference: str, body: ChaserIn, session: SessionDep, who: Advisers) -> dict:
    """Record a contact about an existing job (avoidable contact) with its channel."""
    job = job_or_404(session, who, reference)
    chaser = Chaser(job_id=job.id, category_code=job.category_code, channel=body.channel, kind="adviser_call",
                    actor=who.actor)
    session.add(chaser)
    append_event(session, job, "chaser", who, data={"channel": body.channel}, note=body.note, notify=False)
    session.commit()
    return {"job": job.reference, "channel": chaser.channel, "at": chaser.at.isoformat() if chaser.at else None}


@router.get("/notifications/failures", summary="Supervisor: messages Notify could not deliver")
def failures(session: SessionDep, who: Supervisor, limit: int = Query(100, ge=1, le=500)) -> dict:
    """Permanent and technical failures, newest first (no addresses: open the contact to see one)."""
    rows = session.execute(
        select(Notification, Job.reference.label("job"), Report.reference.label("report"))
        .join(Job, Job.id == Notification.job_id)
        .join(ReporterContact, ReporterContact.id == Notification.contact_id)
        .join(Report, Report.id == ReporterContact.report_id)
        .where(Notification.status.in_(("permanent-failure", "technical-failure")))
        .order_by(Notification.status_at.desc().nullslast(), Notification.id.desc()).limit(limit)).all()
    return {"items": [{"job": r.job, "report": r.report, "template": r.Notification.template,
                       "kind": r.Notification.kind, "status": r.Notification.status,
                       "at": r.Notification.status_at and r.Notification.status_at.isoformat()} for r in rows]}


def _notify_only(request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = get_settings().notify_callback_token
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("Notify callbacks carry the bearer token set for this service",
                           fields=["Authorization"], headers={"WWW-Authenticate": "Bearer"})


# A dependency, so a caller without Notify's token is refused before its body is looked at.
NotifyCaller = Annotated[None, Depends(_notify_only)]


class ReceiptIn(BaseModel):
    """Notify's delivery status callback (the fields we use; Notify sends more)."""

    model_config = ConfigDict(extra="allow")
    id: uuid.UUID
    reference: str | None = None
    to: str | None = None
    status: Literal[STATUSES]  # type: ignore[valid-type]
    notification_type: Literal["email", "sms", "letter"] | None = None


@router.post("/notify/receipts", status_code=204, summary="GOV.UK Notify: a delivery receipt (bearer token)")
def receipt(body: ReceiptIn, session: SessionDep, _: NotifyCaller) -> Response:
    """Record a message's delivery status; a repeated receipt changes nothing, an unknown id is a 404 (Notify
    retries it: the receipt can outrun the commit of the message it is about)."""
    n = session.scalar(select(Notification).where(Notification.notify_id == body.id).with_for_update())
    if n is None:
        raise NotFound(f"no notification {body.id}", fields=["id"], code="notification-not-found")
    if n.status != body.status and n.status not in FINAL:
        n.status, n.status_at, n.receipts = body.status, datetime.now(timezone.utc), n.receipts + 1
        if body.status in ("permanent-failure", "technical-failure"):
            job = session.get(Job, n.job_id)
            append_event(session, job, "notification_failed", "system:notify", notify=False,
                         data={"template": n.template, "kind": n.kind, "status": body.status})
    session.commit()
    return Response(status_code=204)


class InboundSmsIn(BaseModel):
    """Notify's received text message callback."""

    model_config = ConfigDict(extra="allow")
    id: uuid.UUID
    source_number: str = Field(max_length=30)
    destination_number: str | None = None
    content: str = Field(max_length=2000)
    date_received: str | None = None


@router.post("/notify/inbound-sms", status_code=204, summary="GOV.UK Notify: a text from a reporter (STOP ends texts)")
def inbound_sms(body: InboundSmsIn, session: SessionDep, _: NotifyCaller) -> Response:
    """A reply of STOP (or UNSUBSCRIBE) ends texts to that number; other replies are ignored."""
    if body.content.strip().upper() in ("STOP", "UNSUBSCRIBE", "STOP ALL"):
        contacts.unsubscribe_phone(session, body.source_number)
    return Response(status_code=204)
