"""The Kivy app under Xvfb, driven end to end by tests/mobile/ui_driver.py against the real API.

One Xvfb session runs the whole script (report with GPS, asset, answers and photo; a refused report;
my reports; crew start and completion); the tests below check what it saw, what reached the
server, and that every screenshot in test-artifacts/mobile/ shows something.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest
from PIL import Image

from tests.mobile.conftest import ARTIFACTS, LANSDOWN, ROOT, free_port, make_token

GRIT_BIN = ("208", (51.404381, -2.342137))  # GBIN: Gloucester Rd o/s Turnpike Cottage (B&NES open data)
SCREENS = ("01-signin", "02-signin-unreachable", "03-home", "04-category", "05-report-poor-fix", "06-pin-plan",
           "07-pin-map-no-tiles", "08-report-filled", "09-report-bottom", "10-queue-sent", "11-queue-failed",
           "12-my-reports", "13-home-crew", "13b-today",
           "13c-today-arrived", "14-jobs", "15-job", "16-job-in-progress", "17-job-completed",
           "18-queue-crew")


def _big_photo(path) -> None:
    """A 3000×2250 noisy JPEG (≈5 MB): bigger than the app sends, so it must be downscaled."""
    img = Image.frombytes("RGB", (3000, 2250), os.urandom(3000 * 2250 * 3))
    img.save(path, "JPEG", quality=92)


def _crew_job(url: str) -> tuple[str, tuple[float, float]]:
    """A new graffiti job near Beckford's Tower (Lansdown), assigned by a supervisor to cleansing_north."""
    reporter, supervisor = make_token("field_worker"), make_token("supervisor")
    for _ in range(10):
        # A fresh spot each run: a report within 25 m of an open graffiti job would join that job instead.
        at = (LANSDOWN[0] + random.uniform(-0.0015, 0.0015), LANSDOWN[1] + random.uniform(-0.0015, 0.0015))
        r = httpx.post(f"{url}/api/v1/reports", headers=_auth(reporter), json={
            "client_id": str(uuid.uuid4()), "category": "graffiti", "lat": at[0], "lon": at[1], "accuracy_m": 5.0,
            "observed_at": datetime.now(timezone.utc).isoformat(), "answers": {"offensive": "no"},
            "description": "Tag on the wall by the gate"})
        assert r.status_code == 201, r.text
        if not r.json()["job"]["attached"]:
            break
    job = r.json()["job"]["reference"]
    a = httpx.post(f"{url}/api/v1/jobs/{job}/assign", headers=_auth(supervisor), json={"crew": "cleansing_north"})
    assert a.status_code == 200, a.text
    return job, at


def _plan_today() -> str:
    """Today's crew day plan, made by the real planner as if at 08:00 (the shift has begun, nothing started)."""
    from server.db import new_session
    from server.planning import service

    with new_session() as s:
        today = service.local_today(datetime.now(timezone.utc))
        plan = service.plan_day(s, "test:mobile", today, now=service.Clock.of(today).at(8 * 3600),
                                reason="planned for the app test")
        return f"{today} v{plan.version}"


@pytest.fixture(scope="module")
def ui_run(api_server, tmp_path_factory):
    """Run the scripted app once under xvfb-run; its result JSON."""
    api_server.start()
    work = tmp_path_factory.mktemp("ui")
    photo = work / "camera.jpg"
    _big_photo(photo)
    job, job_at = _crew_job(api_server.url)
    _plan_today()
    cfg = {"url": api_server.url, "dead_url": f"http://127.0.0.1:{free_port()}",
           "field_token": make_token("field_worker"), "crew_token": make_token("crew", crew="cleansing_north"),
           "crew_job": job, "crew_job_at": job_at, "grit_bin_ref": GRIT_BIN[0],
           "grit_bin": GRIT_BIN[1], "photo": str(photo), "data_dir": str(work / "device"),
           "artifacts": str(work / "shots"), "result": str(work / "result.json"), "budget": 150}
    (work / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "KIVY_NO_ARGS": "1", "KIVY_HOME": str(work / "kivy"), "KIVY_CLIPBOARD": "sdl2",
           "KIVY_LOG_MODE": "PYTHON"}
    started = time.monotonic()
    with open(work / "ui-run.log", "wb") as log:
        proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 720x1280x24", sys.executable, "-m",
                               "tests.mobile.ui_driver", str(work / "cfg.json")],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=240)
    result = json.loads((work / "result.json").read_text()) if (work / "result.json").exists() else {}
    result.update(returncode=proc.returncode, seconds=time.monotonic() - started, cfg=cfg, shots=work / "shots")
    # Checked from this run's own folder, then published (another run may share test-artifacts/).
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink(missing_ok=True)
    for f in [*(work / "shots").glob("*.png"), work / "ui-run.log"]:
        shutil.copy2(f, ARTIFACTS / f.name)
    print(f"UI script: {result['seconds']:.1f} s, exit {proc.returncode}")
    return result


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_ui_script_runs_to_the_end(ui_run):
    assert ui_run.get("error") is None, f"{ui_run.get('error')}\n(see {ARTIFACTS / 'ui-run.log'})"
    assert ui_run["returncode"] == 0


