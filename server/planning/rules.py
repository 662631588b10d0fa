"""Day-plan rules (pure): service times, the VROOM problem, reasons, the freeze rule, urgent insertion.

Times are seconds since the day's local midnight; places are indices into a travel-time matrix.

The freeze rule (what a re-plan may not change): a crew's stops that are started (arrived at, or the
job in progress) and, once its shift has begun, the next stop after them are *fixed*: they keep their
order at the head of the route and the rest is planned from where and when the crew will be free.
After a completed, held or cancelled stop the rest of a crew's route is re-solved, but the new order is
adopted only when the old one no longer works (a stop would miss its due time) or it saves at least
`REORDER_MIN_GAIN_S` or `REORDER_MIN_SHARE` of the remaining time; otherwise the crew keeps its order
with fresh times.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import vroom

# Minutes on site by category (a fly-tip load takes longer than emptying a bin).
SERVICE_MIN = {"graffiti": 30, "fly_tipping": 25, "litter_bin": 10, "dog_bin": 10, "grit_bin": 15,
               "bench": 30, "pothole": 40, "abandoned_vehicle": 15}
DEFAULT_SERVICE_MIN = 20
# VROOM maximises the summed priority of assigned jobs before it minimises time (0..100).
PRIORITY_WEIGHT = {"emergency": 100, "urgent": 60, "normal": 20, "low": 5}
URGENT = ("emergency", "urgent")
# Categories that fill the van: one load each, up to the crew's capacity.
LOAD = {"fly_tipping": 1}
# VROOM's search grows fast with size (on this 2-core machine: 100 jobs at level 5 ≈ 7 s of CPU, 300 jobs
# at level 0 ≈ 10 s): deep search for small days, then a time limit (the best solution found so far).
PLAN_TIME_LIMIT_S = 3.0
REPLAN_TIME_LIMIT_S = 0.8
REPLAN_EXPLORATION = 2
REORDER_MIN_GAIN_S = 15 * 60
REORDER_MIN_SHARE = 0.10
DAY_S = 24 * 3600


def service_seconds(category: str) -> int:
    """Time on site for a job of this category."""
    return 60 * SERVICE_MIN.get(category, DEFAULT_SERVICE_MIN)


@dataclass(frozen=True)
class CrewIn:
    """A crew on shift: its depot (matrix index), shift window, skills and van capacity (loads)."""

    id: int
    depot: int
    start_s: int
    end_s: int
    skills: frozenset[str]
    capacity: int = 10


@dataclass(frozen=True)
class JobIn:
    """A job to place: matrix index, category (the skill it needs), priority, due time, crew it is pinned to."""

    id: int
    index: int
    category: str
    priority: str = "normal"
    due_s: int | None = None
    pinned_crew: int | None = None

    @property
    def service_s(self) -> int:
        """Time on site."""
        return service_seconds(self.category)

    @property
    def latest_start_s(self) -> int | None:
        """Latest start of service that still finishes by the due time (None: no limit today)."""
        if self.due_s is None or self.due_s >= 2 * DAY_S:
            return None
        return self.due_s - self.service_s


@dataclass
class Stop:
    """A job placed in a route with its times."""

    job_id: int
    index: int
    arrive_s: int
    start_s: int
    depart_s: int
    travel_s: int
    service_s: int
    fixed: bool = False
    late: bool = False


@dataclass
class Route:
    """A crew's ordered stops, leaving `start_index` at `start_s`, back at the depot at `end_s`."""

    crew_id: int
    start_s: int
    end_s: int
    stops: list[Stop] = field(default_factory=list)
    back_s: int = 0  # travel time back to the depot

    @property
    def travel_s(self) -> int:
        """Drive time including the way back."""
        return sum(s.travel_s for s in self.stops) + self.back_s

    @property
    def service_s(self) -> int:
        """Time on site."""
        return sum(s.service_s for s in self.stops)


@dataclass
class Plan:
    """Routes by crew and the jobs left out, each with its reason."""

    routes: dict[int, Route]
    unassigned: dict[int, str]


def _eligible(job: JobIn, crew: CrewIn) -> bool:
    return job.category in crew.skills and (job.pinned_crew is None or job.pinned_crew == crew.id)


def reason_unassigned(job: JobIn, crews: list[CrewIn], matrix: list[list[int]], earliest_s: int) -> str:
    """Why no crew can take the job (the first cause that holds), for the supervisor's queue."""
    able = [c for c in crews if job.category in c.skills]
    if not able:
        return f"no crew on shift has the skill {job.category!r}"
    if job.pinned_crew is not None and not any(c.id == job.pinned_crew for c in able):
        return "its crew is not on shift in this plan"
    able = [c for c in able if _eligible(job, c)]
    starts = [max(c.start_s, earliest_s) for c in able]
    reach = [s + matrix[c.depot][job.index] for c, s in zip(able, starts)]
    latest = job.latest_start_s
    if latest is not None and all(r > latest for r in reach):
        return f"no crew can get there before it is due ({_clock(job.due_s)})"
    if all(r + job.service_s + matrix[job.index][c.depot] > c.end_s for c, r in zip(able, reach)):
        return "too far to reach and finish within the shift"
    return "no room left in the day of a crew that could do it"


