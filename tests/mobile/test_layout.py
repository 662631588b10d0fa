"""The app's shape: one .py + one .kv per screen, an Android spec that matches the pins, a runnable entry point."""
from __future__ import annotations

import configparser
from pathlib import Path

MOBILE = Path(__file__).resolve().parents[2] / "mobile"
ROOT = MOBILE.parent


def test_every_screen_is_one_py_and_one_kv():
    ui = MOBILE / "fieldapp" / "ui"
    py = {p.stem for p in ui.glob("*.py")} - {"__init__", "app"}
    kv = {p.stem for p in ui.glob("*.kv")}
    assert py == kv and {"signin", "home", "category", "report", "pin", "queue", "myreports", "jobs", "job"} <= py


def test_buildozer_spec_matches_the_pins_and_asks_for_the_permissions():
    spec = configparser.ConfigParser()
    spec.read(MOBILE / "buildozer.spec")
    app = spec["app"]
    assert (MOBILE / app["source.dir"] / "main.py").is_file()
    wanted = {p.split("==")[0].lower(): p for p in app["requirements"].split(",")}
    pins = {line.split("==")[0].lower(): line for line in (ROOT / "requirements.txt").read_text().split()}
    for name in ("kivy", "plyer", "httpx", "httpcore", "kivy_garden.mapview"):
        pin = pins.get(name) or pins.get(name.replace("_", "-"))
        assert pin and wanted[name].split("==")[1] == pin.split("==")[1], name
    assert "pillow" in wanted and "python3" in wanted
    perms = {p.strip() for p in app["android.permissions"].split(",")}
    assert {"INTERNET", "ACCESS_FINE_LOCATION", "CAMERA"} <= perms
    assert app["orientation"] == "portrait" and int(app["android.minapi"]) >= 21


def test_make_mobile_runs_the_desktop_entry_point():
    make = (ROOT / "Makefile").read_text()
    assert "\nmobile:" in make and "-m mobile.main" in make
    assert "def main()" in (MOBILE / "main.py").read_text()
