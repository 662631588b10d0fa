"""Bench (c), issue 15: 10 crews × 300 jobs on the real B&NES road graph: plan ≤ 5 s incl. matrix, re-plan ≤ 1 s.

Runs against a database the importer has built the road graph in (default: $KERBSIDE_DATABASE_URL):
    .venv/bin/python -m bench.plan_scale --crews 10 --jobs 300 --repeat 3
Jobs are real road junctions within --radius-m of the Midland Road depot (reproducible: --seed), with the
cleansing categories' service times and a mix of due times; crews work 07:00–19:00 with all four skills.
Each round uses a fresh day, so the matrix is computed cold (pgr_dijkstraCostMatrix), then solved with
VROOM; the re-plan marks each crew's first stop done and its second started, freezes, and re-solves the
rest (the day's matrix cached); the urgent insertion adds one new node (one-to-many Dijkstra both ways).
Nothing is written to the database.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import date, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from server.db import get_engine
from server.planning import matrix as mx
from server.planning import rules

DEPOT = (-2.3772, 51.3844)
CATS = ["graffiti", "fly_tipping", "litter_bin", "dog_bin"]


def _points(session: Session, n: int, radius_m: float, seed: int) -> list[int]:
    rows = session.execute(text("""
        SELECT id FROM road_nodes WHERE main AND ST_DWithin(geom, ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4326),
               27700), :r) ORDER BY md5(id::text || :seed) LIMIT :n"""),
                           {"x": DEPOT[0], "y": DEPOT[1], "r": radius_m, "seed": str(seed), "n": n}).scalars().all()
    return list(rows)


def one_round(session: Session, crews_n: int, jobs_n: int, radius_m: float, seed: int, day: date) -> dict:
    rng = random.Random(seed)
    digest = mx.graph_digest(session)
    t0 = time.perf_counter()
    depot = mx.snap_points(session, "SELECT 0 AS key, ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 27700) "
                                    "AS geom", {"x": DEPOT[0], "y": DEPOT[1]})[0].node
    nodes = _points(session, jobs_n + 1, radius_m, seed)
    job_nodes, extra = nodes[:jobs_n], nodes[jobs_n]
    all_nodes = [depot] + job_nodes
    m = mx.travel_matrix(session, day, all_nodes, digest)
    t_matrix = time.perf_counter() - t0
    crews = [rules.CrewIn(i + 1, 0, 7 * 3600, 19 * 3600, frozenset(CATS), 10) for i in range(crews_n)]
    jobs = [rules.JobIn(1000 + k, k + 1, rng.choice(CATS), rng.choice(["normal"] * 6 + ["urgent", "low"]),
                        rng.choice([None, None, 12 * 3600, 16 * 3600, 19 * 3600]), None) for k in range(jobs_n)]
    t1 = time.perf_counter()
    plan = rules.solve(crews, jobs, m, earliest_s=0)
    t_solve = time.perf_counter() - t1
    # Re-plan at 10:00: each crew's first stop done, second started; pinned to their crews as after a plan.
    by_id = {j.id: j for j in jobs}
    t2 = time.perf_counter()
    starts, frozen, free_jobs = {}, set(), []
    for c in crews:
        stops = plan.routes[c.id].stops
        prog = [rules.Progress(rules.JobIn(s.job_id, s.index, by_id[s.job_id].category, by_id[s.job_id].priority,
                                           by_id[s.job_id].due_s, c.id),
                               done=i == 0, started=i == 1, started_s=10 * 3600 - 300 if i == 1 else None)
                for i, s in enumerate(stops)]
        fixed, free, at, t = rules.freeze(prog, c.depot, 10 * 3600, c.start_s, m)
        starts[c.id] = (at, t)
        frozen |= {s.job_id for s in fixed}
        free_jobs += free
    replan = rules.solve_per_crew(crews, free_jobs, m, earliest_s=10 * 3600, starts=starts)
    t_replan = time.perf_counter() - t2
    # Urgent insertion: one new place (its matrix row and column), best crew, others untouched.
    t3 = time.perf_counter()
    m2 = mx.travel_matrix(session, day, all_nodes + [extra], digest)
    urgent = rules.JobIn(99999, len(all_nodes), "fly_tipping", "emergency", None)
    state = {c.id: (c, [], [by_id[s.job_id] for s in replan.routes[c.id].stops], *starts[c.id]) for c in crews}
    choice = rules.insert_urgent(urgent, state, m2)
    t_urgent = time.perf_counter() - t3
    placed = sum(len(r.stops) for r in plan.routes.values())
    return {"matrix_s": t_matrix, "solve_s": t_solve, "plan_s": t_matrix + t_solve, "replan_s": t_replan,
            "urgent_s": t_urgent, "placed": placed, "unassigned": len(plan.unassigned),
            "drive_h": sum(r.travel_s for r in plan.routes.values()) / 3600, "urgent_crew": choice and choice[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crews", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--radius-m", type=float, default=6000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=15)
    a = ap.parse_args()
    out = []
    with Session(get_engine()) as session:
        for r in range(a.repeat):
            day = date(2040, 1, 1) + timedelta(days=r)  # a day never planned: a cold matrix
            res = one_round(session, a.crews, a.jobs, a.radius_m, a.seed + r, day)
            out.append(res)
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()), flush=True)
        session.rollback()
    for k in ("matrix_s", "solve_s", "plan_s", "replan_s", "urgent_s"):
        vals = [o[k] for o in out]
        print(f"{k}: median {statistics.median(vals):.2f} max {max(vals):.2f}")


if __name__ == "__main__":
    main()
