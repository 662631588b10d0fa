"""Crew and supervisor endpoints: my jobs, status changes, job photos, the dispatch queue, overdue jobs.

Include this router before the jobs router: `/jobs/overdue` must not be read as a job reference.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import case, false, or_, select

from server.config import get_settings
from server.deps import Principal, SessionDep, require
from server.dispatch import service
from server.dispatch.crew import StatusIn, change_status
from server.jobs import rules
from server.jobs.access import job_or_404
from server.jobs.models import Job
from server.jobs.service import iso
from server.jobs.views import count, job_summary, summary_row, summary_select
from server.reports import photos

router = APIRouter(prefix="/api/v1", tags=["dispatch"])
PROBLEM = {"content": {"application/problem+json": {}}}
Crew = Annotated[Principal, require("crew")]
Worker = Annotated[Principal, require("crew", "supervisor")]
Supervisor = Annotated[Principal, require("supervisor")]
Watcher = Annotated[Principal, require("supervisor", "advisor")]


@router.get("/me/jobs", summary="Jobs of my crew: open first, soonest due first")
def my_jobs(session: SessionDep, who: Crew, open_only: bool = Query(False),
            limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0, le=100_000)) -> dict:
    """The calling crew's jobs, with the moves a crew may make on each."""
    q = summary_select().where(Job.crew_id == who.crew_id if who.crew_id else false())
    if open_only:
        q = q.where(Job.status.in_(rules.OPEN_STATUSES))
    is_open = case((Job.status.in_(rules.OPEN_STATUSES), 0), else_=1)
    rows = session.execute(q.order_by(is_open, Job.due_at.asc().nulls_last(), Job.id)
                           .limit(limit).offset(offset)).all()
    items = [{**summary_row(r), "actions": rules.allowed_targets(r.Job.status, "crew"), "flags": r.Job.flags}
             for r in rows]
    return {"total": count(session, q), "limit": limit, "offset": offset, "items": items}


@router.post("/jobs/{reference}/status", summary="Move a job (crews: accept, start, hold, complete)",
             responses={200: {"description": "the job after the move (or the original answer to a retry)"},
                        404: PROBLEM, 409: PROBLEM, 422: PROBLEM})
def post_status(reference: str, body: StatusIn, session: SessionDep, who: Worker):
    """Crews move their own jobs; supervisors may make any move. Completion by a crew needs photo + GPS.

    A job that leaves a crew's day (completed, held, cancelled…) re-plans the rest of today, if planned.
    """
    status, answer = change_status(session, who, reference, body)
    if status < 400 and body.status not in ("assigned", "accepted", "in_progress"):
        from server.planning.service import after_job_moved

        job_id = session.scalar(select(Job.id).where(Job.reference == reference))
        if job_id is not None:
            after_job_moved(session, job_id, who)
    return JSONResponse(answer, status_code=status)


@router.post("/jobs/{reference}/photos", status_code=201, summary="Add a photo to a job (e.g. completion)",
             responses={200: {"description": "a retry: the photo already stored"}, 404: PROBLEM, 409: PROBLEM,
                        413: PROBLEM, 422: PROBLEM})
def post_job_photo(reference: str, session: SessionDep, who: Worker, file: UploadFile = File(...),
                   client_id: uuid.UUID = Form(...),
                   kind: Literal["completion", "progress"] = Form("completion")):
    """Upload a JPEG or PNG for a job the caller works on (multipart `file`, `client_id`, `kind`)."""
    # A plain def (thread pool): its database work and image processing never stall the event loop.
    job = job_or_404(session, who, reference)
    raw = file.file.read(get_settings().max_photo_bytes + 1)
    status, photo = photos.add_job_photo(session, who, job, client_id, raw, kind)
    return JSONResponse(photos.photo_view(photo), status_code=status)


class AssignIn(BaseModel):
    """Give a job to a named crew or contractor."""

    model_config = ConfigDict(extra="forbid")
    crew: str | None = Field(None, max_length=100)
    contractor: str | None = Field(None, max_length=100)
    note: str | None = Field(None, max_length=2000)


class RedispatchIn(BaseModel):
    """Run dispatch again."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=2000)


def _commit_answer(session, job, answer: dict) -> dict:
    session.commit()
    return {**answer, "job": job_summary(session, job)}


@router.post("/jobs/{reference}/assign", summary="Supervisor: give the job to a crew or contractor",
             responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM})
def post_assign(reference: str, body: AssignIn, session: SessionDep, who: Supervisor) -> dict:
    """Assign whatever the rules say (warnings when the crew is off shift, out of zone or full)."""
    job = job_or_404(session, who, reference, for_update=True)
    try:
        answer = service.assign(session, job, who, crew=body.crew, contractor=body.contractor, note=body.note)
    except Exception:
        session.rollback()
        raise
    return _commit_answer(session, job, answer)


@router.post("/jobs/{reference}/redispatch", summary="Supervisor: run dispatch again for a job",
             responses={404: PROBLEM, 409: PROBLEM})
def post_redispatch(reference: str, session: SessionDep, who: Supervisor, body: RedispatchIn | None = None) -> dict:
    """Take the job out of triage / back from an unaccepted crew, and queue a fresh dispatch."""
    job = job_or_404(session, who, reference, for_update=True)
    try:
        answer = service.redispatch(session, job, who, note=body.note if body else None)
    except Exception:
        session.rollback()
        raise
    return _commit_answer(session, job, answer)


@router.get("/dispatch/queue", summary="Jobs waiting for a supervisor (triage, or no one to send them to)")
def dispatch_queue(session: SessionDep, who: Watcher, limit: int = Query(100, ge=1, le=500),
                   offset: int = Query(0, ge=0, le=100_000)) -> dict:
    """Open jobs in triage or with a queue reason, soonest due first."""
    q = summary_select().where(Job.status.in_(rules.OPEN_STATUSES),
                               or_(Job.status == "triage", Job.queue_reason.is_not(None)))
    rows = session.execute(q.order_by(Job.due_at.asc().nulls_last(), Job.id).limit(limit).offset(offset)).all()
    items = [{**summary_row(r), "queue_reason": r.Job.queue_reason} for r in rows]
    return {"total": count(session, q), "limit": limit, "offset": offset, "items": items}


@router.get("/jobs/overdue", summary="Open jobs past their due time, most overdue first")
def overdue(session: SessionDep, who: Watcher, limit: int = Query(100, ge=1, le=500),
            offset: int = Query(0, ge=0, le=100_000)) -> dict:
    """The supervisor's overdue list (jobs on hold are not overdue: their clock is stopped)."""
    now = datetime.now(timezone.utc)
    q = summary_select().where(Job.status.in_([s for s in rules.OPEN_STATUSES if s != "on_hold"]),
                               Job.due_at < now)
    rows = session.execute(q.order_by(Job.due_at.asc(), Job.id).limit(limit).offset(offset)).all()
    items = [{**summary_row(r), "overdue_seconds": int((now - r.Job.due_at).total_seconds()),
              "breached_at": iso(r.Job.breached_at), "flags": r.Job.flags} for r in rows]
    return {"total": count(session, q), "limit": limit, "offset": offset, "items": items}
