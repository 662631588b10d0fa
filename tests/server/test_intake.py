"""Report intake against real PostGIS and the real B&NES data."""
from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from server.config import get_settings
from server.jobs.models import Job, JobEvent
from server.outbox.models import OutboxMessage
from server.reports.models import Report
from tests.conftest import auth

BRISTOL = (51.4545, -2.5879)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def unique_grit_bin() -> tuple[str, float, float]:
    """A real grit bin from the source file whose id is not repeated: (id, lat, lon)."""
    path = get_settings().gis_data_dir / "banes" / "banes_grit_bins.geojson"
    feats = json.loads(path.read_text())["features"]
    counts = Counter(str(f["properties"]["feature_id"]) for f in feats)
    for f in feats:
        fid = str(f["properties"]["feature_id"])
        if counts[fid] == 1 and fid not in ("None", ""):
            lon, lat = f["geometry"]["coordinates"][:2]
            return fid, lat, lon
    raise AssertionError("no unique grit bin id in the source")


def body(**over) -> dict:
    fid, lat, lon = unique_grit_bin()
    b = {"client_id": str(uuid.uuid4()), "category": "grit_bin", "lat": lat + 0.00003, "lon": lon,
         "accuracy_m": 5.0, "observed_at": now_iso(), "location_provider": "gps",
         "answers": {"problem": "empty"}, "description": "Bin is empty before the frost"}
    b.update(over)
    return b


def post(client, token, b):
    return client.post("/api/v1/reports", json=b, headers=auth(token))


def test_categories_list_the_catalogue(client):
    r = client.get("/api/v1/categories")
    assert r.status_code == 200
    by = {c["code"]: c for c in r.json()}
    assert {"graffiti", "fly_tipping", "abandoned_vehicle", "street_light", "litter_bin", "grit_bin", "dog_bin",
            "bench", "pothole"} <= set(by)
    assert by["street_light"]["layer"] == "street_lights"
    fault = next(q for q in by["street_light"]["questions"] if q["code"] == "fault")
    assert fault["datatype"] == "singlevaluelist" and fault["required"] is True
    assert all(set(v) == {"key", "name"} for v in fault["values"])


def test_report_next_to_a_real_grit_bin_snaps_to_that_bin(client, tokens, db):
    fid, _, _ = unique_grit_bin()
    r = post(client, tokens["field_worker"], body())
    assert r.status_code == 201, r.text
    out = r.json()
    job = out["job"]
    assert job["asset"]["layer"] == "grit_bins" and job["asset"]["ref"] == fid
    assert job["asset"]["distance_m"] < 10
    assert job["status"] == "new" and job["attached"] is False
    assert job["ward"] and job["street"]
    due = datetime.fromisoformat(job["due_at"])
    assert due > datetime.now(timezone.utc)
    assert out["snap"]["confidence"] > 0.5
    # Events and the dispatch outbox row were written in the same transaction.
    j = db.scalar(select(Job).where(Job.reference == job["reference"]))
    types = [e.type for e in db.scalars(select(JobEvent).where(JobEvent.job_id == j.id).order_by(JobEvent.id))]
    assert types[:2] == ["report_received", "job_opened"] and "snapped" in types and "sla_set" in types
    assert db.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.job_id == j.id,
                                                                          OutboxMessage.destination == "dispatch")) == 1


def test_second_report_on_the_same_bin_attaches_to_the_same_job(client, tokens, db):
    first = post(client, tokens["field_worker"], body()).json()["job"]
    second = post(client, tokens["advisor"], body(lat=body()["lat"] - 0.00002)).json()
    assert second["job"]["reference"] == first["reference"]
    assert second["job"]["attached"] is True and second["job"]["demand_count"] == 2
    assert second["channel"] == "contact_centre"
    j = db.scalar(select(Job).where(Job.reference == first["reference"]))
    assert db.scalar(select(func.count()).select_from(Report).where(Report.job_id == j.id)) == 2
    # Only one dispatch order for the job, however many reports.
    assert db.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.job_id == j.id)) == 1


def test_a_report_far_from_any_grit_bin_goes_to_triage(client, tokens, db):
    # Find a point inside the council area at least 500 m from every grit bin, from the data itself.
    lat, lon = db.execute(text("""
        WITH g AS (SELECT a.geom FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'grit_bins'),
        w AS (SELECT ST_PointOnSurface(geom) p FROM areas WHERE kind = 'ward')
        SELECT ST_Y(ST_Transform(p, 4326)), ST_X(ST_Transform(p, 4326)) FROM w
         WHERE NOT EXISTS (SELECT 1 FROM g WHERE ST_DWithin(g.geom, w.p, 500)) LIMIT 1""")).one()
    r = post(client, tokens["field_worker"], body(lat=lat, lon=lon))
    assert r.status_code == 201, r.text
    job = r.json()["job"]
    assert job["status"] == "triage" and job["asset"] is None
    assert "no asset within" in job["triage_reason"]
    assert job["ward"] is not None


