"""Day-plan use cases: plan a day, re-plan the rest, insert an urgent job, arrive at a stop (one commit each).

Every use case reads, solves and writes in one transaction: a refusal (4xx) or a failure leaves the
previous plan version current and nothing of the new one written.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Crew
from server.errors import Conflict, DomainError, NotFound
from server.jobs.models import Job
from server.jobs.service import append_event
from server.planning import matrix as mx
from server.planning import rules
from server.planning.models import DayPlan, PlanRoute, PlanStop, PlanUnassigned

log = logging.getLogger("kerbside.planning")
# Open jobs a crew's day plan carries (on hold waits for something else; triage and new are not a crew's yet).
PLANNED_STATUSES = ("assigned", "accepted", "in_progress")
QUEUE_PREFIX = "day plan: "


def _bad(detail: str, code: str, fields: list[str], status: int = 422, **extra) -> DomainError:
    return DomainError(detail, fields=fields, code=code, status=status, extra=extra or None)


@dataclass
class Clock:
    """The day's local midnight in UTC and conversions to and from seconds since it."""

    day: date
    midnight: datetime

    @classmethod
    def of(cls, day: date) -> "Clock":
        """The clock of a day in the council's timezone."""
        tz = ZoneInfo(get_settings().timezone)
        return cls(day, datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc))

    def s(self, at: datetime) -> int:
        """Seconds since midnight (negative before the day)."""
        return int((at - self.midnight).total_seconds())

    def at(self, s: int) -> datetime:
        """The moment `s` seconds after midnight."""
        return self.midnight + timedelta(seconds=int(s))

    def wall(self, t: time) -> int:
        """A wall-clock time of the day as seconds since midnight."""
        return self.s(datetime.combine(self.day, t, tzinfo=ZoneInfo(get_settings().timezone)))


@dataclass
class World:
    """What a plan is made from: crews, jobs, their matrix indices and the matrix."""

    clock: Clock
    crews: dict[int, Crew]
    crew_in: dict[int, rules.CrewIn]
    jobs: dict[int, Job]
    job_in: dict[int, rules.JobIn]
    off_network: dict[int, str]
    matrix: list[list[int]]
    earliest_s: int
    nodes: list[int]


def local_today(now: datetime) -> date:
    """Today in the council's timezone."""
    return now.astimezone(ZoneInfo(get_settings().timezone)).date()


def _crews(session: Session) -> list[Crew]:
    crews = list(session.scalars(select(Crew).where(Crew.active).order_by(Crew.id)))
    if not crews:
        raise _bad("no active crew to plan for", "empty-day", ["day"])
    missing = [c.name for c in crews if c.depot is None]
    if missing:
        raise _bad(f"crews without a depot cannot be planned: {', '.join(missing)}", "crew-without-depot",
                   ["crews"], crews=missing)
    return crews


def _world(session: Session, day: date, now: datetime, crews: list[Crew], jobs: list[Job],
           pinned: dict[int, int]) -> World:
    """Snap depots and jobs to the road network and build the travel-time matrix."""
    digest = mx.graph_digest(session)
    if digest is None:
        raise _bad("the road network has not been built (run `python -m server.cli import-gis`)",
                   "no-road-network", ["day"], status=409)
    clock = Clock.of(day)
    depots = mx.snap_points(session, "SELECT id AS key, depot AS geom FROM crews WHERE id = ANY(:ids)",
                            {"ids": [c.id for c in crews]})
    far = [c.name for c in crews if depots[c.id].node is None]
    if far:
        raise _bad(f"depot off the road network: {', '.join(far)}", "depot-off-network", ["crews"], crews=far)
    snaps = mx.snap_points(session, "SELECT id AS key, geom FROM jobs WHERE id = ANY(:ids)",
                           {"ids": [j.id for j in jobs]}) if jobs else {}
    off = {j.id: f"off the road network (nearest road {snaps[j.id].distance_m or 0:.0f} m away)"
           for j in jobs if snaps[j.id].node is None}
    nodes = sorted({depots[c.id].node for c in crews} | {s.node for s in snaps.values() if s.node is not None})
    index = {n: i for i, n in enumerate(nodes)}
    matrix = mx.travel_matrix(session, day, nodes, digest)
    crew_in = {c.id: rules.CrewIn(c.id, index[depots[c.id].node], clock.wall(c.shift_start), clock.wall(c.shift_end),
                                  frozenset(c.skills or []), c.capacity or 0) for c in crews}
    job_in = {j.id: rules.JobIn(j.id, index[snaps[j.id].node], j.category_code, j.priority,
                                clock.s(j.due_at) if j.due_at else None, pinned.get(j.id))
              for j in jobs if j.id not in off}
    return World(clock, {c.id: c for c in crews}, crew_in, {j.id: j for j in jobs}, job_in, off, matrix,
                 max(clock.s(now), 0), nodes)