def _clock(s: int | None) -> str:
    s = s or 0
    return f"{(s // 3600) % 24:02d}:{s % 3600 // 60:02d}" + (f" +{s // DAY_S}d" if s >= DAY_S else "")


def evaluate(order: list[JobIn], start_index: int, start_s: int, end_index: int, matrix: list[list[int]],
             ) -> tuple[list[Stop], int, int]:
    """Times along a fixed order (waiting for no one): stops, time back at `end_index`, travel back."""
    stops, at, t = [], start_index, start_s
    for j in order:
        travel = matrix[at][j.index]
        arrive = t + travel
        latest = j.latest_start_s
        stops.append(Stop(j.id, j.index, arrive, arrive, arrive + j.service_s, travel, j.service_s,
                          late=latest is not None and arrive > latest))
        at, t = j.index, arrive + j.service_s
    back = matrix[at][end_index]
    return stops, t + back, back


def exploration_for(n_jobs: int) -> int:
    """VROOM exploration level for a problem of this size (5 = deepest)."""
    return 5 if n_jobs <= 40 else 2 if n_jobs <= 100 else 0


def solve_per_crew(crews: list[CrewIn], jobs: list[JobIn], matrix: list[list[int]], *, earliest_s: int = 0,
                   starts: dict[int, tuple[int, int]] | None = None, replan: bool = True) -> Plan:
    """As `solve` when every job is pinned to its crew: one small problem per crew (fast).

    A re-plan gets `REPLAN_TIME_LIMIT_S` in all at a fixed exploration level; a first plan shares
    `PLAN_TIME_LIMIT_S` and searches as deep as each crew's size allows.
    """
    plan = Plan({}, {})
    by_crew: dict[int | None, list[JobIn]] = {}
    for j in jobs:
        by_crew.setdefault(j.pinned_crew, []).append(j)
    share = (REPLAN_TIME_LIMIT_S if replan else PLAN_TIME_LIMIT_S) / max(len(crews), 1)
    for c in crews:
        part = solve([c], by_crew.pop(c.id, []), matrix, earliest_s=earliest_s, starts=starts,
                     exploration=REPLAN_EXPLORATION if replan else None, threads=1, time_limit_s=share)
        plan.routes.update(part.routes)
        plan.unassigned.update(part.unassigned)
    for j in (j for rest in by_crew.values() for j in rest):  # its crew is not in the plan (or none)
        plan.unassigned[j.id] = reason_unassigned(j, crews, matrix, earliest_s)
    return plan


def solve(crews: list[CrewIn], jobs: list[JobIn], matrix: list[list[int]], *, earliest_s: int = 0,
          starts: dict[int, tuple[int, int]] | None = None, exploration: int | None = None, threads: int = 2,
          time_limit_s: float | None = PLAN_TIME_LIMIT_S) -> Plan:
    """Routes for `crews` over `jobs` with VROOM (skills, shift windows, due times, loads, priorities).

    `starts` overrides a crew's start (matrix index, time) — where and when it is free after its fixed stops.
    """
    starts = starts or {}
    vehicles, live = [], []
    for c in crews:
        at, t = starts.get(c.id, (c.depot, max(c.start_s, earliest_s)))
        if t < c.end_s:
            live.append(c)
            vehicles.append((c, at, t))
    placeable = [j for j in jobs if any(_eligible(j, c) for c in live)]
    routes = {c.id: Route(c.id, t, t, back_s=0) for c, at, t in vehicles}
    unassigned = {j.id: reason_unassigned(j, live, matrix, earliest_s) for j in jobs if j not in placeable}
    if not placeable or not vehicles:
        for c, at, t in vehicles:
            routes[c.id].end_s = t + matrix[at][c.depot]
            routes[c.id].back_s = matrix[at][c.depot]
        return Plan(routes, unassigned)
    skills = sorted({j.category for j in jobs} | {f"crew:{c.id}" for c in crews})
    code = {s: i + 1 for i, s in enumerate(skills)}
    problem = vroom.Input()
    problem.set_durations_matrix(profile="car", matrix_input=matrix)
    for c, at, t in vehicles:
        own = {code[s] for s in c.skills if s in code} | {code[f"crew:{c.id}"]}
        problem.add_vehicle(vroom.Vehicle(c.id, start=at, end=c.depot, skills=own, capacity=[max(c.capacity, 0)],
                                          time_window=vroom.TimeWindow(t, c.end_s)))
    for j in placeable:
        need = {code[j.category]} | ({code[f"crew:{j.pinned_crew}"]} if j.pinned_crew is not None else set())
        latest = j.latest_start_s
        windows = [vroom.TimeWindow(0, latest)] if latest is not None and latest >= earliest_s else []
        problem.add_job(vroom.Job(j.id, location=j.index, default_service=j.service_s, skills=need,
                                  priority=PRIORITY_WEIGHT.get(j.priority, 20), time_windows=windows,
                                  pickup=[LOAD.get(j.category, 0)]))
    level = exploration_for(len(placeable)) if exploration is None else exploration
    limit = timedelta(seconds=time_limit_s) if time_limit_s else None
    out = problem.solve(exploration_level=level, nb_threads=threads, timeout=limit).to_dict()
    by_id = {j.id: j for j in jobs}
    for r in out.get("routes", []):
        route = routes[r["vehicle"]]
        prev = None
        for step in r["steps"]:
            if step["type"] == "start":
                route.start_s, prev = step["arrival"], step
            elif step["type"] == "job":
                j = by_id[step["id"]]
                begin = step["arrival"] + step.get("waiting_time", 0)
                route.stops.append(Stop(j.id, j.index, step["arrival"], begin, begin + step["service"],
                                        step["duration"] - prev["duration"], step["service"]))
                prev = step
            elif step["type"] == "end":
                route.end_s = step["arrival"]
                route.back_s = step["duration"] - prev["duration"]
    for c, at, t in vehicles:
        if not routes[c.id].stops:
            routes[c.id].end_s, routes[c.id].back_s = t + matrix[at][c.depot], matrix[at][c.depot]
    for u in out.get("unassigned", []):
        unassigned[u["id"]] = reason_unassigned(by_id[u["id"]], live, matrix, earliest_s)
    return Plan(routes, unassigned)