def test_a_report_in_bristol_is_refused_and_nothing_is_stored(client, tokens, db):
    before = db.scalar(select(func.count()).select_from(Report))
    r = post(client, tokens["field_worker"], body(lat=BRISTOL[0], lon=BRISTOL[1]))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    p = r.json()
    assert p["type"].endswith("/out-of-area") and set(p["fields"]) == {"lat", "lon"}
    assert db.scalar(select(func.count()).select_from(Report)) == before


def test_replaying_a_client_id_creates_nothing_new(client, tokens, db):
    b = body()
    first = post(client, tokens["field_worker"], b)
    assert first.status_code == 201
    counts = lambda: (db.scalar(select(func.count()).select_from(Report)),  # noqa: E731
                      db.scalar(select(func.count()).select_from(Job)),
                      db.scalar(select(func.count()).select_from(JobEvent)))
    before = counts()
    again = post(client, tokens["field_worker"], b)
    assert again.status_code == 200 and again.json() == first.json()
    assert counts() == before
    changed = post(client, tokens["field_worker"], {**b, "description": "something else"})
    assert changed.status_code == 409 and changed.json()["type"].endswith("/idempotency-conflict")
    assert changed.json()["fields"] == ["client_id"]
    assert counts() == before


def test_asset_hint_is_checked_not_trusted(client, tokens):
    fid, _, _ = unique_grit_bin()
    ok = post(client, tokens["field_worker"], body(asset_ref=fid))
    assert ok.status_code == 201 and ok.json()["job"]["asset"]["ref"] == fid
    bad = post(client, tokens["field_worker"], body(asset_ref="NO-SUCH-BIN"))
    assert bad.status_code == 422 and bad.json()["type"].endswith("/unknown-asset")
    assert bad.json()["fields"] == ["asset_ref"]


def test_graffiti_duplicates_by_radius_and_offensive_is_urgent(client, tokens):
    fid, lat, lon = unique_grit_bin()
    g = dict(category="graffiti", lat=lat, lon=lon, answers={"offensive": "yes"})
    first = post(client, tokens["field_worker"], body(**g))
    assert first.status_code == 201, first.text
    j = first.json()["job"]
    assert j["priority"] == "urgent" and j["asset"] is None
    due = datetime.fromisoformat(j["due_at"])
    assert timedelta(hours=23) < due - datetime.now(timezone.utc) <= timedelta(hours=24)
    near = post(client, tokens["field_worker"], body(**{**g, "lat": lat + 0.0001}))  # ~11 m away
    assert near.json()["job"]["reference"] == j["reference"] and near.json()["job"]["attached"]
    far = post(client, tokens["field_worker"], body(**{**g, "lat": lat + 0.01}))  # ~1.1 km away
    assert far.status_code == 201 and far.json()["job"]["reference"] != j["reference"]


def test_street_light_due_in_three_working_days(client, tokens, db):
    lat, lon, ref = db.execute(text("""
        SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326)), a.external_ref
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
          ORDER BY a.id LIMIT 1""")).one()
    r = post(client, tokens["field_worker"], body(category="street_light", lat=lat, lon=lon,
                                                  answers={"fault": "out"}))
    assert r.status_code == 201, r.text
    j = r.json()["job"]
    assert j["asset"]["ref"] == ref and j["priority"] == "normal"
    due = datetime.fromisoformat(j["due_at"])
    assert due.weekday() < 5
    assert timedelta(days=1) < due - datetime.now(timezone.utc) < timedelta(days=10)


