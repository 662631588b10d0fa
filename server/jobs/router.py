"""Reading jobs: the list with filters and one job with its timeline."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, or_, select
from starlette.concurrency import run_in_threadpool

from server.areas.models import Area
from server.auth.models import ROLES
from server.deps import Caller, CurrentUser, SessionDep, authenticated_in_handler
from server.errors import DomainError
from server.geo import WGS84
from server.jobs import page, rules
from server.jobs.access import visible
from server.jobs.models import Job
from server.jobs.views import jobs_named_by, summary_row, summary_select
from server.dispatch.models import Contractor, Crew

router = APIRouter(prefix="/api/v1", tags=["jobs"])


def _bbox(raw: str):
    try:
        minx, miny, maxx, maxy = (float(v) for v in raw.split(","))
    except ValueError:
        raise DomainError("bbox is minLon,minLat,maxLon,maxLat", fields=["bbox"], code="invalid-bbox",
                          status=422) from None
    if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
        raise DomainError("bbox corners are out of range or in the wrong order", fields=["bbox"],
                          code="invalid-bbox", status=422)
    env = func.ST_Transform(func.ST_MakeEnvelope(minx, miny, maxx, maxy, WGS84), Job.geom.type.srid)
    return func.ST_Intersects(Job.geom, env)


@router.get("/jobs", summary="Jobs, filtered and paginated")
def list_jobs(
    session: SessionDep, who: CurrentUser,
    status: Annotated[list[str] | None, Query(description="one or more statuses; 'open' for all open")] = None,
    category: str | None = None, ward: str | None = None,
    assignee: str | None = Query(None, description="crew or contractor name; 'none' for unassigned"),
    bbox: str | None = Query(None, description="minLon,minLat,maxLon,maxLat"),
    q: str | None = Query(None, max_length=100, description="job or report reference, asset ref, or street"),
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000),
) -> dict:
    """Jobs the caller may see, newest first."""
    query = summary_select().where(visible(who))
    if status:
        wanted = set()
        for s in status:
            if s == "open":
                wanted |= set(rules.OPEN_STATUSES)
            elif s in rules.STATUSES:
                wanted.add(s)
            else:
                raise DomainError(f"unknown status {s!r}", fields=["status"], code="invalid-status", status=422)
        query = query.where(Job.status.in_(sorted(wanted)))
    if category:
        query = query.where(Job.category_code == category)
    if ward:
        query = query.where(Area.name.ilike(ward))
    if assignee:
        if assignee == "none":
            query = query.where(Job.crew_id.is_(None), Job.contractor_id.is_(None))
        else:
            query = query.where(or_(Crew.name == assignee, Contractor.name == assignee))
    if bbox:
        query = query.where(_bbox(bbox))
    if q:
        query = query.where(Job.id.in_(jobs_named_by(q.strip(), exact=True)))
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.execute(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)).all()
    return {"total": total, "limit": limit, "offset": offset, "items": [summary_row(r) for r in rows]}


@router.get("/jobs/{reference}", summary="One job with timeline, reports, photos and SLA", response_model=dict,
            dependencies=[authenticated_in_handler()])
async def get_job(reference: str, request: Request, session: SessionDep) -> Response:
    """The whole story of one job (404 if it does not exist or is not the caller's to see)."""
    # Any role may ask (what it sees is filtered). The token is looked up in the page's one statement (jobs.page).
    # A running API answers on its async pool (job_page_on_pool, below); here: a request with a query string,
    # or an app run without its lifespan or whose sessions are overridden (the test suite's), on a connection
    # of the session's engine, without beginning the session.
    caller = Caller.from_request(request, ROLES)
    body = await run_in_threadpool(page.job_page_json, session, caller, reference)
    return Response(body, media_type="application/json")


async def job_page_on_pool(request: Request, pool) -> Response:
    """GET /api/v1/jobs/{reference} on the API's async pool (server/poolroute.py): no thread, no ORM."""
    caller = Caller.from_request(request, ROLES)
    body = await page.job_page_json_async(pool, caller, request.path_params["reference"])
    return Response(body, media_type="application/json")
