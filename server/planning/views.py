"""Day plans as JSON: the supervisor's whole day and a crew's "Today" (WGS84, ISO times)."""
from __future__ import annotations

import json

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.dispatch.models import Crew
from server.geo import lonlat_of
from server.jobs.models import Job
from server.jobs.service import iso
from server.planning.models import DayPlan, PlanRoute, PlanStop, PlanUnassigned


def _stops(session: Session, plan: DayPlan, crew_id: int | None = None) -> list:
    lon, lat = lonlat_of(Job.geom)
    q = (select(PlanStop, Job.reference, Job.category_code, Job.priority, Job.status, Job.street, Job.due_at, lon, lat)
         .join(Job, Job.id == PlanStop.job_id).where(PlanStop.plan_id == plan.id)
         .order_by(PlanStop.crew_id, PlanStop.seq))
    if crew_id is not None:
        q = q.where(PlanStop.crew_id == crew_id)
    return session.execute(q).all()


def stop_view(r) -> dict:
    """One stop: the job, where, when, whether it is fixed, started or late."""
    s = r.PlanStop
    return {"seq": s.seq, "job": r.reference, "category": r.category_code, "priority": r.priority,
            "status": r.status, "street": r.street, "lat": round(r[8], 6), "lon": round(r[7], 6),
            "arrive_at": iso(s.arrive_at), "depart_at": iso(s.depart_at), "travel_s": s.travel_s,
            "service_s": s.service_s, "fixed": s.fixed, "arrived_at": iso(s.arrived_at), "due_at": iso(r.due_at),
            "late": r.due_at is not None and s.depart_at > r.due_at,
            "done": r.status not in ("assigned", "accepted", "in_progress")}


def _crews(session: Session, ids: list[int]) -> dict[int, tuple]:
    lon, lat = lonlat_of(Crew.depot)
    return {r.id: r for r in session.execute(select(Crew.id, Crew.name, Crew.title, Crew.depot_name, lon, lat)
                                             .where(Crew.id.in_(ids or [0]))).all()}


def route_paths(session: Session, plan: DayPlan) -> dict[int, dict | None]:
    """Per crew, the roads its route drives (depot → stops → depot) as WGS84 GeoJSON (pgr_dijkstra per leg)."""
    from server.planning.matrix import EDGES_SQL

    rows = session.execute(text("""
        SELECT s.crew_id, s.node_id, (SELECT n.id FROM road_nodes n WHERE n.main
                                       ORDER BY n.geom <-> c.depot LIMIT 1) AS depot
          FROM plan_stops s JOIN crews c ON c.id = s.crew_id WHERE s.plan_id = :p ORDER BY s.crew_id, s.seq"""),
                           {"p": plan.id}).all()
    legs: dict[int, list[tuple[int, int]]] = {}
    for crew_id in dict.fromkeys(r.crew_id for r in rows):
        mine = [r for r in rows if r.crew_id == crew_id]
        seq = [mine[0].depot] + [r.node_id for r in mine] + [mine[0].depot]
        legs[crew_id] = [(a, b) for a, b in zip(seq, seq[1:]) if a != b]
    pairs = sorted({p for ls in legs.values() for p in ls})
    if not pairs:
        return {}
    values = ", ".join(f"({int(a)}, {int(b)})" for a, b in pairs)
    edges_of: dict[tuple[int, int], list[int]] = {}
    for a, b, edge in session.execute(text(
            "SELECT start_vid, end_vid, edge FROM pgr_dijkstra(:edges, :combos, directed => true) WHERE edge > 0"),
            {"edges": EDGES_SQL, "combos": f"SELECT * FROM (VALUES {values}) AS t(source, target)"}).all():
        edges_of.setdefault((a, b), []).append(edge)
    out = {}
    for crew_id, ls in legs.items():
        ids = sorted({e for p in ls for e in edges_of.get(p, [])})
        geo = session.execute(text("SELECT ST_AsGeoJSON(ST_Transform(ST_Collect(geom), 4326), 6) FROM road_edges "
                                   "WHERE id = ANY(:ids)"), {"ids": ids}).scalar() if ids else None
        out[crew_id] = json.loads(geo) if geo else None
    return out


def plan_view(session: Session, plan: DayPlan, *, paths: bool = False) -> dict:
    """The whole plan: per crew its route and totals, and the jobs left out with their reasons."""
    routes = session.scalars(select(PlanRoute).where(PlanRoute.plan_id == plan.id).order_by(PlanRoute.crew_id)).all()
    stops = _stops(session, plan)
    crews = _crews(session, [r.crew_id for r in routes])
    drawn = route_paths(session, plan) if paths else {}
    out = []
    for r in routes:
        c = crews[r.crew_id]
        out.append({"crew": c.name, "title": c.title,
                    "depot": {"name": c.depot_name, "lat": round(c[5], 6), "lon": round(c[4], 6)},
                    "start_at": iso(r.start_at), "end_at": iso(r.end_at), "travel_s": r.travel_s,
                    "service_s": r.service_s, "stops": [stop_view(s) for s in stops if s.PlanStop.crew_id == r.crew_id],
                    **({"path": drawn.get(r.crew_id)} if paths else {})})
    left = session.execute(select(Job.reference, Job.category_code, Job.priority, Job.due_at, PlanUnassigned.reason)
                           .join(Job, Job.id == PlanUnassigned.job_id).where(PlanUnassigned.plan_id == plan.id)
                           .order_by(Job.reference)).all()
    return {"day": plan.day.isoformat(), "version": plan.version, "current": plan.current, "reason": plan.reason,
            "created_by": plan.created_by, "created_at": iso(plan.created_at), "totals": plan.totals, "routes": out,
            "unassigned": [{"job": j.reference, "category": j.category_code, "priority": j.priority,
                            "due_at": iso(j.due_at), "reason": j.reason} for j in left]}


def today_view(session: Session, plan: DayPlan | None, crew_id: int) -> dict:
    """A crew's "Today": ordered stops with the next one marked; empty when the day is not planned."""
    if plan is None:
        return {"day": None, "version": None, "crew": None, "stops": [], "next": None}
    stops = [stop_view(s) for s in _stops(session, plan, crew_id)]
    route = session.get(PlanRoute, (plan.id, crew_id))
    crew = _crews(session, [crew_id]).get(crew_id)
    nxt = next((s for s in stops if not s["done"]), None)
    return {"day": plan.day.isoformat(), "version": plan.version, "crew": crew.name if crew else None,
            "depot": {"name": crew.depot_name, "lat": round(crew[5], 6), "lon": round(crew[4], 6)} if crew else None,
            "start_at": iso(route.start_at) if route else None, "end_at": iso(route.end_at) if route else None,
            "travel_s": route.travel_s if route else 0, "stops": stops, "next": nxt["job"] if nxt else None}
