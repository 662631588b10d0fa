"""Reporter contact (the only copy of a reporter's details), its audit trail, messages sent, chasers."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base

NOTIFY_CHOICES = ("email", "sms", "both", "none")


class ReporterContact(Base):
    """How to reach the person behind one report, and what they agreed to; emptied when erased."""

    __tablename__ = "reporter_contacts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Filed only from contact_queue, where kerbside_intake put it with its report (migration 0017): no foreign
    # keys (migration 0015; reports and jobs are never deleted). created_at is when the report arrived.
    report_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    # The report's job (a report never changes job): the repeat-contact check probes (email, job) and (phone, job).
    job_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(32))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(20))
    notify: Mapped[str] = mapped_column(String(8))
    consent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Only contacts made before migration 0015: a newer contact's link is its id, signed (contacts.link_token).
    unsubscribe_token: Mapped[str | None] = mapped_column(String(64))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erase_reason: Mapped[str | None] = mapped_column(String(32))
    # Set when the report's job is closed as a duplicate: the reporter then hears about this job instead.
    follows_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # A STOP reply or an erase by phone reads the leading column; the repeat-contact check reads both.
        Index("ix_reporter_contacts_phone_job", "phone", "job_id", postgresql_where="erased_at IS NULL"),
        Index("ix_reporter_contacts_email_job", text("lower(email)"), "job_id", postgresql_where="erased_at IS NULL"),
        Index("ix_reporter_contacts_follows", "follows_job_id", postgresql_where="follows_job_id IS NOT NULL"),
        Index("uq_reporter_contacts_unsubscribe_token", "unsubscribe_token", unique=True,
              postgresql_where="unsubscribe_token IS NOT NULL"),
    )


class ContactQueue(Base):
    """A report's contact as it came, for the outbox worker to file (server/notifications/received.py).

    Written by kerbside_intake in the report's transaction (migration 0017): one row with one index entry, where
    a filed contact has four and a repeat-contact check. No foreign keys, as on the received queue.
    """

    __tablename__ = "contact_queue"
    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    report_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(20))
    notify: Mapped[str] = mapped_column(String(8))
    consent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tell: Mapped[bool] = mapped_column(Boolean)  # it chose a kind of message: "received" is queued when filed
    category_code: Mapped[str] = mapped_column(String(64))  # for the chaser of a repeat contact
    actor: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReceivedQueue(Base):
    """A contact whose "received" messages the outbox worker has still to write (server/notifications/received.py).

    Written when the contact is filed (migration 0014 wrote it in the report's transaction, 0017 moved it with the
    contact to the worker): one narrow row rather than an outbox row per kind.
    No foreign keys: a row lives seconds, and the intake would pay two index probes and row locks to check them.
    """

    __tablename__ = "received_queue"
    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class ContactAccess(Base):
    """One read, erase or unsubscribe of a contact: who, what, when (the audit trail)."""

    __tablename__ = "contact_access"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("reporter_contacts.id"))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_contact_access_contact", "contact_id"),)


class Notification(Base):
    """One message handed to Notify for one reporter, with its latest delivery receipt."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox_messages.id"), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("reporter_contacts.id"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    template: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    notify_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), unique=True)
    reference: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    status_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    receipts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("ix_notifications_job", "job_id"),
        Index("ix_notifications_failed", "sent_at",
              postgresql_where="status IN ('permanent-failure', 'technical-failure')"),
    )


class Chaser(Base):
    """A contact about a job that already exists (avoidable contact), with the channel it came by."""

    __tablename__ = "chasers"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    category_code: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    source_event_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)

    __table_args__ = (Index("ix_chasers_job", "job_id"), Index("ix_chasers_at", "at"))
