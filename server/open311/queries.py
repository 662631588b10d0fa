"""Reading service requests and their updates for GeoReport v2 (public: no reporter details leave here).

service_request_id is the *report* reference (R-000123): one id per POSTed request, as FixMyStreet
expects, even when several reports were joined to one job. Each request reads its job's state.
Updates come from the job timeline: every status change of the job after the report arrived is an
update of that report, `update_id` "<event id>-<report reference>".
"""
from __future__ import annotations

import hmac
import uuid
from datetime import datetime, timezone

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from server import events
from server.areas.models import Area
from server.catalogue.models import Category
from server.config import get_settings
from server.dispatch.models import Contractor, Crew
from server.jobs import rules, sla
from server.jobs.models import Job, JobEvent
from server.open311 import documents
from server.open311.params import Open311Error
from server.reports.models import Photo, Report

MAX_ROWS = 1000


def _select():
    return (
        select(Report.reference, Report.description, Report.received_at, Report.lat, Report.lon,
               Report.reporter["media_url"].label("media_url"), Report.reporter["address_id"].astext.label("address_id"),
               Report.id.label("report_id"), Report.channel, Job.id.label("job_id"), Job.reference.label("job"),
               Job.status, Job.category_code, Job.street, Job.due_at, Job.updated_at,
               Category.name.label("service_name"), Area.name.label("ward"),
               Contractor.title.label("contractor"), Crew.title.label("crew"))
        .join(Job, Job.id == Report.job_id).join(Category, Category.code == Job.category_code)
        .outerjoin(Area, Area.id == Job.ward_id).outerjoin(Contractor, Contractor.id == Job.contractor_id)
        .outerjoin(Crew, Crew.id == Job.crew_id)
    )


def notice(job_reference: str, status: str, due: datetime | None, now: datetime, assignee: str | None) -> str:
    """What is expected to happen, in words: the job and its target date while it is open."""
    if status in rules.OPEN_STATUSES and due is not None:
        return f"Job {job_reference}; target: {sla.describe_due(due, now, get_settings().timezone)}"
    return f"Job {job_reference}; {rules.describe_status(status, assignee).lower()}"


def media_key(photo_id: int, sha256: str) -> str:
    """The public name of an uploaded photo: its id and enough of its hash that names cannot be guessed."""
    return f"{photo_id}-{sha256[:32]}"


def _uploads(session: Session, rows) -> dict[int, list[str]]:
    """Report id → the public URLs of the photos uploaded with it through Open311 (other channels' stay private)."""
    wanted = {r.report_id: r.job_id for r in rows if r.channel == "open311"}
    if not wanted:
        return {}
    base = get_settings().public_base_url.rstrip("/") + "/open311/v2/media/"
    out: dict[int, list[str]] = {}
    for p in session.execute(select(Photo.id, Photo.report_id, Photo.sha256, Photo.content_type)
                             .where(Photo.job_id.in_(set(wanted.values())), Photo.report_id.in_(list(wanted)))
                             .order_by(Photo.id)):
        ext = "png" if p.content_type == "image/png" else "jpg"
        out.setdefault(p.report_id, []).append(f"{base}{media_key(p.id, p.sha256)}.{ext}")
    return out


def _media(value) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _row(r, now: datetime, uploads: dict[int, list[str]]) -> dict:
    assignee = r.contractor or r.crew
    return documents.request_row(
        reference=r.reference, status=rules.open311_status(r.status),
        status_notes=rules.describe_status(r.status, assignee), service_name=r.service_name,
        service_code=r.category_code, description=r.description or "",
        agency=r.contractor or get_settings().council_name, notice=notice(r.job, r.status, r.due_at, now, assignee),
        requested=r.received_at, updated=r.updated_at, expected=r.due_at,
        address=", ".join(p for p in (r.street, r.ward) if p), lat=r.lat, lon=r.lon,
        media_urls=[*_media(r.media_url), *uploads.get(r.report_id, [])], address_id=r.address_id or "",
    )


