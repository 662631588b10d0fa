"""What each outbox destination means: dispatch a new job, or talk to a contractor through its adapter."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from contractors import ContractorError, ContractorNote, WorkOrder, get_adapter
from server.dispatch.models import Contractor
from server.jobs.models import Job
from server.jobs.service import append_event
from server.jobs.transitions import move
from server.outbox.models import OutboxMessage
from server.outbox.worker import WORKER, DeliveryError, handles


def _locked_job(session: Session, msg: OutboxMessage) -> Job | None:
    # Locking the job makes a contractor's first update wait until we have recorded its reference.
    return session.scalars(select(Job).where(Job.id == msg.job_id).with_for_update()).first()


@handles("dispatch")
def dispatch(session: Session, msg: OutboxMessage) -> dict | None:
    """Decide who does a new job (crew, contractor or the supervisor's queue)."""
    from server.dispatch.service import dispatch_job

    job = _locked_job(session, msg)
    if job is None:
        raise DeliveryError(f"job {msg.payload.get('job')} no longer exists", retryable=False)
    return dispatch_job(session, job)


def contractor_for(session: Session, destination: str) -> Contractor:
    """The contractor a `contractor:NAME` destination names."""
    name = destination.split(":", 1)[1]
    c = session.scalar(select(Contractor).where(Contractor.name == name))
    if c is None:
        raise DeliveryError(f"no contractor named {name!r}", retryable=False)
    return c


# Keys of a contractor's config that are ours (how we talk to it), not the adapter's.
SERVER_KEYS = frozenset({"poll"})


def adapter_for(contractor: Contractor):
    """The contractor's adapter instance (validated once per config)."""
    config = {k: v for k, v in (contractor.config or {}).items() if k not in SERVER_KEYS}
    try:
        return get_adapter(contractor.adapter, config)
    except ValueError as exc:
        raise DeliveryError(f"contractor {contractor.name!r} is misconfigured: {exc}", retryable=False) from exc


def _translate(exc: ContractorError) -> DeliveryError:
    return DeliveryError(str(exc), retryable=exc.retryable, retry_after=exc.retry_after)


@handles("contractor")
def contractor(session: Session, msg: OutboxMessage) -> dict | None:
    """Submit or cancel a work order; a submitted job becomes `sent` with the contractor's reference."""
    c = contractor_for(session, msg.destination)
    adapter = adapter_for(c)
    job = _locked_job(session, msg)
    if msg.topic == "order.cancel":
        try:
            adapter.cancel(msg.payload["contractor_ref"], msg.payload.get("reason", "cancelled by the council"))
        except ContractorError as exc:
            raise _translate(exc) from exc
        if job is not None:
            append_event(session, job, "order_cancelled", WORKER, data={"contractor": c.name,
                                                                        "contractor_ref": msg.payload["contractor_ref"]})
        return None
    if msg.topic == "order.note":
        return _note(session, c, adapter, job, msg)
    if msg.topic != "order.submit":
        raise DeliveryError(f"unknown topic {msg.topic!r} for a contractor", retryable=False)
    if job is None:
        raise DeliveryError("the job no longer exists", retryable=False)
    if job.contractor_id != c.id or job.status not in ("new", "sent", "accepted", "scheduled", "in_progress",
                                                        "on_hold"):
        # Reassigned or closed while the order waited: sending it now would be wrong.
        append_event(session, job, "order_skipped", WORKER, data={"contractor": c.name, "status": job.status})
        return None
    try:
        result = adapter.submit(WorkOrder.from_dict(msg.payload))
    except ContractorError as exc:
        raise _translate(exc) from exc
    job.contractor_ref = result.contractor_ref
    append_event(session, job, "order_delivered", WORKER, data={
        "contractor": c.name, "contractor_ref": result.contractor_ref, "attempt": msg.attempts,
        "already_existed": result.already_existed, "idempotency_key": msg.idempotency_key})
    if job.status == "new":
        job.queue_reason = None
        move(session, job, "sent", WORKER, data={"contractor": c.name, "contractor_ref": result.contractor_ref})
    return {"contractor_ref": result.contractor_ref}


def _note(session: Session, c: Contractor, adapter, job: Job | None, msg: OutboxMessage) -> dict | None:
    """Pass a resident's comment (an Open311 citizen update) to the contractor holding the job."""
    if job is None or job.contractor_id != c.id:
        return None  # reassigned meanwhile: the new holder reads it on the timeline
    if not job.contractor_ref:
        raise DeliveryError("the order has not been delivered yet; the comment follows it", retryable=True)
    try:
        taken = adapter.add_note(job.contractor_ref, ContractorNote(
            update_id=msg.payload["update_id"], text=msg.payload.get("note") or "",
            media_urls=tuple(msg.payload.get("media_url") or ())))
    except ContractorError as exc:
        raise _translate(exc) from exc
    append_event(session, job, "note_forwarded" if taken else "note_not_forwarded", WORKER, notify=False,
                 data={"contractor": c.name, "update_id": msg.payload["update_id"]})
    return {"forwarded": taken}