def _open_jobs(session: Session, crew_ids: list[int]) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.crew_id.in_(crew_ids), Job.status.in_(PLANNED_STATUSES))
                                .order_by(Job.id).with_for_update(of=Job)))


def current_plan(session: Session, day: date, *, lock: bool = False) -> DayPlan | None:
    """The current version of a day's plan, if any."""
    q = select(DayPlan).where(DayPlan.day == day, DayPlan.current)
    return session.scalar(q.with_for_update() if lock else q)


def _check_day(day: date, now: datetime) -> None:
    if day < local_today(now):
        raise _bad(f"{day} is in the past: only today or a later day can be planned", "day-in-the-past", ["day"])


def plan_day(session: Session, who: Principal | str, day: date, *, now: datetime | None = None,
             reason: str = "planned") -> DayPlan:
    """A fresh plan for every crew's open jobs (a new version; the freeze rule holds if one exists). Commits."""
    now = now or datetime.now(timezone.utc)
    _check_day(day, now)
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('day_plan'), :d)"), {"d": day.toordinal()})
    old = current_plan(session, day, lock=True)
    crews = _crews(session)
    jobs = _open_jobs(session, [c.id for c in crews])
    if not jobs:
        raise _bad(f"no open crew jobs to plan on {day}", "empty-day", ["day"])
    # Dispatch chose each job's crew (zone, skill, load): the plan orders each crew's day and does not move
    # jobs between crews (only an urgent insertion picks the crew). Skills and shifts are still checked.
    pinned = {j.id: j.crew_id for j in jobs}
    w = _world(session, day, now, crews, jobs, pinned)
    if old is None:
        plan = rules.solve_per_crew(list(w.crew_in.values()), list(w.job_in.values()), w.matrix,
                                    earliest_s=w.earliest_s, replan=False)
        fixed_by_crew: dict[int, list[rules.Stop]] = {}
    else:
        plan, fixed_by_crew = _replan(session, old, w, now)
    plan.unassigned.update(w.off_network)
    return _store(session, who, w, plan, fixed_by_crew, old, reason)


def _progress(session: Session, old: DayPlan, w: World, now: datetime
              ) -> dict[int, tuple[list[rules.Stop], list[rules.JobIn], int, int, list[rules.Stop], int]]:
    """Per crew: fixed stops, free jobs in the old order, free-at index and time, old free stops, old end."""
    stops = session.scalars(select(PlanStop).where(PlanStop.plan_id == old.id)
                            .order_by(PlanStop.crew_id, PlanStop.seq)).all()
    out = {}
    for crew_id, crew in w.crew_in.items():
        mine = [s for s in stops if s.crew_id == crew_id]
        route = []
        for s in mine:
            job = w.jobs.get(s.job_id)
            j_in = w.job_in.get(s.job_id) or rules.JobIn(s.job_id, crew.depot, "?")
            done = job is None or job.crew_id != crew_id or job.status not in PLANNED_STATUSES
            started = not done and (s.arrived_at is not None or job.status == "in_progress")
            route.append(rules.Progress(j_in, done=done or s.job_id not in w.job_in, started=started,
                                        started_s=w.clock.s(s.arrived_at) if s.arrived_at else None))
        fixed, free, at, t = rules.freeze(route, crew.depot, w.earliest_s, crew.start_s, w.matrix)
        old_stops, old_end, _ = rules.evaluate(free, at, t, crew.depot, w.matrix)
        out[crew_id] = (fixed, free, at, t, old_stops, old_end)
    return out


