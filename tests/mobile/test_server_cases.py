"""Bad input against the real API: wrong address, expired or revoked token, a category removed on the
server, a mock fix, nearby assets offline, and crew work done offline through the outbox."""
from __future__ import annotations

import httpx
import pytest

from mobile.fieldapp.core.account import SignInError
from mobile.fieldapp.core.crew import CrewError, effective_status
from mobile.fieldapp.core.models import FAILED, SENT, WAITING, Fix
from mobile.fieldapp.core.reports import Draft
from tests.mobile.conftest import BATH_CENTRE, LANSDOWN, free_port, make_token, reports_on_server

GRIT_BIN_208 = (51.404381, -2.342137)


def test_sign_in_says_clearly_what_is_wrong(server, core_factory, field_token, expired_token):
    core = core_factory()
    dead = f"http://127.0.0.1:{free_port()}"
    cases = [((dead, field_token), f"Cannot reach the server at {dead}"),
             ((server.url + "/not-kerbside", field_token), "answered, but not as a Kerbside server"),
             (("not a url at all", field_token), "is not a server address"),
             (("", field_token), "Enter the server address"),
             ((server.url, ""), "Enter the token"),
             ((server.url, expired_token), "did not accept the token (the token is unknown, revoked or expired)"),
             ((server.url, "ks_made_up"), "did not accept the token")]
    for args, words in cases:
        with pytest.raises(SignInError) as err:
            core.sign_in(*args)
        assert words in str(err.value), (args, str(err.value))
    assert not core.signed_in
    account = core.sign_in(server.url, field_token)
    assert account.role == "reporter" and core.signed_in and len(core.categories()) >= 9
    crew = core.sign_in(server.url, make_token("crew", crew="cleansing_north"))
    assert crew.role == "crew" and core.role == "crew"


def test_a_token_revoked_with_items_queued_pauses_sync_and_keeps_the_queue(server, core_factory, field_token):
    from server.auth.tokens import revoke
    from server.db import new_session

    core = core_factory()
    core.sign_in(server.url, field_token)
    cat = next(c for c in core.categories() if c.code == "graffiti")
    items = [core.queue_report(Draft(cat, fix=Fix(BATH_CENTRE[0] + i * 1e-4, BATH_CENTRE[1], 6.0),
                                     answers={"offensive": "no"})) for i in range(3)]
    with new_session() as s:
        assert revoke(s, field_token) == 1
        s.commit()
    status = core.sync.run_once()
    assert status.state == "auth" and "unknown, revoked or expired" in status.message
    assert core.outbox.counts() == {WAITING: 3, "sending": 0, SENT: 0, FAILED: 0}
    assert all(core.outbox.get(i.id).attempts == 0 for i in items)  # nothing was counted against them
    assert core.sync.run_once().state == "auth"  # stays paused: no hammering with a dead token
    core.sign_in(server.url, make_token("field_worker"))
    assert core.sync.run_once().sent == 3
    assert set(reports_on_server([i.client_id for i in items]).values()) == {1}
    core.sign_in(server.url, make_token("field_worker"))  # yet another token: it may not read those reports
    assert core.refresh_reports() == 0 and len(core.my_reports()) == 3  # the last known state stays


def test_a_category_removed_on_the_server_keeps_the_draft_and_shows_the_error(server, core_factory, field_token):
    core = core_factory()
    core.sign_in(server.url, field_token)
    offered = httpx.get(server.url + "/api/v1/categories").json()
    chewing_gum = {**offered[0], "code": "chewing_gum", "name": "Chewing gum", "questions": []}
    core.cache.save_categories([*offered, chewing_gum])  # what the device fetched last month
    cat = core.cache.category("chewing_gum")
    item = core.queue_report(Draft(cat, fix=Fix(*BATH_CENTRE, 6.0)))
    assert core.refresh_categories() == ["chewing_gum"]  # the server dropped it
    assert "chewing_gum" not in {c.code for c in core.categories()} and core.cache.category("chewing_gum").removed
    assert core.outbox.get(item.id).state == WAITING  # the draft is still there
    assert core.sync.run_once().failed == 1
    failed = core.outbox.get(item.id)
    assert failed.state == FAILED and failed.error_code == "unknown-category"
    assert "unknown category 'chewing_gum'" in failed.last_error
    assert core.outbox.retry(item.id) and core.sync.run_once().failed == 1  # still kept, still explained
    assert core.outbox.delete(item.id) and core.outbox.get(item.id) is None


