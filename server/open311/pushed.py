"""POST servicerequestupdates: a contractor's back office pushes a status, through the one inbound path.

The api_key must be a contractor token; service_request_id is one of our report references (what a
POST requests answered) or a job reference, of a job held by that contractor (else 404). Statuses
are the extension's extended set (upper or lower case), mapped with the Open311 contractor mapping.
A completion (FIXED/CLOSED) needs evidence as every contractor completion does: `media_url` for the
photo and `lat` + `long` for the GPS fix (an addition to the extension's fields).
A repeated update_id is refused (400), as the extension does; nothing is stored for a refused update.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from contractors import StatusUpdate
from contractors.open311.mapping import DEFAULT_STATUS_MAP
from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor
from server.errors import DomainError
from server.inbound.service import record_and_apply
from server.jobs.models import Job
from server.open311 import documents
from server.open311.citizen import CITIZEN_FIELDS
from server.open311.params import Open311Error, bad, coordinate, one, required, update_header
from server.reports.models import Report

# The extension's statuses (FixMyStreet also sends REOPEN and FOR_TRIAGE, which we do not map).
KNOWN = (*DEFAULT_STATUS_MAP, "reopen", "for_triage")
ACCEPTED = ("applied", "stale")


def _job(session: Session, contractor_id: int, service_request_id: str) -> Job:
    ref = service_request_id.strip().upper()
    q = select(Job).where(Job.contractor_id == contractor_id)
    if ref.startswith("J-"):
        q = q.where(Job.reference == ref)
    else:
        q = q.join(Report, Report.job_id == Job.id).where(Report.reference == ref)
    job = session.scalars(q).first()
    if job is None:
        raise Open311Error(404, f"service_request_id {service_request_id[:40]!r} not found")
    return job


def post_update(session: Session, who: Principal, fields: dict[str, list[str]]) -> documents.Document:
    """Record and apply one pushed update; commits when it is applied (or recorded as stale)."""
    if who.role != "contractor" or who.contractor_id is None:
        raise Open311Error(403, "this api_key is not a contractor's; it may not post service request updates")
    if given := [k for k in CITIZEN_FIELDS if one(fields, k)]:
        # A resident's comment relayed with a contractor's key must not move the job as if the contractor acted.
        raise Open311Error(403, f"this update carries a resident's {', '.join(given)}: citizen updates come from "
                                "the front end's own open311_client api_key, not a contractor's")
    update_id, status, occurred = update_header(fields, KNOWN, get_settings().timezone)
    lat, lon = one(fields, "lat"), one(fields, "long")
    if (lat is None) != (lon is None):
        raise bad("lat and long must be sent together")
    job = _job(session, who.contractor_id, required(fields, "service_request_id"))
    raw = {k: v if len(v) > 1 else v[0] for k, v in fields.items() if k != "api_key"}
    update = StatusUpdate(
        update_id=update_id, contractor_ref=job.contractor_ref or job.reference, status=DEFAULT_STATUS_MAP.get(status),
        contractor_status=status, occurred_at=occurred, job_reference=job.reference,
        note=(one(fields, "description") or None), photo_url=one(fields, "media_url"),
        lat=coordinate("lat", lat, 90) if lat else None, lon=coordinate("long", lon, 180) if lon else None, raw=raw)
    contractor = session.get(Contractor, who.contractor_id)
    try:
        with session.begin_nested():
            res = record_and_apply(session, contractor, update, source="open311")
            if res.result not in ACCEPTED:
                raise _Refused(res.result, res.detail)
    except _Refused as exc:  # the savepoint is rolled back: a corrected retry may reuse the update_id
        raise _refusal(exc.result, exc.detail, update_id) from None
    except DomainError as exc:
        raise bad(f"status: {exc.detail}") from None
    session.commit()
    return documents.update_accepted(update_id)


class _Refused(Exception):
    def __init__(self, result: str, detail: str | None):
        super().__init__(result)
        self.result, self.detail = result, detail


def _refusal(result: str, detail: str | None, update_id: str) -> Open311Error:
    if result == "unknown_job":
        return Open311Error(404, detail or "service_request_id not found")
    if result in ("duplicate", "conflict"):
        return bad(f"update_id {update_id!r} has already been received")
    if result == "missing_evidence":
        return bad(f"{detail}: send lat, long and media_url with a FIXED or CLOSED update")
    return bad(detail or result)
