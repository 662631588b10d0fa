"""Bench (b), issue 15: a real B&NES day planned three ways on the real road graph.

    .venv/bin/python -m bench.real_day [--day 2017-02-15] [--window-days 10]

The day's open crew jobs come from the FixMyStreet sample (settings.gis_data_dir, read in place): reports
of crew categories created in the `--window-days` before the day and not marked fixed before it (the
default day has the most: 20). Each goes to the crew dispatch would give it (cleansing by side of the
Avon from the crew zones, highways, the abandoned-vehicle officer), due by its category's SLA from its
creation (working days, bank holidays). Crews work 07:00–19:00 from the Midland Road depot. Compared:
  one-by-one      each crew does its jobs in the order they were reported (today: no plan);
  nearest         each crew goes to its nearest unvisited job next (greedy nearest neighbour);
  vroom           the planner (rules.solve_per_crew, as POST /plans runs it).
Reported per method: total drive time, jobs done, SLA breaches (finished after due), jobs left over.
"""
from __future__ import annotations

import argparse
import csv
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from server.catalogue.service import known_category
from server.config import get_settings
from server.db import get_engine
from server.jobs import sla
from server.planning import matrix as mx
from server.planning import rules

CATEGORY = {"Potholes": "pothole", "Flytipping": "fly_tipping", "Graffiti": "graffiti",
            "Street cleaning": "litter_bin", "Dog fouling": "dog_bin", "Abandoned vehicles": "abandoned_vehicle"}
TEAM = {"pothole": "highways", "abandoned_vehicle": "av_officer"}  # the rest: cleansing by zone
DEPOT = (-2.3772, 51.3844)
LONDON = ZoneInfo("Europe/London")


def open_jobs(day: date, window: int) -> list[dict]:
    """The day's open crew jobs from the FixMyStreet sample."""
    path = get_settings().gis_data_dir / "banes" / "Fix_My_Street_Sample_Dataset.csv"
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            cat = CATEGORY.get(r["category"])
            if not cat or r["state"] == "hidden":
                continue
            created = datetime.fromisoformat(r["created"].replace(" UTC", "+00:00"))
            last = datetime.fromisoformat(r["lastupdate"].replace(" UTC", "+00:00"))
            fixed_before = r["state"].startswith("fixed") and last.astimezone(LONDON).date() < day
            if day - timedelta(days=window) < created.astimezone(LONDON).date() <= day and not fixed_before:
                out.append({"url": r["url"], "category": cat, "created": created,
                            "lat": float(r["latitude"]), "lon": float(r["longitude"])})
    return out


def crew_of(session: Session, job: dict) -> str:
    if job["category"] in TEAM:
        return TEAM[job["category"]]
    zone = session.execute(text(
        "SELECT code FROM areas WHERE kind = 'crew_zone' AND code IN ('bath-north', 'bath-south') AND ST_Covers(geom, "
        "ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 27700)) LIMIT 1"), job).scalar()
    return "cleansing_south" if zone == "bath-south" else "cleansing_north"


def run_order(crew: rules.CrewIn, order: list[rules.JobIn], m) -> tuple[list[rules.Stop], int, int]:
    """Times along an order, stopping before a job that would end the day after the shift."""
    done = []
    for j in order:
        stops, end, _ = rules.evaluate(done + [j], crew.depot, crew.start_s, crew.depot, m)
        if end <= crew.end_s:
            done.append(j)
    stops, end, back = rules.evaluate(done, crew.depot, crew.start_s, crew.depot, m)
    return stops, end, back