def find_requests(session: Session, *, ids: list[str], codes: list[str], statuses: list[str],
                  start: datetime, end: datetime) -> list[dict]:
    """GET requests: ids override every other filter; otherwise code, status and requested window."""
    q = _select()
    if ids:
        q = q.where(Report.reference.in_([i.upper() for i in ids]))
    else:
        received = func.date_trunc("second", Report.received_at)
        q = q.where(received >= start, received <= end)
        if codes:
            q = q.where(Job.category_code.in_(codes))
        if statuses == ["open"]:
            q = q.where(Job.status.in_(rules.OPEN_STATUSES))
        elif statuses == ["closed"]:
            q = q.where(Job.status.not_in(rules.OPEN_STATUSES))
    rows = session.execute(q.order_by(Report.received_at.desc(), Report.id.desc()).limit(MAX_ROWS)).all()
    now = datetime.now(timezone.utc)
    uploads = _uploads(session, rows)
    return [_row(r, now, uploads) for r in rows]


def one_request(session: Session, service_request_id: str) -> dict:
    """GET requests/{id}, or 404."""
    row = session.execute(_select().where(Report.reference == service_request_id.upper())).first()
    if row is None:
        raise Open311Error(404, f"service_request_id {service_request_id[:40]!r} not found")
    return _row(row, datetime.now(timezone.utc), _uploads(session, [row]))


def media_file(session: Session, key: str) -> tuple[str, str]:
    """(path under the photo root, content type) of an uploaded Open311 photo by its public name, or 404."""
    photo_id, _, digest = key.partition("-")
    if not photo_id.isdigit() or len(photo_id) > 18 or len(digest) != 32:
        raise Open311Error(404, "no such photo")
    row = session.execute(select(Photo.path, Photo.sha256, Photo.content_type).join(Report, Report.id == Photo.report_id)
                          .where(Photo.id == int(photo_id), Report.channel == "open311")).first()
    if row is None or not hmac.compare_digest(row.sha256[:32], digest):
        raise Open311Error(404, "no such photo")
    return row.path, row.content_type


def token_request(session: Session, token: str) -> str:
    """GET tokens/{token}: our tokens are the reports' client_id UUIDs; the request id, or 404."""
    try:
        client_id = uuid.UUID(token)
    except ValueError:
        raise Open311Error(404, f"token {token[:40]!r} not found") from None
    ref = session.scalar(select(Report.reference).where(Report.client_id == client_id))
    if ref is None:
        raise Open311Error(404, f"token {token[:40]!r} not found")
    return ref


def find_updates(session: Session, start: datetime, end: datetime) -> list[dict]:
    """GET servicerequestupdates: job status changes in the window, one per report then on the job."""
    received = aliased(JobEvent)
    arrived_before = exists(select(received.id).where(
        received.job_id == JobEvent.job_id, received.id < JobEvent.id, received.type == events.REPORT_RECEIVED,
        received.data["report"].astext == Report.reference).correlate(JobEvent, Report))
    at = func.date_trunc("second", JobEvent.at)
    q = (
        select(JobEvent.id, JobEvent.at, JobEvent.after, JobEvent.data, Report.reference,
               Contractor.title.label("contractor"), Crew.title.label("crew"))
        .select_from(JobEvent).join(Report, and_(Report.job_id == JobEvent.job_id, arrived_before))
        .join(Job, Job.id == JobEvent.job_id)
        .outerjoin(Contractor, Contractor.id == Job.contractor_id).outerjoin(Crew, Crew.id == Job.crew_id)
        .where(JobEvent.type == events.STATUS_CHANGED, at >= start, at <= end)
        .order_by(JobEvent.at, JobEvent.id, Report.id).limit(MAX_ROWS)
    )
    out = []
    for r in session.execute(q):
        status = (r.after or {}).get("status")
        if status not in rules.STATUSES:
            continue
        out.append(documents.update_row(
            update_id=f"{r.id}-{r.reference}", service_request_id=r.reference,
            status=rules.extended_status(status, (r.data or {}).get("reason")), updated=r.at,
            description=rules.describe_status(status, r.contractor or r.crew), external_status_code=status))
    return out
