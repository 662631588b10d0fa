"""Contractor A never sees a byte of contractor B's jobs: lists, single jobs, reports, photos, OGC, Open311.

Each check also has its positive control (A does see its own job through the same door), so an
empty answer cannot pass for isolation. B's job carries marker strings (a word in its text, its
contractor reference, its job and report references) that must not appear in anything A receives.
Open311 reads are public by design (GeoReport v2, like FixMyStreet): there A's api_key must add
nothing to what an anonymous caller gets, and B's private contractor reference never appears.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.jobs.models import Job
from tests.security.world import auth


@pytest.fixture
def api(env):
    """A client on the module's app, inside a savepoint rolled back after the test."""
    app, connection, w = env
    savepoint = connection.begin_nested()
    try:
        yield TestClient(app), w, connection
    finally:
        savepoint.rollback()


def clean(w, body: bytes, sent: str = "") -> None:
    """No marker of B's in what A received (other than A's own request echoed back, as in a 404's detail)."""
    leaked = [m for m in w.marker_b if m.encode() in body and m not in sent]
    assert not leaked, f"contractor A received contractor B's {leaked}"


@pytest.mark.parametrize("url", ["/api/v1/jobs", "/api/v1/jobs?status=open", "/api/v1/contractor/jobs",
                                 "/api/v1/jobs?limit=500", "/api/v1/jobs?bbox=-3.0,51.2,-2.0,51.5"])
def test_lists_hold_only_a_own_jobs(api, url):
    c, w, _ = api
    r = c.get(url, headers=auth(w.tokens["contractor_a"]))
    assert r.status_code == 200
    refs = {j["reference"] for j in r.json()["items"]}
    assert w.job_a in refs and w.job_b not in refs and w.job_crew not in refs
    assert {j["assignee"]["name"] for j in r.json()["items"]} == {"street-lighting"}
    clean(w, r.content)
    # The same door shows B its own job: the filter is by holder, not an empty answer.
    mine_b = c.get(url, headers=auth(w.tokens["contractor_b"])).json()["items"]
    assert w.job_b in {j["reference"] for j in mine_b} and w.job_a not in {j["reference"] for j in mine_b}


@pytest.mark.parametrize("q", ["job_b", "report_b", "contractor_ref_b", "marker"])
def test_searching_for_b_finds_nothing(api, q):
    c, w, _ = api
    term = {"job_b": w.job_b, "report_b": w.report_b, "contractor_ref_b": w.marker_b[1], "marker": w.marker_b[0]}[q]
    r = c.get("/api/v1/jobs", params={"q": term}, headers=auth(w.tokens["contractor_a"]))
    assert r.status_code == 200 and r.json()["total"] == 0 and r.json()["items"] == []
    # An adviser finds it with the same search (so the term is a real one).
    if q != "marker":
        assert c.get("/api/v1/jobs", params={"q": term}, headers=auth(w.tokens["advisor"])).json()["total"] >= 1


def test_single_job_report_and_photos_of_b_are_404_and_empty_of_b(api):
    c, w, _ = api
    a = auth(w.tokens["contractor_a"])
    for url in (f"/api/v1/jobs/{w.job_b}", f"/api/v1/reports/{w.report_b}", f"/api/v1/photos/{w.photo_b}",
                f"/api/v1/photos/{w.photo_b}?thumbnail=true", f"/ogc/collections/jobs/items/{w.job_b}"):
        r = c.get(url, headers=a)
        assert r.status_code == 404, url
        clean(w, r.content, sent=url)
    # Positive control: A reads its own job, report and photo through the same URLs.
    page = c.get(f"/api/v1/jobs/{w.job_a}", headers=a)
    assert page.status_code == 200 and page.json()["reference"] == w.job_a
    clean(w, page.content)
    assert c.get(f"/api/v1/reports/{w.report_a}", headers=a).status_code == 200
    photo = c.get(f"/api/v1/photos/{w.photo_a}", headers=a)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"


def test_a_cannot_move_b_job_by_any_door(api):
    c, w, connection = api
    before = connection.execute(select(Job.status, Job.updated_at).where(Job.reference == w.job_b)).one()
    r = c.post(f"/api/v1/contractor/jobs/{w.job_b}/updates", headers=auth(w.tokens["contractor_a"]),
               json={"update_id": f"x-{uuid.uuid4()}", "status": "accepted"})
    assert r.status_code == 404
    clean(w, r.content, sent=w.job_b)
    r = c.post("/open311/v2/servicerequestupdates.json", data={
        "api_key": w.tokens["contractor_a"], "service_request_id": w.report_b, "update_id": f"x-{uuid.uuid4()}",
        "status": "IN_PROGRESS", "updated_datetime": datetime.now(timezone.utc).isoformat()})
    assert r.status_code == 404
    for job in (w.job_b, w.report_b):
        r = c.post(f"/api/v1/jobs/{job}/status", headers=auth(w.tokens["contractor_a"]), json={"status": "accepted"})
        assert r.status_code == 403
    assert connection.execute(select(Job.status, Job.updated_at).where(Job.reference == w.job_b)).one() == before
    # Positive control: the same update on A's own job is applied.
    ok = c.post(f"/api/v1/contractor/jobs/{w.job_a}/updates", headers=auth(w.tokens["contractor_a"]),
                json={"update_id": f"x-{uuid.uuid4()}", "status": "accepted"})
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"


def test_ogc_jobs_collection_holds_only_a_jobs(api):
    c, w, _ = api
    r = c.get("/ogc/collections/jobs/items", params={"limit": 1000}, headers=auth(w.tokens["contractor_a"]))
    assert r.status_code == 200
    ids = {f["id"] for f in r.json()["features"]}
    assert w.job_a in ids and w.job_b not in ids and w.job_crew not in ids
    assert r.json()["numberMatched"] == len(ids)
    clean(w, r.content)
    b = c.get("/ogc/collections/jobs/items", params={"limit": 1000}, headers=auth(w.tokens["contractor_b"])).json()
    assert w.job_b in {f["id"] for f in b["features"]}


@pytest.mark.parametrize("url", ["/open311/v2/requests.json", "/open311/v2/requests.xml",
                                 "/open311/v2/servicerequestupdates.json", "/open311/v2/requests/{report_b}.json"])
def test_open311_gives_a_no_more_than_the_public_view(api, url):
    c, w, _ = api
    url = url.format(report_b=w.report_b)
    public = c.get(url)
    as_a = c.get(url, params={"api_key": w.tokens["contractor_a"]})
    assert public.status_code == as_a.status_code == 200
    # B's contractor reference is private to B and us; nothing about B reaches A beyond the public view.
    assert w.marker_b[1].encode() not in as_a.content
    extra = [m for m in w.marker_b if m.encode() in as_a.content and m.encode() not in public.content]
    assert not extra, f"contractor A's api_key revealed {extra} that the public view does not"
