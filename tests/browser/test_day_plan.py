"""The supervisor's day-plan page in Chromium: each crew's route on the map, totals, the left-out jobs."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from playwright.sync_api import expect
from sqlalchemy import text

from server.db import new_session

LONDON = ZoneInfo("Europe/London")


def _spots(n: int) -> list[tuple[float, float]]:
    """Real road junctions in Bath, one per 400 m square (reports there are never duplicates of each other)."""
    with new_session() as s:
        return [tuple(r) for r in s.execute(text("""
            SELECT lat, lon FROM (
              SELECT DISTINCT ON (ST_SnapToGrid(n.geom, 400)) ST_Y(ST_Transform(n.geom, 4326)) AS lat,
                     ST_X(ST_Transform(n.geom, 4326)) AS lon, md5(n.id::text || 'browser') AS k
                FROM road_nodes n, crews c WHERE c.name = 'cleansing_north' AND n.main
                 AND ST_DWithin(n.geom, c.depot, 3500) ORDER BY ST_SnapToGrid(n.geom, 400), n.id) q
            ORDER BY k LIMIT :n"""), {"n": n}).all()]


def test_a_supervisor_sees_each_crews_route_on_the_map_with_totals(page, api, people):
    day = (datetime.now(LONDON) + timedelta(days=41)).date()  # a day no other test plans
    refs = []
    with api.client(people["advisor"]) as field, api.client(people["supervisor"]) as sup:
        for i, (lat, lon) in enumerate(_spots(6)):
            r = field.post("/api/v1/reports", json={
                "client_id": str(uuid.uuid4()), "category": "graffiti", "lat": lat, "lon": lon, "accuracy_m": 5,
                "observed_at": datetime.now(timezone.utc).isoformat(), "answers": {"offensive": "no"}})
            assert r.status_code == 201, r.text
            ref = r.json()["job"]["reference"]
            refs.append(ref)
            crew = ("cleansing_north", "cleansing_south")[i % 2]
            a = sup.post(f"/api/v1/jobs/{ref}/assign", json={"crew": crew})
            assert a.status_code in (200, 409), a.text  # 409: dispatch already gave it to that crew
        plan = sup.post("/api/v1/plans", json={"day": day.isoformat()})
        assert plan.status_code == 201, plan.text
    planned = {s["job"]: r["crew"] for r in plan.json()["routes"] for s in r["stops"]}
    assert set(refs) <= set(planned)
    tab = page.tab
    page.sign_in(people["supervisor"], f"plan.html?day={day.isoformat()}")
    expect(tab.get_by_role("heading", name="Crew day plan")).to_be_visible()
    expect(tab.locator("#summary")).to_contain_text(f"Version {plan.json()['version']}")
    routes = plan.json()["routes"]
    expect(tab.locator("#routes tr.route")).to_have_count(len(routes))
    for r in routes:
        row = tab.locator(f"#routes tr.route[data-crew='{r['crew']}']")
        expect(row.locator("td.stops")).to_have_text(str(len(r["stops"])))
    # One marker per stop, a depot marker per route, and the roads each route drives.
    expect(tab.locator("path.stop-marker")).to_have_count(sum(len(r["stops"]) for r in routes))
    expect(tab.locator("path.depot-marker")).to_have_count(len(routes))
    for crew in {c for c in planned.values()}:
        expect(tab.locator(f"path.route-line.crew-{crew}")).to_have_count(1)
    page.shot("routes")
    # A day without a plan says so.
    tab.locator("#day").fill((day + timedelta(days=1)).isoformat())
    tab.get_by_role("button", name="Show").click()
    expect(tab.locator("#message")).to_have_text("No plan for this day yet.")
    expect(tab.locator("#routes tr")).to_have_count(0)
