"""Report intake and photos over HTTP (thin: the use cases live in service.py and photos.py)."""
from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi import Path as FastPath
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import select

from server.config import get_settings
from starlette.concurrency import run_in_threadpool

from server.deps import (Caller, CurrentUser, Principal, SessionDep, authenticate, authenticated_in_handler,
                         require)
from server.errors import json_body, validated
from server.errors import DomainError, NotFound
from server.jobs.access import SEE_ALL, visible
from server.jobs.models import Job
from server.reports import photos, service
from server.reports.models import Photo, Report
from server.reports.schemas import ReportIn, ReportOut

router = APIRouter(prefix="/api/v1", tags=["reports"])
REPORTERS = ("field_worker", "crew", "advisor", "supervisor")
PROBLEM = {"content": {"application/problem+json": {}}}
BIGINT_MAX = 2**63 - 1  # photo ids are bigint: a larger number is a 422, not a database error


def channel_for(p: Principal) -> str:
    """Which channel a report arrived by, from who sent it."""
    return "contact_centre" if p.role in ("advisor", "supervisor") else "field_app"


@router.post("/reports", status_code=201, response_model=ReportOut, summary="Report a fault",
             responses={200: {"model": ReportOut, "description": "a retry: the original answer"},
                        409: PROBLEM, 422: PROBLEM},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/ReportIn"}}}}},
             dependencies=[authenticated_in_handler(*REPORTERS)])
async def create_report(request: Request, session: SessionDep):
    """Take a report: snap it to an asset, attach it to an open job or open one with an SLA clock."""
    # A report that create_report_on_pool (below, server/poolroute.py) did not take: a body that fails
    # validation (whose token and role are judged first, as FastAPI would), an attach that needs the ORM's
    # follow-ups, a request with a query string, an app run without its lifespan or whose sessions are
    # overridden (the test suite's rollback-per-test). The same use case, on the request's session, through
    # the thread pool.
    payload = json_body(request, await request.body())
    status, answer = await run_in_threadpool(_create_report, request, session, payload)
    return FastJSONResponse(answer, status_code=status)


async def create_report_on_pool(request: Request, pool) -> Response | None:
    """POST /api/v1/reports on the API's async pool (server/poolroute.py): a valid body goes to the intake
    there (server/reports/service.py submit_report_async), the token check riding on its first statement, no
    thread and no ORM. None for what create_report takes instead (see there)."""
    payload = json_body(request, await request.body())
    try:
        data = validated(ReportIn, payload)
    except RequestValidationError:
        return None
    done = await service.submit_report_async(pool, Caller.from_request(request, REPORTERS), data, channel_for,
                                             getattr(request.app.state, "intake_batcher", None))
    return None if done is None else FastJSONResponse(done[1], status_code=done[0])


class FastJSONResponse(JSONResponse):
    """JSONResponse with orjson's encoder (the same compact UTF-8 JSON, several times faster)."""

    def render(self, content) -> bytes:
        return orjson.dumps(content)


def _create_report(request: Request, session, payload) -> tuple[int, dict]:
    try:
        data = validated(ReportIn, payload)
    except RequestValidationError:
        authenticate(request, session, REPORTERS)  # the token and the role are judged before the fields
        raise
    # A valid body: the token is looked up in the intake's first statement and judged before anything else.
    return service.submit_report(session, Caller.from_request(request, REPORTERS), data, channel_for)


def _report_or_404(session, who: Principal, reference: str) -> Report:
    q = select(Report).join(Job, Job.id == Report.job_id).where(Report.reference == reference, visible(who))
    if who.role == "field_worker":
        q = q.where(Report.token_id == who.token_id)
    report = session.scalars(q).first()
    if report is None:
        raise NotFound(f"no report {reference!r}", fields=["reference"], code="report-not-found")
    return report


@router.get("/reports/{reference}", summary="A report as first answered, with its job's current state")
def get_report(reference: str, session: SessionDep, who: CurrentUser) -> dict:
    """The original answer to this report plus the job's current status and due date."""
    from server.jobs.views import job_summary

    report = _report_or_404(session, who, reference)
    job = session.get(Job, report.job_id)
    return {**service.with_words(report.response), "job_now": job_summary(session, job)}


@router.post("/reports/{reference}/photos", status_code=201, summary="Add a photo to a report",
             responses={200: {"description": "a retry: the photo already stored"}, 409: PROBLEM, 413: PROBLEM,
                        422: PROBLEM})
def add_photo(reference: str, session: SessionDep, who: Annotated[Principal, require(*REPORTERS)],
              file: UploadFile = File(...), client_id: uuid.UUID = Form(...)):
    """Upload a JPEG or PNG (multipart `file`, `client_id`); idempotent per photo client_id."""
    # A plain def: FastAPI runs it in the thread pool, so the database work and the image processing never
    # stall the event loop (and with it every other request) — the upload is already spooled by then.
    report = _report_or_404(session, who, reference)
    if who.role not in SEE_ALL and report.token_id != who.token_id:
        raise NotFound(f"no report {reference!r}", fields=["reference"], code="report-not-found")
    raw = file.file.read(get_settings().max_photo_bytes + 1)
    status, photo = photos.add_photo(session, who, report, client_id, raw)
    return JSONResponse(photos.photo_view(photo), status_code=status)


@router.get("/photos/{photo_id}", summary="A stored photo (or its thumbnail)", response_class=FileResponse)
def get_photo(photo_id: Annotated[int, FastPath(ge=1, le=BIGINT_MAX)], session: SessionDep, who: CurrentUser, thumbnail: bool = Query(False)):
    """The metadata-free copy of a photo, to whoever may see its job."""
    photo = session.scalars(select(Photo).join(Job, Job.id == Photo.job_id)
                            .where(Photo.id == photo_id, visible(who))).first()
    if photo is None:
        raise NotFound(f"no photo {photo_id}", fields=["photo_id"], code="photo-not-found")
    path = get_settings().photo_root / (photo.thumb_path if thumbnail else photo.path)
    if not path.is_file():
        raise DomainError("the photo file is missing from storage", code="photo-missing", status=410)
    return FileResponse(path, media_type=photo.content_type, headers={"Cache-Control": "private, max-age=3600"})
