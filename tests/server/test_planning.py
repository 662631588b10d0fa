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
    # One crew at a time (how POST /plans runs): the same guarantees; a job pinned to no crew is left out.
    per_crew = rules.solve_per_crew(crews, jobs, matrix, replan=False)
    _check_plan(crews, jobs, matrix, per_crew)
    assert all(j.id in per_crew.unassigned for j in jobs if j.pinned_crew is None)


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
    started = sum(p.started for p in open_)
    want = min(len(open_), started + (1 if started or now_s >= crew.start_s else 0))
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


# --- plans through the API (real reports, real dispatch, the real network) ---------------------

import uuid  # noqa: E402

import pytest  # noqa: E402

from server.deps import Principal  # noqa: E402
from server.planning import service  # noqa: E402
from tests.server.test_crews import photo, problem  # noqa: E402

CLEANSING = ("cleansing_north", "cleansing_south")
OFF_NETWORK = (51.39781, -2.58656)  # inside B&NES, 1.4 km from the nearest road node


def _spots(db, n: int) -> list[tuple[float, float]]:
    """n real road junctions in Bath within 3 km of the depot, each in its own 300 m square (no duplicates)."""
    return [tuple(r) for r in db.execute(text("""
        SELECT lat, lon FROM (
          SELECT DISTINCT ON (ST_SnapToGrid(n.geom, 300)) ST_Y(ST_Transform(n.geom, 4326)) AS lat,
                 ST_X(ST_Transform(n.geom, 4326)) AS lon, md5(n.id::text) AS k
            FROM road_nodes n, crews c
           WHERE c.name = 'cleansing_north' AND n.main AND ST_DWithin(n.geom, c.depot, 3000)
           ORDER BY ST_SnapToGrid(n.geom, 300), n.id) q ORDER BY k LIMIT :n"""), {"n": n}).all()]


def _report(client, tokens, category, latlon, answers) -> str:
    r = post(client, tokens["field_worker"], body(category=category, lat=latlon[0], lon=latlon[1], answers=answers))
    assert r.status_code == 201, r.text
    return r.json()["job"]["reference"]


def _to_crew(client, tokens, db, ref: str, crew: str) -> None:
    job = db.scalar(select(Job).where(Job.reference == ref))
    if job.crew_id is None:
        r = client.post(f"/api/v1/jobs/{ref}/assign", json={"crew": crew}, headers=auth(tokens["supervisor"]))
        assert r.status_code == 200, r.text


@pytest.fixture
def day_jobs(client, tokens, db) -> list[str]:
    """Ten graffiti and fly-tipping jobs at real places in Bath, each with a cleansing crew."""
    refs = []
    for i, spot in enumerate(_spots(db, 10)):
        if i % 3 == 2:
            ref = _report(client, tokens, "fly_tipping", spot, {"waste_type": ["household"], "size": "bag"})
        else:
            ref = _report(client, tokens, "graffiti", spot, {"offensive": "no"})
        _to_crew(client, tokens, db, ref, CLEANSING[i % 2])
        refs.append(ref)
    return refs


def _plan(client, tokens, day: date, **kw):
    return client.post("/api/v1/plans", json={"day": day.isoformat(), **kw}, headers=auth(tokens["supervisor"]))


def _sequences(plan: dict) -> dict[str, list[str]]:
    return {r["crew"]: [s["job"] for s in r["stops"]] for r in plan["routes"]}


def test_a_day_plan_routes_every_crew_job_within_shifts(client, tokens, db, day_jobs):
    day = tomorrow()
    r = _plan(client, tokens, day)
    assert r.status_code == 201, r.text
    plan = r.json()
    placed = {s["job"]: r_["crew"] for r_ in plan["routes"] for s in r_["stops"]}
    left = {u["job"]: u["reason"] for u in plan["unassigned"]}
    assert set(day_jobs) <= set(placed) | set(left) and not set(placed) & set(left)
    assert len([j for j in day_jobs if j in placed]) >= 8  # ten jobs in Bath fit two crews' day
    clock = service.Clock.of(day)
    for route in plan["routes"]:
        crew = db.scalar(select(Crew).where(Crew.name == route["crew"]))
        start, end = clock.wall(crew.shift_start), clock.wall(crew.shift_end)
        times = [clock.s(datetime.fromisoformat(s["arrive_at"])) for s in route["stops"]]
        assert times == sorted(times) and start <= times[0]
        assert clock.s(datetime.fromisoformat(route["end_at"])) <= end
        assert [s["seq"] for s in route["stops"]] == list(range(1, len(route["stops"]) + 1))
        for s in route["stops"]:
            assert s["category"] in crew.skills
            assert not s["fixed"]  # the day has not started: nothing is fixed
        assert route["travel_s"] > 0 and route["depot"]["name"] == "Midland Road depot"
    # Jobs the plan gave to a crew are that crew's; the plan is stored and read back as the current version.
    for ref, crew in placed.items():
        assert db.scalar(select(Crew.name).join(Job, Job.crew_id == Crew.id).where(Job.reference == ref)) == crew
    got = client.get(f"/api/v1/plans/{day.isoformat()}", headers=auth(tokens["advisor"]))
    assert got.status_code == 200 and got.json()["version"] == plan["version"] and _sequences(got.json()) == \
        _sequences(plan)
    assert plan["totals"]["stops"] == len(placed) and plan["totals"]["unassigned"] == len(left)
    again = _plan(client, tokens, day).json()
    assert again["version"] == plan["version"] + 1
    assert client.get(f"/api/v1/plans/{day.isoformat()}?version={plan['version']}",
                      headers=auth(tokens["supervisor"])).json()["current"] is False