def _replan(session: Session, old: DayPlan, w: World, now: datetime) -> tuple[rules.Plan, dict]:
    """Re-solve what is not fixed; keep a crew's order unless the new one is needed or worth it."""
    state = _progress(session, old, w, now)
    fixed_ids = {s.job_id for fixed, *_ in state.values() for s in fixed}
    free_jobs = [j for j in w.job_in.values() if j.id not in fixed_ids]
    starts = {cid: (at, t) for cid, (fixed, free, at, t, _, _) in state.items()}
    plan = rules.solve_per_crew(list(w.crew_in.values()), free_jobs, w.matrix, earliest_s=w.earliest_s, starts=starts)
    for cid, (fixed, free, at, t, old_stops, old_end) in state.items():
        new = plan.routes.get(cid)
        if new is None:  # past the end of its shift: only its fixed stops, then back to the depot
            back = w.matrix[at][w.crew_in[cid].depot]
            plan.routes[cid] = rules.Route(cid, t, t + back, [], back)
            continue
        same_jobs = {s.job_id for s in new.stops} == {j.id for j in free}
        new_late = sum(1 for s in rules.evaluate([w.job_in[s.job_id] for s in new.stops], at, t,
                                                 w.crew_in[cid].depot, w.matrix)[0] if s.late)
        if same_jobs and free and not rules.adopt_new_order(old_stops, old_end, new.end_s, new_late):
            stops, end, back = rules.evaluate(free, at, t, w.crew_in[cid].depot, w.matrix)
            plan.routes[cid] = rules.Route(cid, t, end, stops, back)
    return plan, {cid: st[0] for cid, st in state.items()}


def _store(session: Session, who: Principal | str, w: World, plan: rules.Plan, fixed_by_crew: dict,
           old: DayPlan | None, reason: str) -> DayPlan:
    """Write the new version (routes, stops, unassigned), move jobs between crews, queue the unassigned; commit."""
    actor = who if isinstance(who, str) else who.actor
    version = (session.scalar(select(func.max(DayPlan.version)).where(DayPlan.day == w.clock.day)) or 0) + 1
    arrived = {}
    if old is not None:
        arrived = dict(session.execute(select(PlanStop.job_id, PlanStop.arrived_at)
                                       .where(PlanStop.plan_id == old.id, PlanStop.arrived_at.is_not(None))).all())
        session.execute(update(DayPlan).where(DayPlan.id == old.id).values(current=False))
        session.flush()
    row = DayPlan(day=w.clock.day, version=version, current=True, reason=reason[:300], created_by=actor, totals={})
    session.add(row)
    session.flush()
    totals = {"crews": 0, "stops": 0, "travel_s": 0, "service_s": 0, "late": 0, "unassigned": len(plan.unassigned)}
    for cid, route in plan.routes.items():
        stops = list(fixed_by_crew.get(cid, [])) + route.stops
        if not stops:
            continue
        travel = sum(s.travel_s for s in stops) + route.back_s
        service = sum(s.service_s for s in stops)
        start = min(stops[0].arrive_s - stops[0].travel_s, route.start_s)
        session.add(PlanRoute(plan_id=row.id, crew_id=cid, start_at=w.clock.at(start), end_at=w.clock.at(route.end_s),
                              travel_s=travel, service_s=service, stops=len(stops)))
        for seq, s in enumerate(stops, start=1):
            job = w.jobs[s.job_id]
            session.add(PlanStop(plan_id=row.id, crew_id=cid, seq=seq, job_id=s.job_id, node_id=w.nodes[s.index],
                                 arrive_at=w.clock.at(s.start_s), depart_at=w.clock.at(s.depart_s),
                                 travel_s=s.travel_s, service_s=s.service_s, fixed=s.fixed,
                                 arrived_at=arrived.get(s.job_id)))
            if job.crew_id != cid:
                before = session.scalar(select(Crew.name).where(Crew.id == job.crew_id))
                job.crew_id = cid
                append_event(session, job, "reassigned", who, before={"crew": before},
                             after={"crew": w.crews[cid].name}, note=f"day plan {w.clock.day} v{version}")
            if job.queue_reason and job.queue_reason.startswith(QUEUE_PREFIX):
                job.queue_reason = None
            totals["late"] += int(s.late)
        totals["crews"] += 1
        totals["stops"] += len(stops)
        totals["travel_s"] += travel
        totals["service_s"] += service
    for job_id, why in plan.unassigned.items():
        session.add(PlanUnassigned(plan_id=row.id, job_id=job_id, reason=why[:300]))
        w.jobs[job_id].queue_reason = (QUEUE_PREFIX + why)[:300]
    row.totals = totals
    session.commit()
    return row