@dataclass(frozen=True)
class Progress:
    """What a crew has done of its current route: stops in order with whether each is done or started."""

    job: JobIn
    done: bool = False
    started: bool = False
    started_s: int | None = None


def freeze(route: list[Progress], depot: int, now_s: int, shift_start_s: int,
           matrix: list[list[int]]) -> tuple[list[Stop], list[JobIn], int, int]:
    """Split a route by the freeze rule: (fixed stops with fresh times, free jobs, free-at index, free-at time)."""
    open_ = [p for p in route if not p.done]
    done = [p for p in route if p.done]
    at = done[-1].job.index if done else depot
    t = max(now_s, shift_start_s)
    fixed: list[Stop] = []
    k = 0
    while k < len(open_) and open_[k].started:
        p = open_[k]
        arrive = p.started_s if p.started_s is not None else t
        depart = max(t, arrive + p.job.service_s)
        fixed.append(Stop(p.job.id, p.job.index, arrive, arrive, depart, 0, p.job.service_s, fixed=True))
        at, t, k = p.job.index, depart, k + 1
    if k < len(open_) and (fixed or now_s >= shift_start_s):  # the next stop: the crew may be on its way
        j = open_[k].job
        travel = matrix[at][j.index]
        latest = j.latest_start_s
        fixed.append(Stop(j.id, j.index, t + travel, t + travel, t + travel + j.service_s, travel, j.service_s,
                          fixed=True, late=latest is not None and t + travel > latest))
        at, t, k = j.index, t + travel + j.service_s, k + 1
    return fixed, [p.job for p in open_[k:]], at, t


def adopt_new_order(old_stops: list[Stop], old_end_s: int, new_end_s: int, new_late: int) -> bool:
    """The re-plan's order replaces the crew's current one only if the old one fails or the gain is worth it."""
    if any(s.late for s in old_stops) and new_late < sum(s.late for s in old_stops):
        return True
    gain = old_end_s - new_end_s
    remaining = max(old_end_s - (old_stops[0].arrive_s - old_stops[0].travel_s if old_stops else old_end_s), 1)
    return gain >= REORDER_MIN_GAIN_S or gain >= REORDER_MIN_SHARE * remaining


def insert_urgent(job: JobIn, routes: dict[int, tuple[CrewIn, list[Stop], list[JobIn], int, int]],
                  matrix: list[list[int]]) -> tuple[int, int, list[int]] | None:
    """Best place for an urgent job: (crew id, position among its free jobs, job ids it makes late) or None.

    `routes`: crew id → (crew, fixed stops, free jobs in order, free-at index, free-at time). A position
    that makes no other stop late beats one that does; then the soonest start of service wins; ties go
    to the least added drive time. A crew that would end after its shift is not a candidate.
    """
    best = None
    for crew_id, (crew, fixed, free, at, t) in routes.items():
        if not _eligible(job, crew):
            continue
        base_stops, base_end, _ = evaluate(free, at, t, crew.depot, matrix)
        base_late = {s.job_id for s in base_stops if s.late}
        for pos in range(len(free) + 1):
            order = free[:pos] + [job] + free[pos:]
            stops, end, _ = evaluate(order, at, t, crew.depot, matrix)
            if end > crew.end_s:
                continue
            mine = stops[pos]
            made_late = sorted({s.job_id for s in stops if s.late and s.job_id != job.id} - base_late)
            key = (bool(made_late), mine.start_s, end - base_end)
            if best is None or key < best[0]:
                best = (key, crew_id, pos, made_late)
    return None if best is None else (best[1], best[2], best[3])