def test_an_urgent_job_goes_into_one_crews_route_and_the_others_keep_theirs(client, tokens, db, day_jobs):
    day = tomorrow()
    before = _plan(client, tokens, day).json()
    spot = _spots(db, 11)[-1]
    ref = _report(client, tokens, "fly_tipping", spot, {"waste_type": ["asbestos_hazardous"], "size": "bag"})
    assert db.scalar(select(Job.priority).where(Job.reference == ref)) == "urgent"
    r = client.post(f"/api/v1/plans/{day.isoformat()}/urgent", json={"job": ref}, headers=auth(tokens["supervisor"]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["outcome"] == "inserted" and out["crew"] in CLEANSING
    after = out["plan"]
    assert after["version"] == before["version"] + 1
    seq_before, seq_after = _sequences(before), _sequences(after)
    assert ref in seq_after[out["crew"]]
    assert [j for j in seq_after[out["crew"]] if j != ref] == seq_before.get(out["crew"], [])
    for crew, jobs in seq_before.items():
        if crew != out["crew"]:
            assert seq_after[crew] == jobs
    assert db.scalar(select(Crew.name).join(Job, Job.crew_id == Crew.id).where(Job.reference == ref)) == out["crew"]
    # Twice: refused; a normal job: refused (re-plan instead).
    again = client.post(f"/api/v1/plans/{day.isoformat()}/urgent", json={"job": ref},
                        headers=auth(tokens["supervisor"]))
    problem(again, "already-planned", 409)
    problem(client.post(f"/api/v1/plans/{day.isoformat()}/urgent", json={"job": day_jobs[0]},
                        headers=auth(tokens["supervisor"])), "not-urgent", 422)


def _plan_rows(db) -> int:
    return db.scalar(select(func_count()).select_from(DayPlan))


def func_count():
    from sqlalchemy import func

    return func.count()


def test_bad_input_is_a_clear_4xx_and_writes_no_plan(client, tokens, db, day_jobs):
    day = tomorrow()
    n = _plan_rows(db)
    problem(_plan(client, tokens, local_today(datetime.now(timezone.utc)) - timedelta(days=1)), "day-in-the-past", 422)
    problem(client.post(f"/api/v1/plans/{day.isoformat()}/replan", headers=auth(tokens["supervisor"])), "no-plan", 409)
    problem(client.post(f"/api/v1/plans/{day.isoformat()}/urgent", json={"job": day_jobs[0]},
                        headers=auth(tokens["supervisor"])), "no-plan", 409)
    db.add(Crew(name="no_depot", title="A crew with nowhere to start", team="cleansing", skills=["graffiti"]))
    db.flush()
    p = problem(_plan(client, tokens, day), "crew-without-depot", 422)
    assert p["fields"] == ["crews"] and p["crews"] == ["no_depot"]
    db.execute(text("UPDATE crews SET active = false"))
    problem(_plan(client, tokens, day), "empty-day", 422)
    db.execute(text("UPDATE crews SET active = true WHERE name <> 'no_depot'"))
    db.execute(text("UPDATE jobs SET status = 'on_hold' WHERE status IN ('assigned', 'accepted', 'in_progress')"))
    problem(_plan(client, tokens, day), "empty-day", 422)
    assert _plan_rows(db) == n
    problem(client.get(f"/api/v1/plans/{day.isoformat()}", headers=auth(tokens["supervisor"])), "not-found", 404)


def test_an_urgent_job_off_the_network_is_refused_and_the_plan_stays(client, tokens, db, day_jobs):
    day = tomorrow()
    before = _plan(client, tokens, day).json()
    ref = _report(client, tokens, "fly_tipping", OFF_NETWORK, {"waste_type": ["asbestos_hazardous"], "size": "bag"})
    r = client.post(f"/api/v1/plans/{day.isoformat()}/urgent", json={"job": ref}, headers=auth(tokens["supervisor"]))
    p = problem(r, "off-network", 422)
    assert p["fields"] == ["job"] and "m away" in p["detail"]
    now = client.get(f"/api/v1/plans/{day.isoformat()}", headers=auth(tokens["supervisor"])).json()
    assert now["version"] == before["version"] and _sequences(now) == _sequences(before)


def test_crew_today_arrive_complete_replans_the_rest(client, tokens, db, day_jobs):
    today = local_today(datetime.now(timezone.utc))
    eight = service.Clock.of(today).at(8 * 3600)
    sup = Principal(token_id=0, name="test", role="supervisor")
    plan = service.plan_day(db, sup, today, now=eight)
    crew_id, first = db.execute(select(PlanStop.crew_id, Job.reference).join(Job, Job.id == PlanStop.job_id)
                                .where(PlanStop.plan_id == plan.id).order_by(PlanStop.seq)).first()
    crew_name = db.scalar(select(Crew.name).where(Crew.id == crew_id))
    token = create_token(db, "crew", crew=crew_name, name=f"test-{crew_name}")[1]
    db.commit()  # a savepoint here: a refused request's rollback must not take the token with it
    today_view = client.get("/api/v1/me/plan", headers=auth(token)).json()
    assert today_view["crew"] == crew_name and today_view["version"] == plan.version
    refs = [s["job"] for s in today_view["stops"]]
    assert refs[0] == first and today_view["next"] == first
    assert all(db.scalar(select(Job.crew_id).where(Job.reference == r)) == crew_id for r in refs)
    # Another crew's stop is not mine to arrive at.
    other = db.scalar(select(Job.reference).join(PlanStop, PlanStop.job_id == Job.id)
                      .where(PlanStop.plan_id == plan.id, PlanStop.crew_id != crew_id).limit(1))
    if other:
        problem(client.post(f"/api/v1/me/plan/stops/{other}/arrive", headers=auth(token)), "not-found", 404)
    r = client.post(f"/api/v1/me/plan/stops/{first}/arrive", headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.json()["stops"][0]["arrived_at"] is not None
    assert db.scalar(select(Job.status).where(Job.reference == first)) == "in_progress"
    lat, lon = r.json()["stops"][0]["lat"], r.json()["stops"][0]["lon"]
    pid = photo(client, token, first).json()["id"]
    body = {"lat": lat, "lon": lon, "accuracy_m": 5, "photo_ids": [pid], "client_id": str(uuid.uuid4())}
    done = client.post(f"/api/v1/me/plan/stops/{first}/complete", headers=auth(token), json=body)
    assert done.status_code == 200, done.text
    # The device retries (no answer reached it): the same answer, no second move, no second re-plan.
    again = client.post(f"/api/v1/me/plan/stops/{first}/complete", headers=auth(token), json=body)
    assert again.status_code == 200 and again.json()["version"] == done.json()["version"]
    assert db.scalar(select(Job.status).where(Job.reference == first)) == "completed"
    latest = db.scalar(select(DayPlan).where(DayPlan.day == today, DayPlan.current))
    assert latest.version == plan.version + 1 and latest.reason == "stop completed"
    assert first not in [s["job"] for s in done.json()["stops"]]
    # The rest is re-planned from now: stops of this crew either stay in its route or wait with a reason.
    rest = set(refs[1:])
    view = client.get(f"/api/v1/plans/{today.isoformat()}", headers=auth(tokens["supervisor"])).json()
    mine = next((r_ for r_ in view["routes"] if r_["crew"] == crew_name), {"stops": []})
    assert rest == {s["job"] for s in mine["stops"]} | ({u["job"] for u in view["unassigned"]} & rest)


def test_a_stop_cancelled_by_a_supervisor_replans_the_rest_of_today(client, tokens, db, day_jobs):
    today = local_today(datetime.now(timezone.utc))
    sup = Principal(token_id=0, name="test", role="supervisor")
    plan = service.plan_day(db, sup, today, now=service.Clock.of(today).at(8 * 3600))
    ref = db.scalar(select(Job.reference).join(PlanStop, PlanStop.job_id == Job.id)
                    .where(PlanStop.plan_id == plan.id).order_by(PlanStop.crew_id, PlanStop.seq.desc()).limit(1))
    r = client.post(f"/api/v1/jobs/{ref}/status", json={"status": "cancelled", "note": "not ours"},
                    headers=auth(tokens["supervisor"]))
    assert r.status_code == 200, r.text
    view = client.get(f"/api/v1/plans/{today.isoformat()}", headers=auth(tokens["supervisor"])).json()
    assert view["version"] == plan.version + 1 and view["reason"] == "stop cancelled"
    assert ref not in {s["job"] for r_ in view["routes"] for s in r_["stops"]} | {u["job"] for u in view["unassigned"]}


def test_a_job_off_the_network_is_left_out_of_the_plan_with_the_reason_and_queued(client, tokens, db, day_jobs):
    ref = _report(client, tokens, "graffiti", OFF_NETWORK, {"offensive": "no"})
    _to_crew(client, tokens, db, ref, "cleansing_south")
    plan = _plan(client, tokens, tomorrow())
    assert plan.status_code == 201, plan.text
    left = {u["job"]: u["reason"] for u in plan.json()["unassigned"]}
    assert left[ref].startswith("off the road network (nearest road") and left[ref].endswith("m away)")
    queue = client.get("/api/v1/dispatch/queue?limit=500", headers=auth(tokens["supervisor"])).json()["items"]
    mine = [i for i in queue if i["reference"] == ref]
    assert mine and mine[0]["queue_reason"] == "day plan: " + left[ref]
    assert set(day_jobs) <= {s["job"] for r in plan.json()["routes"] for s in r["stops"]} | set(left)