def nearest(crew: rules.CrewIn, jobs: list[rules.JobIn], m) -> list[rules.JobIn]:
    left, at, out = list(jobs), crew.depot, []
    while left:
        j = min(left, key=lambda x: m[at][x.index])
        out.append(j)
        left.remove(j)
        at = j.index
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day", type=date.fromisoformat, default=date(2017, 2, 15))
    ap.add_argument("--window-days", type=int, default=10)
    a = ap.parse_args()
    midnight = datetime.combine(a.day, time(0), tzinfo=LONDON).astimezone(timezone.utc)
    jobs = open_jobs(a.day, a.window_days)
    with Session(get_engine()) as s:
        digest = mx.graph_digest(s)
        pts = [{"key": i, "lat": j["lat"], "lon": j["lon"]} for i, j in enumerate(jobs)]
        values = " UNION ALL ".join(f"SELECT {p['key']} AS key, ST_Transform(ST_SetSRID(ST_MakePoint({p['lon']}, "
                                    f"{p['lat']}), 4326), 27700) AS geom" for p in pts)
        snaps = mx.snap_points(s, values + f" UNION ALL SELECT -1, ST_Transform(ST_SetSRID(ST_MakePoint({DEPOT[0]}, "
                                         f"{DEPOT[1]}), 4326), 27700)", {})
        off = [i for i in range(len(jobs)) if snaps[i].node is None]
        nodes = sorted({snaps[-1].node} | {snaps[i].node for i in range(len(jobs)) if i not in off})
        index = {n: k for k, n in enumerate(nodes)}
        m = mx.travel_matrix(s, a.day, nodes, digest)
        names = ["cleansing_north", "cleansing_south", "highways", "av_officer"]
        skills = {"cleansing_north": CATEGORY.values(), "cleansing_south": CATEGORY.values(),
                  "highways": ["pothole"], "av_officer": ["abandoned_vehicle"]}
        crews = {n: rules.CrewIn(k + 1, index[snaps[-1].node], 7 * 3600, 19 * 3600, frozenset(skills[n]), 10)
                 for k, n in enumerate(names)}
        by_crew: dict[str, list[rules.JobIn]] = {n: [] for n in names}
        due: dict[int, int] = {}
        for i, j in enumerate(jobs):
            if i in off:
                continue
            policy = known_category(j["category"]).priorities["normal"].sla.model_dump()
            d = sla.due_at(policy, j["created"])
            due[i] = int((d - midnight).total_seconds())
            crew = crew_of(s, j)
            by_crew[crew].append(rules.JobIn(i, index[snaps[i].node], j["category"], "normal", None,
                                             crews[crew].id))
    print(f"{a.day}: {len(jobs)} open crew jobs ({len(off)} off the road network); "
          + ", ".join(f"{n} {len(v)}" for n, v in by_crew.items()))
    already_late = sum(1 for v in due.values() if v < 7 * 3600)
    print(f"jobs already past due at 07:00: {already_late}")
    results = {}
    for method in ("one-by-one", "nearest", "vroom"):
        drive, done, late = 0, 0, 0
        for n, js in by_crew.items():
            crew = crews[n]
            if method == "one-by-one":
                order = sorted(js, key=lambda j: jobs[j.id]["created"])
            elif method == "nearest":
                order = nearest(crew, js, m)
            else:
                plan = rules.solve_per_crew([crew], js, m, replan=False)
                order = [next(j for j in js if j.id == st.job_id) for st in plan.routes[crew.id].stops]
            stops, end, back = run_order(crew, order, m)
            drive += sum(st.travel_s for st in stops) + (back if stops else 0)
            done += len(stops)
            late += sum(1 for st in stops if st.depart_s > due[st.job_id])
        results[method] = (drive, done, late)
        left = sum(len(v) for v in by_crew.values()) - done
        print(f"{method:11} drive {drive / 60:6.1f} min ({drive / 60 / max(done, 1):4.1f} min a job)  "
              f"jobs done {done:3}  "
              f"SLA breaches {late:2}  left over {left}")
    base = results["one-by-one"][0]
    for method in ("nearest", "vroom"):
        print(f"{method}: drive time {100 * (results[method][0] - base) / base:+.1f} % vs one-by-one")


if __name__ == "__main__":
    main()
