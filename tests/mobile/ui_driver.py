"""Drive the real Kivy app under Xvfb: a scripted field worker, then a crew, with screenshots.

Run by tests/mobile/test_ui.py as `xvfb-run … python -m tests.mobile.ui_driver CONFIG.json`; writes
a JSON result (what the screens showed, screenshots taken, any failure) for the tests to check.
The script is a generator: it yields a number (wait seconds), Until(predicate) or Shot(name).
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")

from kivy.config import Config  # noqa: E402

Config.set("graphics", "width", "720")
Config.set("graphics", "height", "1280")

from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402

from mobile.fieldapp.core.models import Fix  # noqa: E402
from mobile.fieldapp.device.camera import FileCamera  # noqa: E402
from mobile.fieldapp.device.location import FakeLocation  # noqa: E402
from mobile.fieldapp.ui.app import FieldApp  # noqa: E402


@dataclass
class Until:
    """Wait until check() is true (polled), or fail with `what` after timeout seconds."""

    what: str
    check: object
    timeout: float = 20.0


@dataclass
class Shot:
    """Save a screenshot of the current screen as NAME.png."""

    name: str


def press(widget) -> None:
    """Tap a button the way a finger does (press, release)."""
    widget.trigger_action(duration=0)


def row(screen, key: str):
    """The visible RecycleView row with this key."""
    for view in screen.ids.list.children[0].children:
        if getattr(view, "key", None) == key:
            return view
    return None


def script(app: FieldApp, cfg: dict, out: dict):
    """The field worker's morning, then the crew's job."""
    loc: FakeLocation = app.location
    signin = app.screen("signin")
    yield Until("sign-in screen", lambda: app.root.current == "signin")
    yield Shot("01-signin")

    # A wrong address first: a clear message, no crash.
    signin.ids.url.text, signin.ids.token.text = cfg["dead_url"], cfg["field_token"]
    press(signin.ids.submit)
    yield Until("unreachable message", lambda: "Cannot reach" in signin.message)
    out["wrong_url_message"] = signin.message
    yield Shot("02-signin-unreachable")

    signin.ids.url.text = cfg["url"]
    press(signin.ids.submit)
    yield Until("home after sign-in", lambda: app.root.current == "home")
    yield Shot("03-home")

    # Report a damaged grit bin, starting with a poor fix near a real bin.
    bin_lat, bin_lon = cfg["grit_bin"]
    loc.push(Fix(bin_lat + 0.00012, bin_lon, 45.0, "network", False))
    press(app.screen("home").ids.new_report)
    yield Until("category screen", lambda: app.root.current == "category")
    yield Shot("04-category")
    grid = app.screen("category").ids.grid
    press(next(b for b in grid.children if getattr(b, "code", None) == "grit_bin"))
    report = app.screen("report")
    yield Until("report screen with a poor-fix warning", lambda: app.root.current == "report"
                and report.gps_level == "warn" and "worse than" in report.gps_warnings)
    out["poor_fix_warning"] = report.gps_warnings
    yield Until("assets from the server", lambda: report.assets_source == "server" and report.assets)
    yield Shot("05-report-poor-fix")
    loc.push(Fix(bin_lat + 0.00005, bin_lon, 6.0, "gps", False))
    yield Until("good fix", lambda: report.gps_level == "ok")
    out["assets_seen"] = [a.ref for a in report.assets]
    out["assets_source"] = report.assets_source

    # Look at the pin screen (plan and map with no tiles reachable), nudge, then go back to GPS.
    press(report.ids.adjust_pin)
    pin = app.screen("pin")
    yield Until("pin screen", lambda: app.root.current == "pin")
    yield 0.3
    yield Shot("06-pin-plan")
    press(pin.ids.north)
    out["pin_map_available"] = pin.map_available
    if pin.map_available:
        press(pin.ids.toggle_map)
        yield 1.0
        yield Shot("07-pin-map-no-tiles")
        press(pin.ids.toggle_map)
    press(pin.ids.use)
    yield Until("back on the report with a hand-placed pin", lambda: app.root.current == "report"
                and report.draft.pin is not None)
    out["pin_text"] = report.location_text
    press(report.ids.use_gps)

    # Pick the bin the fix is beside, answer, and try to send too early (required answer missing).
    wanted = cfg["grit_bin_ref"]
    yield Until("the bin in the list", lambda: wanted in report.asset_buttons)
    press(report.asset_buttons[wanted])
    press(report.ids.send)
    yield Until("form error for the missing answer", lambda: report.errors["problem"].text != "")
    out["missing_answer_error"] = report.errors["problem"].text
    press(report.choices["problem"]["damaged"])
    report.ids.description.text = "Lid hanging off, hinge broken."
    press(report.ids.take_photo)
    yield Until("photo thumbnail", lambda: len(report.draft.photos) == 1, 30)
    yield Shot("08-report-filled")
    report.ids.scroll.scroll_y = 0
    yield 0.3
    yield Shot("09-report-bottom")
    out["photo_kept"] = report.draft.photos[0]
    press(report.ids.send)
    queue = app.screen("queue")
    yield Until("queue screen", lambda: app.root.current == "queue")
    core = app.core
    yield Until("report sent", lambda: any(i.state == "sent" for i in core.outbox.items()), 40)
    item = core.outbox.items()[0]
    out["report"] = {"reference": item.reference, "job": item.job_reference, "due_at": item.due_at,
                     "client_id": item.client_id, "photos": [p.server_id for p in item.photos]}
    queue.refresh()
    yield 0.3
    yield Shot("10-queue-sent")

    # A report outside the council area: refused, kept with the server's reason; then deleted.
    loc.push(Fix(51.5072, -0.1276, 5.0, "gps", False))  # Westminster
    app.go("category")
    press(next(b for b in grid.children if getattr(b, "code", None) == "graffiti"))
    yield Until("report screen", lambda: app.root.current == "report" and report.draft.fix.lat > 51.5)
    press(report.choices["offensive"]["no"])
    press(report.ids.send)
    yield Until("refused", lambda: core.outbox.counts()["failed"] == 1, 40)
    failed = core.outbox.items(states=("failed",))[0]
    out["failed_reason"] = failed.last_error
    out["failed_code"] = failed.error_code
    queue.refresh()
    yield 0.3
    press(row(queue, str(failed.id)))
    yield Until("actions shown", lambda: queue.selected == failed.id)
    out["queue_selected_text"] = queue.selected_text
    yield Shot("11-queue-failed")
    press(queue.ids.delete)
    yield Until("deleted", lambda: core.outbox.get(failed.id) is None)

    app.go("myreports")
    mine = app.screen("myreports")
    yield Until("my reports refreshed", lambda: mine.message.startswith("Refreshed"), 30)
    out["my_reports"] = [dict(r) for r in mine.rows]
    yield Shot("12-my-reports")

    # Crew: sign out, sign in with the crew token, start and complete the job.
    app.go("home")
    press(app.screen("home").ids.sign_out)
    yield Until("sign-in screen", lambda: app.root.current == "signin")
    signin.ids.token.text = cfg["crew_token"]
    press(signin.ids.submit)
    yield Until("crew home", lambda: app.root.current == "home" and app.screen("home").crew)
    yield Shot("13-home-crew")
    press(app.screen("home").ids.today)
    today = app.screen("today")
    yield Until("today's plan", lambda: app.root.current == "today" and today.message.endswith(".")
                and not today.message.startswith("Refreshing"), 30)
    out["today_rows"] = [r["key"] for r in today.rows]
    out["today_message"] = today.message
    out["today_next"] = today.next_stop.get("job")
    yield 0.3
    yield Shot("13b-today")
    if today.next_stop.get("status") != "in_progress":  # a long-lived database: an earlier run may have arrived
        sent_before = core.outbox.counts()["sent"]
        press(today.ids.arrive)
        yield Until("arrival sent", lambda: not core.outbox.counts()["waiting"]
                    and not core.outbox.counts()["sending"] and core.outbox.counts()["sent"] > sent_before, 40)
    out["today_after_arrive"] = today.message
    yield 0.3
    yield Shot("13c-today-arrived")
    press(app.screen("home").ids.my_jobs)
    jobs = app.screen("jobs")
    ref = cfg["crew_job"]
    yield Until("job listed", lambda: any(r["key"] == ref for r in jobs.rows), 30)
    out["jobs_listed"] = [r["key"] for r in jobs.rows]
    yield 0.3
    yield Shot("14-jobs")
    loc.push(Fix(cfg["crew_job_at"][0] + 0.00003, cfg["crew_job_at"][1], 5.0, "gps", False))
    target = row(jobs, ref)
    if target is not None:
        press(target)
    else:  # scrolled out of sight by older jobs on a long-lived database: what the row's tap does
        app.go("job", reference=ref)
    job = app.screen("job")
    yield Until("job detail from the server", lambda: app.root.current == "job" and job.job
                and "timeline" in job.job, 30)
    yield Shot("15-job")
    press(job.ids.start)
    yield Until("started on the server", lambda: core.outbox.counts()["sent"] >= 2
                and not core.outbox.counts()["waiting"] and job.can_complete, 40)
    press(job.ids.take_photo)
    yield Until("completion photo", lambda: len(job.photos) == 1, 30)
    job.ids.note.text = "Cleaned off with the pressure washer."
    yield Shot("16-job-in-progress")
    press(job.ids.complete)
    yield Until("completion sent", lambda: not core.outbox.counts()["waiting"]
                and not core.outbox.counts()["sending"], 40)
    done = core.outbox.items(kind="job_status")[0]
    out["completion"] = {"state": done.state, "status": (done.result or {}).get("job", {}).get("status"),
                         "flags": (done.result or {}).get("flags"), "error": done.last_error}
    job.refresh()
    yield 0.3
    yield Shot("17-job-completed")
    app.go("queue")
    yield 0.3
    yield Shot("18-queue-crew")


class Driver:
    """Steps the script on the Kivy clock; records screenshots and the outcome."""

    def __init__(self, app: FieldApp, cfg: dict):
        self.app, self.cfg = app, cfg
        self.out: dict = {"screenshots": [], "error": None}
        self.gen = script(app, cfg, self.out)
        self.shots = Path(cfg["artifacts"])
        self.shots.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        Clock.schedule_once(lambda dt: self._next(), 0.5)
        Clock.schedule_once(lambda dt: self._abort("the whole script took too long"), self.cfg.get("budget", 150))

    def _next(self, value=None) -> None:
        try:
            cmd = self.gen.send(value)
        except StopIteration:
            self._finish()
            return
        except Exception:
            self.out["error"] = traceback.format_exc()
            self._finish()
            return
        if isinstance(cmd, (int, float)):
            Clock.schedule_once(lambda dt: self._next(), cmd)
        elif isinstance(cmd, Shot):
            Clock.schedule_once(lambda dt: self._shoot(cmd.name), 0.15)  # let the frame draw
        else:
            self._wait(cmd, time.monotonic() + cmd.timeout)

    def _wait(self, until: Until, deadline: float) -> None:
        try:
            ok = until.check()
        except Exception:
            ok = False
        if ok:
            Clock.schedule_once(lambda dt: self._next(), 0)
        elif time.monotonic() > deadline:
            screen = self.app.root.current if self.app.root else "?"
            self._shoot(f"timeout-{until.what.replace(' ', '-')}", advance=False)
            self.out["error"] = f"timed out waiting for: {until.what} (on screen {screen})"
            self._finish()
        else:
            Clock.schedule_once(lambda dt: self._wait(until, deadline), 0.1)

    def _shoot(self, name: str, advance: bool = True) -> None:
        made = Window.screenshot(str(self.shots / "shot.png"))
        target = self.shots / f"{name}.png"
        os.replace(made, target)
        self.out["screenshots"].append(str(target))
        if advance:
            self._next()

    def _abort(self, why: str) -> None:
        if not self.out.get("done"):
            self.out["error"] = self.out["error"] or why
            self._finish()

    def _finish(self) -> None:
        if self.out.get("done"):
            return
        self.out["done"] = True
        Path(self.cfg["result"]).write_text(json.dumps(self.out, indent=2, default=str))
        self.app.stop()


def main(config_path: str) -> int:
    """Run the app with the fake devices and the script; exit 0 if the script finished."""
    cfg = json.loads(Path(config_path).read_text())
    app = FieldApp(data_dir=cfg["data_dir"], location=FakeLocation(), camera=FileCamera(cfg["photo"]),
                   map_tiles=cfg.get("map_tiles", "http://127.0.0.1:9/{z}/{x}/{y}.png"))
    driver = Driver(app, cfg)
    driver.start()
    app.run()
    return 0 if driver.out.get("done") and not driver.out.get("error") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
