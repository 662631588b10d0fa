"""POST servicerequestupdates from a front end (FixMyStreet…): a resident's comment on a request.

The api_key is an `open311_client` token. A citizen update is a `citizen_update` event on the job's
timeline, so advisers, crews (the live stream) and CRM webhooks see it; a trigger (migration 0008)
counts it as a chaser on channel open311. A job held by a contractor gets the comment as an outbox
message (`order.note`), delivered through the contractor's adapter. It never changes the job's status:
the `status` FixMyStreet sends is the state its own site shows and is kept only as data.

Idempotent per (client, update_id): the same update again answers the original update_id; the same
update_id with other content is a 409. The resident's name, email and phone are not kept (the front end
holds them); only whether some were given.
"""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor, Crew
from server.jobs import rules
from server.jobs.models import Job, JobEvent
from server.jobs.service import append_event
from server.open311 import documents
from server.open311.params import Open311Error, bad, media_urls, one, required, update_header
from server.outbox.service import enqueue
from server.reports.models import Report

EVENT = "citizen_update"
CITIZEN_FIELDS = ("email", "first_name", "last_name", "phone")
# What FixMyStreet sends as `status` for a comment (extended_statuses on or off), kept as data only.
STATUSES = ("open", "closed", "fixed", "in_progress", "action_scheduled", "investigating", "duplicate",
            "not_councils_responsibility", "no_further_action", "internal_referral", "for_triage", "reopen",
            "cancelled")
NOTE_MAX = 4000


def _job_and_report(session: Session, service_request_id: str) -> tuple[Job, str | None]:
    """The job (locked) of a report reference (what POST requests answered) or of a job reference; else 404."""
    ref = service_request_id.strip().upper()[:40]
    job = session.scalars(select(Job).join(Report, Report.job_id == Job.id)
                          .where(Report.reference == ref).with_for_update(of=Job)).first()
    if job is not None:
        return job, ref
    job = session.scalars(select(Job).where(Job.reference == ref).with_for_update()).first()
    if job is None:
        raise Open311Error(404, f"service_request_id {service_request_id[:40]!r} not found")
    return job, None


def _fingerprint(fields: dict[str, list[str]]) -> str:
    kept = {k: v for k, v in sorted(fields.items()) if k not in ("api_key", "jurisdiction_id")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def _earlier(session: Session, job_id: int, client: str, update_id: str):
    return session.execute(
        select(JobEvent.id, JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == EVENT,
                                                 JobEvent.data["client"].astext == client,
                                                 JobEvent.data["update_id"].astext == update_id)).first()


def answer_id(event_id: int) -> str:
    """The update_id we answer (FixMyStreet keeps it as its comment's external id)."""
    return f"C{event_id}"


def post(session: Session, who: Principal, fields: dict[str, list[str]]) -> documents.Document:
    """Record one citizen update (or answer a replay); commits once."""
    update_id, status, occurred = update_header(fields, STATUSES, get_settings().timezone)
    # A blank update (a body with "Permit blank updates": a resident only re-opening or marking fixed) is still
    # a contact about the job; it is taken, never applied.
    note = one(fields, "description") or ""
    photos = media_urls(fields)
    if len(note) > NOTE_MAX:
        raise bad(f"description must be at most {NOTE_MAX} characters")
    request_id = required(fields, "service_request_id")
    digest = _fingerprint(fields)
    client = who.name
    # The job row is locked first: a retry racing its first try waits, then finds it.
    job, report = _job_and_report(session, request_id)
    earlier = _earlier(session, job.id, client, update_id)
    if earlier is not None:
        session.rollback()
        if earlier.data.get("fingerprint") != digest:
            raise Open311Error(409, f"update_id {update_id!r} was already used for a different update")
        return documents.update_accepted(answer_id(earlier.id))
    data = {"client": client, "update_id": update_id, "report": report, "reported_status": status,
            "occurred_at": documents.w3c(occurred), "media_url": photos, "fingerprint": digest,
            "with_contact": any(one(fields, k) for k in CITIZEN_FIELDS)}
    holder = _holder(session, job)
    data["forwarded_to"] = holder
    ev = append_event(session, job, EVENT, who, data=data, note=note or None)
    if holder is not None and holder.startswith("contractor:"):
        enqueue(session, destination=holder, topic="order.note", job=job, key=f"{holder}:note:{ev.id}",
                payload={"job": job.reference, "note": note, "media_url": photos,
                         "update_id": f"kerbside-citizen-{ev.id}", "citizen_update_id": update_id})
    session.commit()
    return documents.update_accepted(answer_id(ev.id))


def _holder(session: Session, job: Job) -> str | None:
    """Who gets the comment: the contractor holding an open job (an outbox message), or its crew (who read it on
    the timeline and the live stream); None for a job nobody holds or that is over."""
    if job.status not in rules.OPEN_STATUSES:
        return None
    if job.contractor_id is not None:
        return "contractor:" + session.scalar(select(Contractor.name).where(Contractor.id == job.contractor_id))
    if job.crew_id is not None:
        return "crew:" + session.scalar(select(Crew.name).where(Crew.id == job.crew_id))
    return None
