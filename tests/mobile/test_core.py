"""The app core without a screen or a server: store, migrations, outbox rules, forms, GPS, photos, statuses.

HTTP answers the real server cannot be made to give on demand (500, 429, 202…) come from
httpx.MockTransport: a fake at the HTTP boundary, our own code unmocked.
"""
from __future__ import annotations

import ast
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mobile.fieldapp.core import photos
from mobile.fieldapp.core.forms import clean_answers
from mobile.fieldapp.core.gps import quality
from mobile.fieldapp.core.migrations import MIGRATIONS
from mobile.fieldapp.core.models import FAILED, SENT, WAITING, Category, Fix
from mobile.fieldapp.core.outbox import Outbox, backoff_seconds
from mobile.fieldapp.core.reports import Draft, build_payload
from mobile.fieldapp.core.service import DraftError, FieldCore
from mobile.fieldapp.core.store import Store

CORE = Path(__file__).resolve().parents[2] / "mobile" / "fieldapp" / "core"
GRAFFITI = {"code": "graffiti", "name": "Graffiti", "group": "Street cleansing", "layer": None, "max_accuracy_m": 30,
            "questions": [{"code": "offensive", "prompt": "Offensive?", "datatype": "singlevaluelist", "required": True,
                           "values": [{"key": "yes", "name": "Yes"}, {"key": "no", "name": "No"}]},
                          {"code": "depth", "prompt": "Depth", "datatype": "number"},
                          {"code": "kinds", "prompt": "Kinds", "datatype": "multivaluelist",
                           "values": [{"key": "a", "name": "A"}, {"key": "b", "name": "B"}]}]}