BAD = [
    ({"lat": 95}, "lat", "validation-error"),
    ({"lon": "west"}, "lon", "validation-error"),
    ({"lat": "51.38"}, "lat", "validation-error"),
    ({"accuracy_m": -1}, "accuracy_m", "validation-error"),
    ({"category": "unicorns"}, "category", "unknown-category"),
    ({"answers": {}}, "answers.problem", "invalid-answer"),
    ({"answers": {"problem": "on fire"}}, "answers.problem", "invalid-answer"),
    ({"answers": {"problem": 3}}, "answers.problem", "invalid-answer"),
    ({"description": "x" * 4001}, "description", "validation-error"),
    ({"description": "<script>alert(1)</script>"}, "description", "validation-error"),
    ({"observed_at": (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()}, "observed_at",
     "validation-error"),
    ({"observed_at": "2026-01-01T10:00:00"}, "observed_at", "validation-error"),
    ({"client_id": "not-a-uuid"}, "client_id", "validation-error"),
    ({"surprise": 1}, "surprise", "validation-error"),
]


@pytest.mark.parametrize("change,field,code", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_input_is_a_4xx_problem_naming_the_field_and_stores_nothing(client, tokens, db, change, field, code):
    before = db.scalar(select(func.count()).select_from(Report))
    r = post(client, tokens["field_worker"], body(**change))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    p = r.json()
    assert p["type"].endswith("/" + code) and field in p["fields"]
    assert db.scalar(select(func.count()).select_from(Report)) == before


def test_nan_latitude_and_oversized_body_are_refused(client, tokens):
    raw = json.dumps(body()).replace('"accuracy_m": 5.0', '"accuracy_m": NaN')
    r = client.post("/api/v1/reports", content=raw, headers={**auth(tokens["field_worker"]),
                                                             "content-type": "application/json"})
    assert r.status_code == 422 and "accuracy_m" in r.json()["fields"]
    big = body(description="y" * 3000)
    big["answers"] = {"problem": "empty", "padding": "z" * (get_settings().max_body_bytes + 10)}
    r = post(client, tokens["field_worker"], big)
    assert r.status_code == 413 and r.json()["type"].endswith("/payload-too-large")


def test_reports_need_a_reporting_role(client, tokens, db):
    assert post(client, "nonsense", body()).status_code == 401
    r = client.post("/api/v1/reports", json=body())
    assert r.status_code == 401 and r.json()["type"].endswith("/unauthorized")
    from server.auth.tokens import create_token

    _, contractor = create_token(db, "contractor", contractor="street-lighting")
    assert post(client, contractor, body()).status_code == 403


def test_intake_checks_run_in_order_json_then_token_then_fields(client, tokens, db):
    """The handler authenticates itself (one thread-pool trip): the order of refusals is FastAPI's."""
    from server.auth.tokens import create_token

    _, contractor = create_token(db, "contractor", contractor="street-lighting")
    before = db.scalar(select(func.count()).select_from(Report))
    json_type = {"content-type": "application/json"}
    bad = {**body(), "lat": "north-ish"}
    r = client.post("/api/v1/reports", content=b'{"lat": ', headers=json_type)  # no token, malformed JSON
    assert r.status_code == 422 and r.json()["type"].endswith("/malformed-json")
    assert client.post("/api/v1/reports", json=bad).status_code == 401
    assert client.post("/api/v1/reports", content=b"", headers=json_type).status_code == 401
    assert post(client, contractor, bad).status_code == 403
    r = post(client, tokens["field_worker"], bad)
    assert r.status_code == 422 and r.json()["type"].endswith("/validation-error") and r.json()["fields"] == ["lat"]
    r = client.post("/api/v1/reports", content=b"", headers={**auth(tokens["field_worker"]), **json_type})
    assert r.status_code == 422 and r.json()["fields"] == ["body"]
    r = client.post("/api/v1/reports", content=json.dumps(body()),
                    headers={**auth(tokens["field_worker"]), "content-type": "text/plain"})
    assert r.status_code == 422 and r.json()["fields"] == ["body"]
    assert db.scalar(select(func.count()).select_from(Report)) == before  # nothing stored by any of them


def test_a_retry_is_answered_only_to_a_live_token_of_a_reporting_role(client, db):
    """The token is looked up in the same statement as the replay check, and judged before it."""
    from server.auth.tokens import create_token

    row, secret = create_token(db, "field_worker", name="soon-revoked")
    _, contractor = create_token(db, "contractor", contractor="street-lighting")
    db.flush()
    b = body()
    first = post(client, secret, b)
    assert first.status_code == 201
    assert post(client, contractor, b).status_code == 403
    row.revoked_at = datetime.now(timezone.utc)
    db.flush()
    r = post(client, secret, b)
    assert r.status_code == 401 and "reference" not in r.json()
    assert post(client, f"{secret}x", b).status_code == 401


def test_nearest_asset_lookup_walks_the_spatial_index(db):
    """The KNN must be an index scan on ix_assets_layer_geom (a full sort is fine on small layers, not on 1M).

    kerbside_locate runs its query with a generic plan (made once per connection): EXPLAIN that query, taken
    from the function as installed, the same way.
    """
    from server.assets.nearest import explain_locate

    db.execute(text("SET LOCAL enable_seqscan = off"))  # as on a big layer, where a scan would be slow
    plan = [line.strip() for line in explain_locate(db, -2.359, 51.3812, "street_lights")]
    knn = [i for i, line in enumerate(plan) if line.startswith("->  Index Scan using ix_assets_layer_geom")]
    # Both the asset candidates and the street are ordered by the index itself (KNN), not by a sort.
    assert len(knn) == 2, "\n".join(plan)
    assert all(any(line.startswith("Order By: (geom <->") for line in plan[i + 1:i + 4]) for i in knn), \
        "\n".join(plan)
    # Boundary and ward are read from the small area parts in one scan of their GiST index (migration 0019).
    assert sum("ix_area_parts_kind_geom" in line for line in plan) == 1, "\n".join(plan)


def test_one_scan_of_the_area_parts_answers_as_the_two_lookups_did(db):
    """kerbside_locate reads the boundary test and the ward from one scan of the parts within 50 m (migration
    0019). At points on and around every ward's edge (inside, outside, in the simplified polygons' gaps, beyond
    the council's boundary) it must give the answers of 0004's two lookups: a boundary part covering the point,
    and the nearest ward part within 50 m, ties by area id."""
    srid = get_settings().srid
    points = db.execute(text("""
        WITH edge AS (SELECT (ST_DumpPoints(ST_Boundary(geom))).geom AS v FROM area_parts WHERE kind = 'ward')
        SELECT ST_X(q), ST_Y(q) FROM (
          SELECT ST_Transform(ST_Translate(v, dx, dy), 4326) AS q
            FROM (SELECT v FROM edge ORDER BY md5(ST_AsText(v)) LIMIT 150) e,
                 (VALUES (0, 0), (3, 0), (-3, 0), (0, 30), (0, -30), (45, 45), (-60, 0), (400, 0)) d(dx, dy)) s
    """)).all()
    assert len(points) == 1200
    expected = text("""
        WITH p AS (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid) AS g)
        SELECT EXISTS (SELECT 1 FROM area_parts b, p WHERE b.kind = 'boundary' AND ST_Covers(b.geom, p.g)),
               (SELECT area_id FROM area_parts w, p WHERE w.kind = 'ward' AND ST_DWithin(w.geom, p.g, 50)
                 ORDER BY ST_Distance(w.geom, p.g), area_id LIMIT 1)""")
    got = text("SELECT inside, ward_id FROM kerbside_locate(:lon, :lat, :srid, '')")
    seen = Counter()
    for lon, lat in points:
        args = {"lon": lon, "lat": lat, "srid": srid}
        want = tuple(db.execute(expected, args).one())
        assert tuple(db.execute(got, args).one()) == want, (lon, lat)
        seen[(want[0], want[1] is not None)] += 1
    # The points did reach every case: inside with a ward, outside with none, and outside within 50 m of one.
    assert seen[(True, True)] and seen[(False, False)] and seen[(False, True)], seen


def test_the_point_worked_out_once_gives_every_answer_the_inlined_one_did(db):
    """kerbside_locate works its point out once, into a variable (migration 0023), where 0019 inlined the
    transformation at every use. At points near lamp columns, near roads, on ward edges and outside the area,
    every column it returns (the point's EWKT, boundary, ward, street, layer, the candidates with their distances
    as JSON text) must be 0019's, to the last digit."""
    from server.migrations.earlier import migration

    before = migration("0019_locate_one_area_scan.py").locate().replace(
        "FUNCTION kerbside_locate(", "FUNCTION pg_temp.kerbside_locate_0019(")
    assert "pg_temp.kerbside_locate_0019(" in before
    db.execute(text(before.replace(":", r"\:")))
    srid = get_settings().srid
    points = db.execute(text("""
        WITH lights AS (SELECT a.geom FROM assets a JOIN asset_layers l ON l.id = a.layer_id
                         WHERE l.name = 'street_lights' ORDER BY md5(a.id::text) LIMIT 150),
             edges AS (SELECT (ST_DumpPoints(ST_Boundary(geom))).geom AS geom FROM area_parts WHERE kind = 'ward'),
             picked AS (SELECT geom FROM lights
                        UNION ALL (SELECT geom FROM edges ORDER BY md5(ST_AsText(geom)) LIMIT 60))
        SELECT ST_X(q), ST_Y(q) FROM (
          SELECT ST_Transform(ST_Translate(geom, dx, dy), 4326) AS q
            FROM picked, (VALUES (0, 0), (2.5, -1.5), (-7, 4), (45, 45), (-400, 0)) d(dx, dy)) s
    """)).all()
    assert len(points) == 1050
    now = text("SELECT l::text, json_array_length(l.candidates) FROM kerbside_locate(:lon, :lat, :srid, :layer) l")
    then = text("SELECT l::text, json_array_length(l.candidates) "
                "FROM pg_temp.kerbside_locate_0019(:lon, :lat, :srid, :layer) l")
    seen = Counter()
    for lon, lat in points:
        for layer in ("street_lights", ""):
            args = {"lon": lon, "lat": lat, "srid": srid, "layer": layer}
            want = tuple(db.execute(then, args).one())
            assert tuple(db.execute(now, args).one()) == want, (lon, lat, layer)
            seen[(layer, want[1] > 0, "SRID=" in want[0])] += 1
    # every point was located; the lamp-column lookups found candidates, the layer-less ones none
    assert seen[("street_lights", True, True)] == 1050 and seen[("", False, True)] == 1050, seen


def test_the_write_path_reads_jobs_and_reports_by_index_even_while_they_are_small(client, tokens, db):
    """A new installation plans the intake when `jobs` and `reports` hold a handful of rows; a connection keeps
    those plans (PL/pgSQL, prepared statements and foreign-key checks all cache theirs), so a plan that reads
    the whole table would get slower with every report until autoanalyze happens to replan it.

    Here the planner is made to prefer scans as it does on a near-empty table (index pages priced very
    high), and the plans are made afresh on this connection. A run of reports (more than the five custom
    plans before a generic one is kept) must still not read either table sequentially: the scan counts this
    connection has not yet reported say so (read before and after; it reports them only when idle).
    """
    def scans() -> dict[str, tuple[int, int]]:
        return {row.relname: (row.seq_scan, row.idx_scan) for row in db.execute(text(
            "SELECT relname, seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname IN ('jobs', 'reports')"))}

    db.execute(text("SET LOCAL random_page_cost = 100000"))
    db.execute(text("DISCARD PLANS"))
    before = scans()
    for i in range(8):  # graffiti about 1 km apart in Bath: eight new jobs, each after a search by radius
        r = post(client, tokens["field_worker"], body(category="graffiti", lat=51.37 + 0.01 * (i % 4),
                                                      lon=-2.38 + 0.015 * (i // 4), answers={"offensive": "no"}))
        assert r.status_code == 201 and r.json()["job"]["attached"] is False, r.text
    again = post(client, tokens["field_worker"], {**body(), "client_id": r.json()["client_id"]})
    assert again.status_code == 409  # the replay lookup ran too
    after = scans()
    delta = {t: (after[t][0] - before.get(t, (0, 0))[0], after[t][1] - before.get(t, (0, 0))[1]) for t in after}
    assert delta["jobs"][0] == 0 and delta["jobs"][1] > 0, delta
    assert delta["reports"][0] == 0 and delta["reports"][1] > 0, delta


def test_a_category_ward_or_token_that_reports_refer_to_cannot_be_deleted(client, db):
    """Those references are guarded from the referenced tables' side (migration 0006), not by keys that would
    lock the category's, ward's and token's rows in every report's transaction."""
    from sqlalchemy.exc import IntegrityError

    from server.auth.tokens import create_token

    row, secret = create_token(db, "field_worker", name="guarded")
    db.flush()
    r = post(client, secret, body())
    assert r.status_code == 201, r.text
    rep = db.scalar(select(Report).where(Report.reference == r.json()["reference"]))
    assert rep.ward_id is not None and rep.token_id == row.id
    for statement, params in (("DELETE FROM categories WHERE code = :k", {"k": "grit_bin"}),
                              ("UPDATE categories SET code = 'grit_bin_2' WHERE code = :k", {"k": "grit_bin"}),
                              ("DELETE FROM areas WHERE id = :k", {"k": rep.ward_id}),
                              ("DELETE FROM api_tokens WHERE id = :k", {"k": row.id})):
        with pytest.raises(IntegrityError, match="is referred to by jobs or reports"):
            with db.begin_nested():
                db.execute(text(statement), params)
    # What is not referred to, or not a key, changes as before.
    with db.begin_nested():
        db.execute(text("UPDATE categories SET name = name || ' (renamed)' WHERE code = 'grit_bin'"))
        db.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = :k"), {"k": row.id})
        other, _ = create_token(db, "field_worker", name="never-used")
        db.flush()
        assert db.execute(text("DELETE FROM api_tokens WHERE id = :k"), {"k": other.id}).rowcount == 1
