"""Event types and publishing: a NOTIFY sent inside the transaction is delivered only on commit."""
from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.orm import Session

CHANNEL = "kerbside_job_events"

REPORT_RECEIVED = "report_received"
JOB_OPENED = "job_opened"
REPORT_ATTACHED = "report_attached"
SNAPPED = "snapped"
TRIAGED = "triaged"
SLA_SET = "sla_set"
PHOTO_ADDED = "photo_added"
STATUS_CHANGED = "status_changed"


def publish(session: Session, job_ref: str, event_id: int, event_type: str, status: str) -> None:
    """Queue a notification for listeners (SSE, CRM fan-out); PostgreSQL sends it at commit, never before."""
    payload = json.dumps({"job": job_ref, "event_id": event_id, "type": event_type, "status": status})
    session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})