def test_the_core_imports_no_kivy():
    banned = ("kivy", "plyer", "android", "jnius")
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in banned for n in names), f"{path.name} imports {names}"
    mods = [f"mobile.fieldapp.core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + \
           "bad = [m for m in sys.modules if m.split('.')[0] in ('kivy', 'plyer')]\nassert not bad, bad\nprint(len(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=CORE.parents[2], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_store_migrates_an_old_file_and_keeps_its_rows(tmp_path):
    db = tmp_path / "fieldapp.sqlite3"
    con = sqlite3.connect(db)
    con.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    con.execute("INSERT INTO outbox (client_id, kind, payload, state, created_at, updated_at) "
                "VALUES ('c1', 'report', '{}', 'waiting', 0, 0)")
    con.commit()
    con.close()
    store = Store(tmp_path)
    assert store.schema_version() == len(MIGRATIONS) == 2
    assert [r["client_id"] for r in store.query("SELECT client_id FROM outbox")] == ["c1"]
    assert store.query("SELECT count(*) AS n FROM jobs")[0]["n"] == 0  # the new table is there
    store.close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.commit()
    con.close()
    with pytest.raises(RuntimeError, match="newer app"):
        Store(tmp_path)


def test_backoff_grows_is_capped_and_jittered():
    assert [backoff_seconds(n, 2, 300, rand=1.0) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff_seconds(20, 2, 300, rand=1.0) == 300
    assert backoff_seconds(3, 2, 300, rand=0.0) == 4  # jitter keeps at least half
    assert all(2 <= backoff_seconds(2, 2, 300) <= 4 for _ in range(50))


def test_outbox_states_retry_delete_and_recovery(tmp_path):
    store = Store(tmp_path)
    box = Outbox(store, 1, 10)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"x")
    a = box.add_report({"category": "graffiti"}, [str(photo)])
    b = box.add_report({"category": "graffiti"})
    assert len(a.client_id) == 36 and a.client_id != b.client_id and a.photos[0].client_id
    assert [i.id for i in box.due()] == [a.id, b.id]
    assert box.claim(a.id) and not box.claim(a.id)
    at = box.retry_later(a.id, "offline", now=1000.0)
    assert 1000.5 <= at <= 1001 and box.get(a.id).state == WAITING and box.get(a.id).attempts == 1
    assert [i.id for i in box.due(now=1000.0)] == [b.id]
    box.fail(b.id, "the point is outside the area", "out-of-area")
    assert box.get(b.id).state == FAILED and box.get(b.id).error_code == "out-of-area"
    assert box.retry(b.id) and box.get(b.id).state == WAITING
    box.claim(b.id)
    store.close()
    again = Outbox(Store(tmp_path))  # restart: the one left "sending" is waiting again
    assert again.get(b.id).state == WAITING
    assert again.delete(a.id) and not photo.exists()
    again.claim(b.id)
    again.mark_sent(b.id, {"reference": "R-1"})
    assert not again.delete(b.id)  # sent items are history, not drafts


def _cat(d=GRAFFITI) -> Category:
    return Category.from_api(d)


def test_form_answers_are_checked_and_normalised():
    answers, errors = clean_answers(_cat(), {"offensive": None, "depth": "4O", "kinds": ["b", "a"]})
    assert errors == {"offensive": "an answer is needed", "depth": "enter a number"}
    answers, errors = clean_answers(_cat(), {"offensive": "no", "depth": "40", "kinds": ["b", "a"]})
    assert errors == {} and answers == {"offensive": "no", "depth": 40, "kinds": ["a", "b"]}
    assert clean_answers(_cat(), {"offensive": "maybe"})[1] == {"offensive": "choose one of the answers"}


def test_gps_badge_warns_on_poor_accuracy_old_fixes_and_mock_locations():
    cat = _cat()
    good = quality(Fix(51.38, -2.36, 8.0, "gps", False, at=100.0), cat, now=103.0)
    assert good.level == "good" and good.badge == "GPS ±8 m · 3 s ago" and not good.mock
    poor = quality(Fix(51.38, -2.36, 45.0, "network", False, at=100.0), cat, now=400.0)
    assert poor.level == "poor" and any("worse than the 30 m" in w for w in poor.warnings)
    assert any("5 min ago" in w for w in poor.warnings)
    zero = quality(Fix(51.38, -2.36, 0.0, "gps", False, at=100.0), cat, now=100.0)
    assert zero.mock and zero.level == "poor"  # accuracy 0 is what mock providers report
    assert quality(Fix(51.38, -2.36, 5.0, "gps", True), cat).mock


def test_payload_records_provider_accuracy_mock_flag_and_pin():
    fix = Fix(51.3812, -2.359, 0.0, "gps", False, at=1_790_000_000.0)
    d = Draft(_cat(), fix=fix, answers={"offensive": "no"}, started_at=fix.at)
    payload, errors = build_payload(d)
    assert errors == {}
    assert payload["mock_location"] is True and payload["accuracy_m"] == 0.0
    assert payload["location_provider"] == "gps" and payload["observed_at"].endswith("+00:00")
    d.pin, d.pin_source = (51.3813, -2.3591), "map"
    payload, _ = build_payload(d)
    assert (payload["lat"], payload["location_provider"], payload["accuracy_m"]) == (51.3813, "map", None)
    assert payload["mock_location"] is True  # a mock fix taints the report even if the pin moved
    assert build_payload(Draft(_cat()))[1] == {"answers.offensive": "an answer is needed",
                                               "location": "wait for a GPS fix or place the pin"}


def _jpeg(w: int, h: int, quality_: int = 95) -> bytes:
    import os

    buf = io.BytesIO()
    Image.frombytes("RGB", (w, h), os.urandom(w * h * 3)).save(buf, "JPEG", quality=quality_)
    return buf.getvalue()


def test_a_photo_too_large_for_the_server_is_downscaled_on_the_device(tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(_jpeg(4000, 3000))
    assert big.stat().st_size > 10 * 1024 * 1024  # over the server's max_photo_bytes
    kept = photos.prepare(big, tmp_path)
    assert kept.stat().st_size <= photos.MAX_BYTES and max(photos.size_of(kept)) == photos.MAX_SIDE
    small = tmp_path / "small.jpg"
    small.write_bytes(_jpeg(640, 480, 80))
    same = photos.prepare(small, tmp_path)
    assert same.read_bytes() == small.read_bytes()  # small enough: sent as taken


def _fake_server(answers: list[tuple[int, dict]]):
    """A transport answering POST /api/v1/reports from a script; records the client_ids it saw."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["client_id"])
        status, body = answers.pop(0)
        kind = "application/problem+json" if status >= 400 else "application/json"
        return httpx.Response(status, json=body, headers={"content-type": kind})
    return httpx.MockTransport(handle), seen


def _core(tmp_path, transport) -> FieldCore:
    core = FieldCore(tmp_path / "dev", transport=transport, backoff=(0.01, 0.02))
    core.store.set(server_url="https://kerbside.test", token="ks_test", role="reporter")
    core.cache.save_categories([GRAFFITI])
    return core


def _problem(code: str, detail: str) -> dict:
    return {"type": f"https://kerbside.example/problems/{code}", "title": "x", "detail": detail, "fields": ["lat"]}


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429, 202])
def test_only_200_or_201_counts_as_sent_and_transient_answers_are_retried(tmp_path, status):
    ok = {"reference": "R-9", "client_id": "x", "job": {"reference": "J-9", "due_at": "2026-12-01T17:30:00+00:00"}}
    transport, seen = _fake_server([(status, _problem("busy", "try later")), (201, ok)])
    core = _core(tmp_path, transport)
    item = core.queue_report(Draft(core.categories()[0], fix=Fix(51.38, -2.36, 5.0), answers={"offensive": "no"}))
    first = core.sync.run_once()
    assert first.retried == 1 and core.outbox.get(item.id).state == WAITING
    assert core.outbox.get(item.id).attempts == 1 and core.outbox.get(item.id).last_error
    core.sync.run_once(now=10**10)
    done = core.outbox.get(item.id)
    assert done.state == SENT and done.reference == "R-9" and done.due_at.startswith("2026-12-01")
    assert seen == [item.client_id, item.client_id]  # the same idempotency key both times
    core.close()


@pytest.mark.parametrize("status,code", [(422, "out-of-area"), (400, "bad-request"), (409, "idempotency-conflict"),
                                         (404, "not-found"), (413, "payload-too-large")])
def test_other_4xx_fail_with_the_servers_reason_and_the_item_is_kept(tmp_path, status, code):
    transport, _ = _fake_server([(status, _problem(code, "the point is outside the council area"))])
    core = _core(tmp_path, transport)
    item = core.queue_report(Draft(core.categories()[0], fix=Fix(51.5, -0.12, 5.0), answers={"offensive": "no"}))
    assert core.sync.run_once().failed == 1
    failed = core.outbox.get(item.id)
    assert failed.state == FAILED and failed.error_code == code
    assert failed.last_error == "the point is outside the council area"
    core.close()


def test_a_draft_missing_answers_is_not_queued(tmp_path):
    core = _core(tmp_path, httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(DraftError) as err:
        core.queue_report(Draft(core.categories()[0], fix=Fix(51.38, -2.36, 5.0)))
    assert err.value.errors == {"answers.offensive": "an answer is needed"}
    assert core.outbox.counts()[WAITING] == 0
    core.close()
