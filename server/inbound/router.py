"""The contractor API (their jobs, their updates) and signed contractor webhooks."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from contractors import PayloadError, SignatureError, StatusUpdate
from server.datetimes import IsoDatetime
from server.deps import Principal, SessionDep, require
from server.dispatch.models import Contractor
from server.errors import DomainError, Forbidden, NotFound
from server.inbound.service import InboundResult, record_and_apply
from server.jobs import rules
from server.jobs.access import job_or_404, visible
from server.jobs.models import Job
from server.jobs.views import summary_row, summary_select
from server.outbox.handlers import adapter_for

router = APIRouter(prefix="/api/v1", tags=["contractors"])
ContractorUser = Annotated[Principal, require("contractor")]
PROBLEM = {"content": {"application/problem+json": {}}}


class ContractorUpdateIn(BaseModel):
    """One update from a contractor about one of its jobs."""

    model_config = ConfigDict(extra="forbid")

    update_id: str = Field(min_length=1, max_length=200, pattern=r"^[\w.:\-/]+$")
    status: Literal["accepted", "rejected", "scheduled", "in_progress", "on_hold", "completed"]
    contractor_ref: str | None = Field(None, min_length=1, max_length=100)
    occurred_at: IsoDatetime | None = None
    reason: str | None = Field(None, max_length=1000)
    notes: str | None = Field(None, max_length=4000)
    scheduled_for: IsoDatetime | None = None
    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)
    photo_url: AnyHttpUrl | None = None

    @model_validator(mode="after")
    def _evidence(self) -> "ContractorUpdateIn":
        need = {"rejected": ["reason"], "on_hold": ["reason"], "scheduled": ["scheduled_for"],
                "completed": ["notes", "lat", "lon", "photo_url"]}.get(self.status, [])
        missing = [f for f in need if getattr(self, f) in (None, "")]
        if missing:
            raise ValueError(f"a {self.status} update needs {', '.join(missing)}")
        return self


def _http(res: InboundResult) -> JSONResponse:
    if res.status_code >= 400:
        codes = {"conflict": "idempotency-conflict", "unknown_job": "job-not-found", "job_closed": "job-closed",
                 "missing_evidence": "missing-evidence", "unmapped": "unknown-status"}
        raise DomainError(res.detail or res.result, code=codes.get(res.result, res.result), status=res.status_code,
                          fields=["update_id"] if res.result == "conflict" else ["status"])
    return JSONResponse(res.to_dict() | {"status": res.job.status if res.job else None}, status_code=res.status_code)


@router.get("/contractor/jobs", summary="Your jobs (contractor tokens)")
def my_contractor_jobs(session: SessionDep, who: ContractorUser,
                       status: Annotated[list[str] | None, Query()] = None,
                       changed_since: IsoDatetime | None = Query(None, description="ISO 8601 with offset"),
                       limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict:
    """Jobs held by the caller's contractor, most recently changed first."""
    q = summary_select().where(visible(who))
    if status:
        bad = [s for s in status if s not in rules.STATUSES]
        if bad:
            raise DomainError(f"unknown status {bad[0]!r}", fields=["status"], code="invalid-status", status=422)
        q = q.where(Job.status.in_(status))
    if changed_since:
        if changed_since.tzinfo is None:
            raise DomainError("changed_since needs a UTC offset", fields=["changed_since"], code="validation-error",
                              status=422)
        q = q.where(Job.updated_at > changed_since)
    rows = session.execute(q.order_by(Job.updated_at.desc(), Job.id.desc()).limit(limit).offset(offset)).all()
    return {"items": [summary_row(r) for r in rows], "limit": limit, "offset": offset}


@router.post("/contractor/jobs/{reference}/updates", summary="Report progress on one of your jobs",
             responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM})
def post_update(reference: str, body: ContractorUpdateIn, session: SessionDep, who: ContractorUser):
    """Accept, reject, schedule, start, hold or complete a job; idempotent per update_id."""
    if who.contractor_id is None:  # an admin passes require("contractor") but speaks for no contractor
        raise Forbidden("only a contractor's token may post that contractor's updates", fields=["Authorization"])
    job = job_or_404(session, who, reference)
    contractor = session.get(Contractor, who.contractor_id)
    update = StatusUpdate(
        update_id=body.update_id, contractor_ref=body.contractor_ref or job.contractor_ref or job.reference,
        status=body.status, contractor_status=body.status, job_reference=job.reference,
        occurred_at=body.occurred_at or datetime.now(timezone.utc), note=body.notes or body.reason,
        scheduled_for=body.scheduled_for, lat=body.lat, lon=body.lon,
        photo_url=str(body.photo_url) if body.photo_url else None, raw=body.model_dump(mode="json"))
    res = record_and_apply(session, contractor, update, source="api")
    response = _http(res)
    session.commit()
    return response


async def _raw_body(request: Request) -> bytes:
    """The request body as sent (the signature covers these exact bytes), read on the event loop."""
    return await request.body()


@router.post("/contractors/{name}/webhook", summary="Signed webhook from a contractor's system",
             responses={401: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def contractor_webhook(name: str, request: Request, session: SessionDep,
                       body: Annotated[bytes, Depends(_raw_body)]):
    """Verify the signature with the contractor's secret, then apply each update through the one path."""
    # A plain def on purpose: FastAPI runs it in the thread pool, so its (blocking) database work never
    # stalls the event loop — with a slow or stalled database, an async def here froze every request.
    contractor = session.scalar(select(Contractor).where(Contractor.name == name, Contractor.active.is_(True)))
    if contractor is None:
        raise NotFound(f"no contractor named {name!r}", fields=["name"], code="unknown-contractor")
    adapter = adapter_for(contractor)
    try:
        updates = adapter.parse_webhook(dict(request.headers), body)
    except SignatureError as exc:
        raise DomainError(f"signature check failed: {exc.reason}", fields=["X-Kerbside-Signature"],
                          code="invalid-signature", status=401) from None
    except PayloadError as exc:
        raise DomainError(str(exc), fields=["body"], code="invalid-payload", status=422) from None
    results = []
    for update in updates:
        try:
            with session.begin_nested():
                res = record_and_apply(session, contractor, update, source="webhook")
        except DomainError as exc:
            res = InboundResult("invalid_transition", 409, None, exc.detail)
        results.append({"update_id": update.update_id, **res.to_dict()})
    session.commit()
    # An update for a job we cannot find yet is not recorded: ask the sender to try again later.
    status = 404 if any(r["result"] == "unknown_job" for r in results) else 200
    return JSONResponse({"results": results}, status_code=status)
