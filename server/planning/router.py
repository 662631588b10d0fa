"""Day-plan endpoints: supervisors plan, re-plan and insert urgent jobs; crews read "Today" and arrive at stops."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from server.deps import Principal, SessionDep, require
from server.dispatch.crew import StatusIn, change_status
from server.errors import NotFound
from server.planning import service
from server.planning.models import DayPlan
from server.planning.views import plan_view, today_view

router = APIRouter(prefix="/api/v1", tags=["day plans"])
PROBLEM = {"content": {"application/problem+json": {}}}
Crew = Annotated[Principal, require("crew")]
Supervisor = Annotated[Principal, require("supervisor")]
Watcher = Annotated[Principal, require("supervisor", "advisor")]


class PlanIn(BaseModel):
    """Plan a day (default: today)."""

    model_config = ConfigDict(extra="forbid")
    day: date | None = Field(None, description="the day to plan (local date); today if omitted")


class ReplanIn(BaseModel):
    """Re-plan the rest of a day (the freeze rule holds)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("re-planned by a supervisor", min_length=1, max_length=200)


class UrgentIn(BaseModel):
    """An urgent job to insert into the best crew's remaining route."""

    model_config = ConfigDict(extra="forbid")
    job: str = Field(min_length=1, max_length=32, description="the job's reference")


class CompleteIn(BaseModel):
    """Completion evidence (as for POST jobs/{reference}/status, without the status)."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=2000)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)
    photo_ids: list[int] = Field(default_factory=list, max_length=20)
    client_id: uuid.UUID | None = Field(None, description="idempotency key from the device")


def _guarded(session, fn, *args, **kwargs):
    try:
        return fn(session, *args, **kwargs)
    except Exception:
        session.rollback()  # nothing of a refused or failed plan stays written
        raise


@router.post("/plans", status_code=201, summary="Supervisor: plan a day for every crew (a new version)",
             responses={409: PROBLEM, 422: PROBLEM})
def post_plan(session: SessionDep, who: Supervisor, body: PlanIn | None = None) -> dict:
    """Routes for all crews over their open jobs (VROOM on pgRouting travel times); the left-out jobs are queued."""
    day = (body.day if body else None) or service.local_today(datetime.now(timezone.utc))
    return plan_view(session, _guarded(session, service.plan_day, who, day))


@router.get("/plans/{day}", summary="Supervisor: a day's plan (current version, or ?version=N)",
            responses={404: PROBLEM})
def get_plan(day: date, session: SessionDep, who: Watcher,
             version: int | None = Query(None, ge=1, le=1_000_000),
             paths: bool = Query(False, description="add each route's roads as GeoJSON (`path`)")) -> dict:
    """Each crew's ordered stops with times, totals, and the jobs left out with the reason."""
    q = select(DayPlan).where(DayPlan.day == day)
    plan = session.scalar(q.where(DayPlan.version == version) if version else q.where(DayPlan.current))
    if plan is None:
        raise NotFound(f"no plan for {day}" + (f" version {version}" if version else ""), fields=["day"])
    return plan_view(session, plan, paths=paths)


@router.post("/plans/{day}/replan", summary="Supervisor: re-plan the rest of the day (started and next stops stay)",
             responses={409: PROBLEM, 422: PROBLEM})
def post_replan(day: date, session: SessionDep, who: Supervisor, body: ReplanIn | None = None) -> dict:
    """A new version from where each crew is; a crew's order changes only when needed or clearly better."""
    reason = body.reason if body else ReplanIn().reason
    return plan_view(session, _guarded(session, service.replan, who, day, reason=reason))


@router.post("/plans/{day}/urgent", summary="Supervisor: insert an urgent job into the best crew's route",
             responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM})
def post_urgent(day: date, body: UrgentIn, session: SessionDep, who: Supervisor) -> dict:
    """The crew that can start it soonest without making others late takes it; other routes keep their order."""
    plan, answer = _guarded(session, service.insert_urgent, who, day, body.job)
    return {**answer, "plan": plan_view(session, plan)}


@router.get("/me/plan", summary="Crew: today's ordered stops")
def my_plan(session: SessionDep, who: Crew) -> dict:
    """My crew's stops in today's current plan, the next one marked (empty when today is not planned)."""
    plan = service.current_plan(session, service.local_today(datetime.now(timezone.utc)))
    return today_view(session, plan, who.crew_id or 0)


@router.post("/me/plan/stops/{reference}/arrive", summary="Crew: arrived at a stop (starts the job)",
             responses={404: PROBLEM, 409: PROBLEM})
def post_arrive(reference: str, session: SessionDep, who: Crew) -> dict:
    """Record the arrival; the stop is then fixed in any re-plan."""
    _guarded(session, service.arrive, who, reference)
    plan = service.current_plan(session, service.local_today(datetime.now(timezone.utc)))
    return today_view(session, plan, who.crew_id or 0)


@router.post("/me/plan/stops/{reference}/complete", summary="Crew: complete a stop (photo + GPS) and re-plan",
             responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM})
def post_complete(reference: str, body: CompleteIn, session: SessionDep, who: Crew):
    """Complete the job as POST jobs/{reference}/status would, then re-plan the rest of the day."""
    job_id = service.stop_job_id(session, who, reference)
    status, answer = change_status(session, who, reference, StatusIn(status="completed", **body.model_dump()))
    if status >= 400:
        return JSONResponse(answer, status_code=status)
    service.after_job_moved(session, job_id, who)
    plan = service.current_plan(session, service.local_today(datetime.now(timezone.utc)))
    return today_view(session, plan, who.crew_id or 0)