def replan(session: Session, who: Principal | str, day: date, *, reason: str, now: datetime | None = None) -> DayPlan:
    """Re-plan the rest of a planned day (409 `no-plan` if the day has no plan yet). Commits."""
    if current_plan(session, day) is None:
        raise _bad(f"{day} has no plan yet: plan it first", "no-plan", ["day"], status=409)
    return plan_day(session, who, day, now=now, reason=reason)


def after_job_moved(session: Session, job_id: int, who: Principal | str, *,
                    now: datetime | None = None) -> DayPlan | None:
    """After a stop's job is completed, held or cancelled (committed): re-plan the rest of today, if planned."""
    now = now or datetime.now(timezone.utc)
    day = local_today(now)
    old = current_plan(session, day)
    if old is None or session.scalar(select(PlanStop.id).where(PlanStop.plan_id == old.id,
                                                               PlanStop.job_id == job_id)) is None:
        return None
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    if status in PLANNED_STATUSES:
        return None
    try:
        return plan_day(session, who, day, now=now, reason=f"stop {status}")
    except DomainError as exc:  # e.g. the day emptied: the status change stands, the old plan stays
        session.rollback()
        log.info("re-plan after job %s skipped: %s", job_id, exc.detail)
    except Exception:  # the move is committed and answered; a failed re-plan must not turn it into a 500
        session.rollback()
        log.exception("re-plan after job %s failed; the previous plan stays current", job_id)
    return None


