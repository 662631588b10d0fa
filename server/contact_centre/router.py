"""The dashboard's JSON API: who am I, map and filter settings, one-box search, live board, figures."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from sqlalchemy import select

from server.areas.models import Area
from server.catalogue.service import get_catalogue
from server.config import get_settings
from server.deps import Principal, SessionDep, require
from server.dispatch.models import Contractor, Crew
from server.errors import Unprocessable
from server.jobs import rules

from server.contact_centre import figures as figures_mod
from server.contact_centre import queries

router = APIRouter(prefix="/api/v1/contact-centre", tags=["contact centre"])
DASHBOARD_ROLES = ("advisor", "supervisor")
Staff = Annotated[Principal, require(*DASHBOARD_ROLES)]
SUPERVISE = ("supervisor", "admin")
MAX_PERIOD_DAYS = 366 * 3
# Bounds on the dates asked for: to=0001-01-01 made "28 days before" overflow (a 500, found by fuzzing).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2200, 12, 31)


@router.get("/me", summary="Who the dashboard is signed in as, and what they may do")
def me(who: Staff) -> dict:
    """Name, role and whether supervisor actions are available (the UI hides them otherwise)."""
    return {"name": who.name, "role": who.role, "can_supervise": who.role in SUPERVISE}


@router.get("/options", summary="Map settings and the choices for the board's filters")
def options(session: SessionDep, who: Staff) -> dict:
    """Base-map tiles (or none), categories, wards, crews, contractors and statuses."""
    s = get_settings()
    wards = session.scalars(select(Area.name).where(Area.kind == "ward").order_by(Area.name)).all()
    crews = session.execute(select(Crew.name, Crew.title).order_by(Crew.title)).all()
    contractors = session.execute(select(Contractor.name, Contractor.title).order_by(Contractor.title)).all()
    return {
        "council": s.council_name,
        "map": {"tiles_url": s.map_tiles_url or None, "attribution": s.map_tiles_attribution,
                "center": {"lat": 51.3813, "lon": -2.3590}, "zoom": 13},
        "categories": [{"code": c.code, "name": c.name, "group": c.group, "layer": c.layer}
                       for c in get_catalogue().categories],
        "wards": list(wards),
        "assignees": [{"name": n, "title": t, "kind": "crew"} for n, t in crews]
                     + [{"name": n, "title": t, "kind": "contractor"} for n, t in contractors],
        "statuses": [{"code": st, "words": rules.describe_status(st)} for st in rules.OPEN_STATUSES],
    }


@router.get("/find", summary="One search box: job or report reference, asset or contractor reference, street")
def find(session: SessionDep, who: Staff,
         q: str = Query(..., max_length=200, description="what the caller told you")) -> dict:
    """Matching jobs (open first) and assets with that reference."""
    return queries.find(session, who, q)


@router.get("/board", summary="Open jobs for the live board, soonest due first")
def board(session: SessionDep, who: Staff, category: str | None = Query(None, max_length=64),
          ward: str | None = Query(None, max_length=200),
          status: str | None = Query(None, max_length=32, description="an open status, 'overdue' or 'at_risk'"),
          assignee: str | None = Query(None, max_length=100, description="crew or contractor name; 'none'")) -> dict:
    """Up to 500 jobs with SLA state (ok, at_risk, breached, paused)."""
    if status and status not in (*rules.OPEN_STATUSES, "open", "overdue", "at_risk"):
        raise Unprocessable(f"unknown status {status!r}", fields=["status"], code="invalid-status")
    return queries.board(session, who, category=category, ward=ward, status=status, assignee=assignee)


@router.get("/figures", summary="SLA compliance, time to fix, repeat reports, first-contact resolution")
def figures(session: SessionDep, who: Staff,
            start: date | None = Query(None, alias="from", ge=FIRST_DAY, le=LAST_DAY,
                                       description="first local date (default: 28 days ago)"),
            end: date | None = Query(None, alias="to", ge=FIRST_DAY, le=LAST_DAY,
                                     description="last local date, inclusive (default: today)")
            ) -> dict:
    """The figures for a period of local dates, with their definitions."""
    today = datetime.now(timezone.utc).astimezone(ZoneInfo(get_settings().timezone)).date()
    end = end or today
    start = start or end - timedelta(days=27)
    if start > end:
        raise Unprocessable("'from' is after 'to'", fields=["from", "to"], code="invalid-period")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise Unprocessable("a period is at most three years", fields=["from", "to"], code="invalid-period")
    return figures_mod.figures(session, start, end)
