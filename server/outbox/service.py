"""Writing outbox rows: in the caller's transaction, deduplicated by idempotency key."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.jobs.models import Job
from server.outbox.models import OutboxMessage

# Workers LISTEN here; the NOTIFY is delivered when the enqueuing transaction commits.
CHANNEL = "kerbside_outbox"


def enqueue(session: Session, *, destination: str, topic: str, payload: dict, key: str,
            job: Job | None = None) -> None:
    """Add a message for the worker to deliver; a second enqueue with the same key is a no-op."""
    stmt = insert(OutboxMessage).values(destination=destination, topic=topic, payload=payload,
                                        idempotency_key=key, job_id=job.id if job else None)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["idempotency_key"]))
    session.execute(text(f"NOTIFY {CHANNEL}"))  # repeated NOTIFYs in one transaction collapse into one