def test_every_screen_has_a_screenshot_that_is_not_blank(ui_run):
    shots = {os.path.basename(p)[:-4] for p in ui_run.get("screenshots", [])}
    assert set(SCREENS) <= shots, f"missing: {sorted(set(SCREENS) - shots)}"
    for name in SCREENS:
        with Image.open(ui_run["shots"] / f"{name}.png") as im:
            assert im.size == (720, 1280), name
            colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
            # A blank or uniform frame has one or two colours; a drawn screen has text antialiasing etc.
            assert colours is None or len(colours) > 40, f"{name} looks blank ({len(colours)} colours)"
            extrema = im.convert("L").getextrema()
            assert extrema[1] - extrema[0] > 100, f"{name} has no contrast"


def test_the_screens_said_the_right_things(ui_run):
    assert "Cannot reach the server" in ui_run["wrong_url_message"]
    assert "worse than the 20 m" in ui_run["poor_fix_warning"]
    assert ui_run["assets_source"] == "server" and GRIT_BIN[0] in ui_run["assets_seen"]
    assert ui_run["pin_map_available"] is True  # the map view opened with no tiles reachable
    assert "Pin placed by hand" in ui_run["pin_text"]
    assert ui_run["missing_answer_error"] == "an answer is needed"
    assert ui_run["failed_code"] == "out-of-area" and "outside" in ui_run["failed_reason"]
    assert "Refused" in ui_run["queue_selected_text"]


def test_the_report_from_the_screen_reached_the_server_with_its_photo(ui_run):
    from sqlalchemy import text

    from server.db import new_session

    rep = ui_run["report"]
    assert rep["reference"] and rep["job"] and rep["due_at"]
    r = httpx.get(f"{ui_run['cfg']['url']}/api/v1/reports/{rep['reference']}",
                  headers=_auth(ui_run["cfg"]["field_token"]))
    assert r.status_code == 200, r.text
    assert r.json()["job"]["asset"]["ref"] == GRIT_BIN[0]
    with new_session() as s:
        row = s.execute(text("SELECT r.location_provider, r.accuracy_m, r.mock_location, r.asset_hint, r.answers, "
                             "r.description, p.width, p.height FROM reports r JOIN photos p ON p.report_id = r.id "
                             "WHERE r.reference = :ref"), {"ref": rep["reference"]}).one()
    assert (row.location_provider, row.accuracy_m, row.mock_location) == ("gps", 6.0, False)
    assert row.asset_hint == GRIT_BIN[0] and row.answers == {"problem": "damaged"}
    assert row.description == "Lid hanging off, hinge broken."
    assert max(row.width, row.height) == 2048  # downscaled on the device from 3000 px
    mine = ui_run["my_reports"]
    assert [m["key"] for m in mine] == [rep["reference"]]


def test_the_crew_completed_the_job_with_photo_and_gps(ui_run):
    cfg = ui_run["cfg"]
    assert cfg["crew_job"] in ui_run["jobs_listed"]
    assert ui_run["completion"]["state"] == "sent", ui_run["completion"]
    assert ui_run["completion"]["status"] == "completed" and ui_run["completion"]["flags"] == []
    r = httpx.get(f"{cfg['url']}/api/v1/jobs/{cfg['crew_job']}", headers=_auth(cfg["crew_token"]))
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["status"] == "completed"
    assert [p["kind"] for p in page["photos"]] == ["completion"]
    moves = [e["after"]["status"] for e in reversed(page["timeline"]) if (e.get("after") or {}).get("status")
             and e["actor_role"] == "crew"]
    assert moves == ["accepted", "in_progress", "completed"]
    done = next(e for e in page["timeline"] if (e.get("after") or {}).get("status") == "completed")
    assert done["data"]["lat"] == pytest.approx(cfg["crew_job_at"][0] + 0.00003) and done["data"]["photo_ids"]
    assert done["note"] == "Cleaned off with the pressure washer."


def test_the_crew_saw_today_and_arrived_at_its_next_stop(ui_run):
    cfg = ui_run["cfg"]
    assert cfg["crew_job"] in ui_run["today_rows"]  # the app test's job is in the crew's plan today
    nxt = ui_run["today_next"]
    assert nxt and nxt == ui_run["today_rows"][0] or nxt in ui_run["today_rows"]
    r = httpx.get(f"{cfg['url']}/api/v1/jobs/{nxt}", headers=_auth(cfg["crew_token"]))
    assert r.status_code == 200 and r.json()["status"] in ("in_progress", "completed")
