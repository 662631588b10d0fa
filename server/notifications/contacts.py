"""Reading a contact (audited), erasing it (on request or after the retention period), unsubscribing."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from server.config import get_settings
from server.db import new_session
from server.deps import Principal
from server.notifications import received
from server.notifications.models import ContactAccess, ReporterContact
from server.notifications.schemas import normalise_phone
from server.reports.models import Report

PERSONAL = ("first_name", "last_name", "email", "phone")


def _audit(session: Session, contact_id: int, action: str, actor: str, role: str, note: str | None = None) -> None:
    session.add(ContactAccess(contact_id=contact_id, action=action, actor=actor, actor_role=role, note=note))


def view(c: ReporterContact) -> dict:
    """What an adviser sees of a contact."""
    return {"first_name": c.first_name, "last_name": c.last_name, "email": c.email, "phone": c.phone,
            "notify": c.notify, "consent_at": c.consent_at and c.consent_at.isoformat(), "channel": c.channel,
            "unsubscribed_at": c.unsubscribed_at and c.unsubscribed_at.isoformat(),
            "erased_at": c.erased_at and c.erased_at.isoformat(), "erase_reason": c.erase_reason}


def read_for_adviser(session: Session, who: Principal, report: Report, reason: str | None) -> dict | None:
    """The contact of a report, with the read written to the audit trail in the same commit."""
    received.file_job(session, report.job_id)  # the contact of a report made a moment ago may be queued still
    c = session.scalar(select(ReporterContact).where(ReporterContact.report_id == report.id))
    if c is None:
        return None
    _audit(session, c.id, "read", who.actor, who.role, reason)
    session.commit()
    return view(c)


def _erase(session: Session, contacts: list[ReporterContact], reason: str, actor: str, role: str) -> int:
    now = datetime.now(timezone.utc)
    for c in contacts:
        for name in PERSONAL:
            setattr(c, name, None)
        c.notify, c.erased_at, c.erase_reason = "none", now, reason
        _audit(session, c.id, "erase", actor, role, reason)
    return len(contacts)


def erase_person(session: Session, *, report: str | None = None, email: str | None = None,
                 phone: str | None = None, actor: str = "cli", role: str = "admin") -> int:
    """Erase a person's contact from one report, or from every report with that email or phone; commits."""
    received.file_all(session)  # a person's contact queued a moment ago is erased too
    q = select(ReporterContact).where(ReporterContact.erased_at.is_(None))
    if report:
        q = q.join(Report, Report.id == ReporterContact.report_id).where(Report.reference == report.upper())
    elif email:
        q = q.where(ReporterContact.email.ilike(email.strip()))
    elif phone:
        q = q.where(ReporterContact.phone == (normalise_phone(phone) or phone))
    else:
        raise ValueError("name a report, an email address or a phone number")
    n = _erase(session, list(session.scalars(q.with_for_update())), "request", actor, role)
    session.commit()
    return n


def sweep_retention(now: datetime | None = None) -> int:
    """Erase every contact older than the retention period (the worker runs this hourly)."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=get_settings().contact_retention_days)
    with new_session() as session:
        old = list(session.scalars(select(ReporterContact).where(
            ReporterContact.erased_at.is_(None), ReporterContact.created_at < cutoff)
            .limit(5000).with_for_update(skip_locked=True)))
        n = _erase(session, old, "retention", "system:retention", "system")
        session.commit()
    return n


_SIGNED = re.compile(r"^([1-9][0-9]{0,17})\.[A-Za-z0-9_-]{32}$")


def link_token(contact_id: int) -> str:
    """The token of a contact's unsubscribe link: its id and an HMAC of it under the API's secret (nothing to store,
    nothing to guess). Contacts made before migration 0015 keep the random token their links were sent with."""
    mac = hmac.new(get_settings().webhook_secret.encode(), f"unsubscribe\x1f{contact_id}".encode(), hashlib.sha256)
    return f"{contact_id}.{base64.urlsafe_b64encode(mac.digest()).decode()[:32]}"


def token_of(c: ReporterContact) -> str:
    """The token this contact's messages link to."""
    return c.unsubscribe_token or link_token(c.id)


def by_token(token: str):
    """The WHERE clause finding the contact of an unsubscribe link (none for a forged or unknown one)."""
    signed = _SIGNED.match(token)
    if signed:
        good = hmac.compare_digest(link_token(int(signed.group(1))), token)
        return ReporterContact.id == int(signed.group(1)) if good else text("false")
    return ReporterContact.unsubscribe_token == token[:64]


def unsubscribe_token(session: Session, token: str) -> ReporterContact | None:
    """End messages for the report this link was sent about; None if the link is unknown."""
    c = session.scalar(select(ReporterContact).where(by_token(token)).with_for_update())
    if c is None:
        return None
    if c.unsubscribed_at is None:
        c.unsubscribed_at = datetime.now(timezone.utc)
        _audit(session, c.id, "unsubscribe", "reporter:link", "public")
    session.commit()
    return c


def unsubscribe_phone(session: Session, number: str) -> int:
    """A STOP reply: no more texts to this number about any report (Notify does not say which one)."""
    phone = normalise_phone(number)
    if phone is None:
        return 0
    received.file_all(session)  # a report made a moment ago from this number is not texted either
    ids = list(session.scalars(update(ReporterContact).where(
        ReporterContact.phone == phone, ReporterContact.erased_at.is_(None),
        ReporterContact.unsubscribed_at.is_(None)).values(unsubscribed_at=text("now()"))
        .returning(ReporterContact.id)))
    for cid in ids:
        _audit(session, cid, "unsubscribe", "reporter:sms-stop", "public")
    session.commit()
    return len(ids)
