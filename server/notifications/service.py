"""Queueing the messages each job change sends to the people who reported the job.

Everything here runs in the caller's transaction: messages are queued only if the job change commits. A
report's own contact is queued by kerbside_intake in the report's round trip (migration 0017;
server/reports/service.py builds its `contact` member); the outbox worker, or the job's next change, files it
and turns its "received" messages into outbox rows (server/notifications/received.py).
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.config import get_settings
from server.jobs.models import Job, JobEvent
from server.notifications import quiet, received
from server.notifications.templates import event_template
from server.outbox.models import OutboxMessage
from server.outbox.service import CHANNEL as OUTBOX_CHANNEL

DESTINATION = "notify"  # notify:email and notify:sms: separate queues, so a text held overnight holds no email
_REFERENCE = re.compile(r"\b[JR]-\d{6}\b")

# The job's own reporters, and those of jobs closed as its duplicates (who follow it).
_AUDIENCE = text("""
    SELECT c.id, c.notify, c.email, c.phone, r.reference
      FROM reporter_contacts c JOIN reports r ON r.id = c.report_id
     WHERE (r.job_id = :job_id OR c.follows_job_id = :job_id)
       AND c.erased_at IS NULL AND c.unsubscribed_at IS NULL AND c.notify <> 'none'
     ORDER BY c.id
""")
_UNFOLLOW = text("""
    UPDATE reporter_contacts c SET follows_job_id = NULL
      FROM reports r WHERE r.id = c.report_id AND r.job_id = :job_id AND c.follows_job_id IS NOT NULL
""")
_FOLLOW = text("""
    UPDATE reporter_contacts c SET follows_job_id = (SELECT id FROM jobs WHERE reference = :other)
      FROM reports r WHERE r.id = c.report_id AND r.job_id = :job_id AND c.erased_at IS NULL
""")


def kinds_of(notify: str) -> tuple[str, ...]:
    """Message kinds for a stored choice."""
    return {"email": ("email",), "sms": ("sms",), "both": ("email", "sms")}.get(notify, ())


def on_status_changed(session: Session, job: Job, event: JobEvent) -> None:
    """Queue the message this move sends to every reporter of the job (once per person and kind)."""
    after = event.after or {}
    if (event.before or {}).get("status") == "duplicate":  # reopened: its reporters hear about it again
        session.execute(_UNFOLLOW, {"job_id": job.id})
    template = event_template(after.get("status", ""), event.data)
    if template is None:
        return
    extra, found = {}, None
    if template == "duplicate":
        found = _REFERENCE.search(" ".join(str(v) for v in ((event.data or {}).get("reason"), event.note) if v))
        extra["other_reference"] = found.group(0) if found else "an earlier report"
    if template == "not_ours":
        extra["who_to_contact"] = (event.note or "").strip()[:300] or "our contact centre can tell you who"
    rows, seen = [], set()
    received.file_job(session, job.id)  # a contact queued a moment ago hears about this change too
    audience = list(session.execute(_AUDIENCE, {"job_id": job.id}))
    if template == "duplicate" and found and found.group(0).startswith("J-"):
        # Told once that it was joined, the reporter then hears what happens to the job it was joined to.
        session.execute(_FOLLOW, {"other": found.group(0), "job_id": job.id})
    for c in audience:
        for kind in kinds_of(c.notify):
            address = (c.email or "").lower() if kind == "email" else c.phone
            if not address or (kind, address) in seen:
                continue
            seen.add((kind, address))
            rows.append(_message(job.id, c.id, c.reference, template, kind,
                                 f"notify:{event.id}:{kind}:{_address_key(address)}", {**extra, "event_id": event.id}))
    _enqueue(session, rows)


def _address_key(address: str) -> str:
    # The outbox key must not carry the address itself (outbox rows outlive an erased contact).
    return hashlib.sha256(f"{get_settings().webhook_secret}\x1f{address}".encode()).hexdigest()[:24]


def _message(job_id: int, contact_id: int, report_ref: str, template: str, kind: str, key: str, extra: dict) -> dict:
    s = get_settings()
    now = datetime.now(timezone.utc)
    due = quiet.next_allowed(now, s.notify_quiet_start, s.notify_quiet_end, s.timezone) if kind == "sms" else now
    return {"destination": f"{DESTINATION}:{kind}", "topic": template, "job_id": job_id, "idempotency_key": key,
            "next_attempt_at": due,
            "payload": {"contact_id": contact_id, "report": report_ref, "template": template, "kind": kind, **extra}}


def _enqueue(session: Session, rows: list[dict]) -> None:
    if not rows:
        return
    # A reporter hears "received" before anything later: the job's queued acknowledgements go first.
    received.for_job(session, rows[0]["job_id"])
    session.execute(insert(OutboxMessage).values(rows).on_conflict_do_nothing(index_elements=["idempotency_key"]))
    session.execute(text(f"NOTIFY {OUTBOX_CHANNEL}"))