def test_a_mock_fix_with_zero_accuracy_is_flagged_on_the_server(server, core_factory, field_token):
    core = core_factory()
    core.sign_in(server.url, field_token)
    cat = next(c for c in core.categories() if c.code == "graffiti")
    item = core.queue_report(Draft(cat, fix=Fix(BATH_CENTRE[0], BATH_CENTRE[1] + 0.001, 0.0, "gps", False),
                                   answers={"offensive": "no"}))
    assert item.payload["mock_location"] is True
    assert core.sync.run_once().sent == 1
    assert "the device reported a mock location" in core.outbox.get(item.id).result["warnings"]


def test_nearby_assets_come_from_the_server_and_from_the_cache_offline(server, core_factory, field_token):
    core = core_factory()
    core.sign_in(server.url, field_token)
    cat = next(c for c in core.categories() if c.code == "grit_bin")
    online, source = core.nearby_assets(cat, GRIT_BIN_208[0] + 0.0001, GRIT_BIN_208[1])
    assert source == "server" and online[0].ref == "208" and 5 < online[0].distance_m < 20
    core.store.set(server_url=f"http://127.0.0.1:{free_port()}")  # no network
    offline, source = core.nearby_assets(cat, GRIT_BIN_208[0] + 0.0001, GRIT_BIN_208[1])
    assert source == "cache" and [a.ref for a in offline] == [a.ref for a in online]


def _assigned_job(url: str) -> tuple[str, tuple[float, float]]:
    import random
    import uuid
    from datetime import datetime, timezone

    reporter, supervisor = make_token("field_worker"), make_token("supervisor")
    for _ in range(10):
        at = (LANSDOWN[0] + random.uniform(-0.0015, 0.0015), LANSDOWN[1] + random.uniform(-0.0015, 0.0015))
        r = httpx.post(url + "/api/v1/reports", headers={"Authorization": f"Bearer {reporter}"}, json={
            "client_id": str(uuid.uuid4()), "category": "graffiti", "lat": at[0], "lon": at[1],
            "observed_at": datetime.now(timezone.utc).isoformat(), "answers": {"offensive": "yes"}})
        assert r.status_code == 201, r.text
        if not r.json()["job"]["attached"]:
            break
    ref = r.json()["job"]["reference"]
    a = httpx.post(f"{url}/api/v1/jobs/{ref}/assign", headers={"Authorization": f"Bearer {supervisor}"},
                   json={"crew": "cleansing_north"})
    assert a.status_code == 200, a.text
    return ref, at


def test_crew_starts_and_completes_a_job_offline_and_it_syncs_later(server, core_factory, tmp_path):
    ref, at = _assigned_job(server.url)
    crew_token = make_token("crew", crew="cleansing_north")
    core = core_factory()
    core.sign_in(server.url, crew_token)
    jobs = core.refresh_jobs()
    job = next(j for j in jobs if j["reference"] == ref)
    assert job["status"] == "assigned" and core.job_detail(ref)["timeline"]
    live_url = core.server_url
    core.store.set(server_url=f"http://127.0.0.1:{free_port()}")  # signal lost
    assert core.job_detail(ref)["reference"] == ref  # the device's copy
    here = Fix(at[0] + 0.00002, at[1], 4.0, "gps", False)
    with pytest.raises(CrewError, match="start the job"):
        core.complete_job(job, here, [])
    core.start_job(job, here)
    with pytest.raises(CrewError, match="photo"):
        core.complete_job(job, here, [])
    photo = tmp_path / "done.jpg"
    from PIL import Image

    Image.new("RGB", (800, 600), (30, 140, 60)).save(photo, "JPEG")
    core.complete_job(job, here, [core.add_photo(photo)], "Scrubbed off")
    assert effective_status(core.outbox, job) == ("completed", True)
    assert core.sync.run_once().state == "offline" and core.outbox.counts()[WAITING] == 3
    core.store.set(server_url=live_url)  # signal back
    while core.outbox.counts()[WAITING]:
        assert core.sync.run_once(force=True).failed == 0
    page = httpx.get(f"{server.url}/api/v1/jobs/{ref}", headers={"Authorization": f"Bearer {crew_token}"}).json()
    assert page["status"] == "completed" and [p["kind"] for p in page["photos"]] == ["completion"]
    assert core.cache.job(ref)["status"] == "completed"  # the device's copy followed the server's answer
