"""Supervisors' view of delivery: failed (dead) and waiting messages, and "send again"."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select

from server.deps import Principal, SessionDep, require
from server.errors import NotFound
from server.jobs.models import Job
from server.outbox.models import OutboxMessage
from server.outbox.worker import retry

router = APIRouter(prefix="/api/v1", tags=["delivery"])
Supervisor = Annotated[Principal, require("supervisor")]


def _view(m: OutboxMessage, job_ref: str | None) -> dict:
    return {"id": m.id, "destination": m.destination, "topic": m.topic, "job": job_ref, "state": m.state,
            "attempts": m.attempts, "next_attempt_at": m.next_attempt_at.isoformat() if m.next_attempt_at else None,
            "last_error": m.last_error, "created_at": m.created_at.isoformat() if m.created_at else None,
            "delivered_at": m.delivered_at.isoformat() if m.delivered_at else None,
            "idempotency_key": m.idempotency_key}


@router.get("/outbox", summary="Outbound deliveries (dead ones by default)")
def list_outbox(session: SessionDep, who: Supervisor,
                state: Literal["pending", "delivered", "dead"] = "dead",
                limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict:
    """Messages in one state, oldest first, with their last error."""
    q = (select(OutboxMessage, Job.reference).outerjoin(Job, Job.id == OutboxMessage.job_id)
         .where(OutboxMessage.state == state))
    total = session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state == state))
    rows = session.execute(q.order_by(OutboxMessage.id).limit(limit).offset(offset)).all()
    return {"total": total, "items": [_view(m, ref) for m, ref in rows]}


@router.post("/outbox/{message_id}/retry", summary="Send a failed delivery again")
def retry_message(message_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep, who: Supervisor) -> dict:
    """Put a dead or waiting message back in the queue for an immediate attempt."""
    msg = session.scalars(select(OutboxMessage).where(OutboxMessage.id == message_id).with_for_update()).first()
    if msg is None or msg.state == "delivered":
        raise NotFound(f"no undelivered message {message_id}", fields=["message_id"], code="message-not-found")
    retry(session, msg, who)
    session.commit()
    ref = session.scalar(select(Job.reference).where(Job.id == msg.job_id)) if msg.job_id else None
    return _view(msg, ref)