def insert_urgent(session: Session, who: Principal, day: date, reference: str, *,
                  now: datetime | None = None) -> tuple[DayPlan, dict]:
    """Put an urgent job into the best crew's remaining route, other routes untouched. Commits."""
    from server.dispatch.service import assign

    now = now or datetime.now(timezone.utc)
    _check_day(day, now)
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('day_plan'), :d)"), {"d": day.toordinal()})
    old = current_plan(session, day, lock=True)
    if old is None:
        raise _bad(f"{day} has no plan yet: plan it first", "no-plan", ["day"], status=409)
    job = session.scalar(select(Job).where(Job.reference == reference).with_for_update())
    if job is None:
        raise NotFound(f"no job {reference}", fields=["job"])
    if job.status not in ("new", "assigned", "accepted") or job.contractor_id is not None:
        raise _bad(f"job {reference} is {job.status}" + (" with a contractor" if job.contractor_id else "")
                   + ": only an open crew job can be inserted", "not-plannable", ["job"], status=409)
    if job.priority not in rules.URGENT:
        raise _bad(f"job {reference} has priority {job.priority}: only urgent or emergency jobs are inserted; "
                   "re-plan for the rest", "not-urgent", ["job"])
    if session.scalar(select(PlanStop.id).where(PlanStop.plan_id == old.id, PlanStop.job_id == job.id)):
        raise Conflict(f"job {reference} is already in the plan", fields=["job"], code="already-planned")
    crews = _crews(session)
    jobs = [j for j in _open_jobs(session, [c.id for c in crews]) if j.id != job.id] + [job]
    pinned = {j.id: j.crew_id for j in jobs if j.id != job.id or job.status == "accepted"}
    w = _world(session, day, now, crews, jobs, pinned)
    if job.id in w.off_network:
        raise _bad(f"job {reference} is {w.off_network[job.id]}", "off-network", ["job"])
    state = _progress(session, old, w, now)
    candidates = {cid: (w.crew_in[cid], fixed, free, at, t) for cid, (fixed, free, at, t, _, _) in state.items()}
    choice = rules.insert_urgent(w.job_in[job.id], candidates, w.matrix)
    plan = rules.Plan({}, {})
    for cid, (crew, fixed, free, at, t) in candidates.items():
        order = list(free)
        if choice and choice[0] == cid:
            order.insert(choice[1], w.job_in[job.id])
        stops, end, back = rules.evaluate(order, at, t, crew.depot, w.matrix)
        plan.routes[cid] = rules.Route(cid, t, end, stops, back)
    # Jobs the old plan had left out stay out (with their reasons); new ones off the network likewise.
    for job_id, why in session.execute(select(PlanUnassigned.job_id, PlanUnassigned.reason)
                                       .where(PlanUnassigned.plan_id == old.id)).all():
        if job_id in w.jobs and w.jobs[job_id].status in PLANNED_STATUSES:
            plan.unassigned[job_id] = why
    planned = {s.job_id for r in plan.routes.values() for s in r.stops} | {
        s.job_id for fixed, *_ in state.values() for s in fixed}
    for j in w.jobs.values():
        if j.id not in planned and j.id not in plan.unassigned and j.id != job.id:
            plan.unassigned[j.id] = "added after the plan was made: re-plan to place it"
    answer = {"job": reference, "outcome": "unassigned", "crew": None, "made_late": []}
    if choice is None:
        why = rules.reason_unassigned(w.job_in[job.id], list(w.crew_in.values()), w.matrix, w.earliest_s)
        plan.unassigned[job.id] = why
        answer["reason"] = why
    else:
        crew = w.crews[choice[0]]
        if job.crew_id != crew.id or job.status == "new":
            if job.status == "assigned" and job.crew_id is not None:
                pass  # _store moves it between crews with a "reassigned" event
            else:
                assign(session, job, who, crew=crew.name, note="urgent job inserted into the day plan", now=now)
        refs = dict(session.execute(select(Job.id, Job.reference).where(Job.id.in_(choice[2] or [0]))).all())
        answer.update(outcome="inserted", crew=crew.name, position=choice[1] + 1 + len(state[choice[0]][0]),
                      made_late=[refs[i] for i in choice[2]])
    row = _store(session, who, w, plan, {cid: st[0] for cid, st in state.items()}, old,
                 f"urgent job {reference} inserted" if choice else f"urgent job {reference}: no crew can take it")
    return row, answer


def stop_job_id(session: Session, who: Principal, reference: str, *, now: datetime | None = None) -> int:
    """The id of a job that is (or was, in an earlier version: a retried completion) a stop of the caller's
    crew in today's plan, else 404."""
    today = local_today(now or datetime.now(timezone.utc))
    job_id = None if not who.crew_id else session.scalar(
        select(PlanStop.job_id).join(Job, Job.id == PlanStop.job_id).join(DayPlan, DayPlan.id == PlanStop.plan_id)
        .where(DayPlan.day == today, PlanStop.crew_id == who.crew_id, Job.reference == reference).limit(1))
    if job_id is None:
        raise NotFound(f"{reference} is not a stop of your plan today", fields=["reference"])
    return job_id


def arrive(session: Session, who: Principal, reference: str, *, now: datetime | None = None) -> PlanStop:
    """The crew is at a stop of today's plan: record it (the stop is then fixed) and start the job. Commits."""
    from server.jobs.transitions import move

    now = now or datetime.now(timezone.utc)
    plan = current_plan(session, local_today(now))
    job = session.scalar(select(Job).where(Job.reference == reference, Job.crew_id == who.crew_id).with_for_update()) \
        if who.crew_id else None
    stop = None if plan is None or job is None else session.scalar(
        select(PlanStop).where(PlanStop.plan_id == plan.id, PlanStop.job_id == job.id, PlanStop.crew_id == who.crew_id)
        .with_for_update())
    if stop is None:
        raise NotFound(f"{reference} is not a stop of your plan today", fields=["reference"])
    if job.status == "assigned":
        move(session, job, "accepted", who, note="arrived (day plan)", at=now)
    if job.status == "accepted":
        move(session, job, "in_progress", who, note="arrived (day plan)", at=now)
    stop.arrived_at = stop.arrived_at or now
    session.commit()
    return stop
