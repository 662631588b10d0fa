"""The outbox against the real API: offline queueing, the server killed mid-sync, an app restart mid-queue.

Each report must end up on the server exactly once (counted in the database by client_id), and the
device must hold the answer the server gave for it.
"""
from __future__ import annotations

import json
import random
import threading
import time

from mobile.fieldapp.core.models import SENDING, SENT, WAITING, Fix
from mobile.fieldapp.core.reports import Draft
from tests.mobile.conftest import BATH_CENTRE, reports_on_server


def grit_bins(n: int) -> list[tuple[str, float, float]]:
    """n real B&NES grit bins (ref, lat, lon) with unambiguous ids."""
    from server.config import get_settings

    feats = json.loads((get_settings().gis_data_dir / "banes" / "banes_grit_bins.geojson").read_text())["features"]
    ids = [f["properties"].get("feature_id") for f in feats]
    out = [(f["properties"]["feature_id"], f["geometry"]["coordinates"][1], f["geometry"]["coordinates"][0])
           for f in feats if f["properties"].get("feature_id") and ids.count(f["properties"]["feature_id"]) == 1]
    return random.Random(6).sample(out, n)


def queue_reports(core, n: int) -> list[str]:
    """Queue n real-looking reports (graffiti around Bath centre, damaged grit bins); their client_ids."""
    cats = {c.code: c for c in core.categories()}
    rng = random.Random(n)
    bins = grit_bins(max(1, n // 4))
    ids = []
    for i in range(n):
        if i % 4 == 3:
            ref, lat, lon = bins[(i // 4) % len(bins)]
            d = Draft(cats["grit_bin"], fix=Fix(lat + 0.00003, lon, 5.0), answers={"problem": "empty"})
        else:
            lat = BATH_CENTRE[0] + rng.uniform(-0.004, 0.004)
            lon = BATH_CENTRE[1] + rng.uniform(-0.006, 0.006)
            d = Draft(cats["graffiti"], fix=Fix(lat, lon, 8.0), answers={"offensive": rng.choice(["yes", "no"])},
                      description=f"tag {i}")
        ids.append(core.queue_report(d).client_id)
    return ids


def wait_for(check, timeout: float, what: str, step: float = 0.01) -> None:
    """Poll until check() is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def assert_exactly_once(core, client_ids: list[str]) -> None:
    """Every client_id is one report on the server, and the device holds that report's reference."""
    from sqlalchemy import text

    from server.db import new_session

    counts = reports_on_server(client_ids)
    assert len(counts) == len(client_ids), f"{len(client_ids) - len(counts)} reports never reached the server"
    assert set(counts.values()) == {1}
    with new_session() as s:
        refs = dict(s.execute(text("SELECT client_id::text, reference FROM reports WHERE client_id::text = ANY(:i)"),
                              {"i": client_ids}).all())
    items = {i.client_id: i for i in core.outbox.items()}
    assert all(items[c].state == SENT for c in client_ids)
    assert {c: items[c].reference for c in client_ids} == refs


def test_200_reports_queued_offline_all_sync_once_when_the_server_comes_back(server, core_factory, field_token):
    core = core_factory()
    core.sign_in(server.url, field_token)
    server.stop()  # no network from here on
    ids = queue_reports(core, 200)
    status = core.sync.run_once()
    assert status.state == "offline" and "cannot reach" in status.message
    assert core.outbox.counts() == {WAITING: 200, SENDING: 0, SENT: 0, "failed": 0}

    core.loop.start()
    wait_for(lambda: core.sync.hold_until > 0, 10, "the loop to notice it is offline")
    time.sleep(0.3)  # the loop keeps failing offline, backing off
    # Nothing sent, nothing given up on; a report may be mid-attempt (SENDING) when we look.
    c = core.outbox.counts()
    assert c[SENT] == 0 and c["failed"] == 0 and c[WAITING] + c[SENDING] == 200, c
    server.start()
    started = time.monotonic()
    wait_for(lambda: core.outbox.counts()[SENT] == 200, 120, "all 200 sent")
    seconds = time.monotonic() - started
    print(f"\nSYNC THROUGHPUT: 200 queued reports sent in {seconds:.2f} s = {200 / seconds:.0f} reports/s "
          "(timed from the server answering /healthz; 4 requests in flight on keep-alive connections)")
    assert_exactly_once(core, ids)


def test_server_killed_mid_sync_then_restarted_still_exactly_once(server, core_factory, field_token):
    core = core_factory()
    core.sign_in(server.url, field_token)
    ids = queue_reports(core, 80)
    core.loop.start()
    wait_for(lambda: core.outbox.counts()[SENT] >= 15, 60, "the first 15 sent")
    server.kill()  # SIGKILL: whatever was in flight is cut off
    at_kill = core.outbox.counts()
    assert at_kill[SENT] < 80, "the server was killed too late to test anything"
    wait_for(lambda: core.sync.hold_until > 0, 10, "the loop to notice it is offline")
    sent_while_down = core.outbox.counts()[SENT]
    time.sleep(0.5)
    assert core.outbox.counts()[SENT] == sent_while_down  # nothing is "sent" while the server is down
    assert core.outbox.counts()["failed"] == 0  # and nothing is given up on
    server.start()
    wait_for(lambda: core.outbox.counts()[SENT] == 80, 120, "all 80 sent after the restart")
    assert_exactly_once(core, ids)


def test_app_restart_mid_queue_keeps_the_queue_and_replays_the_one_in_flight(server, core_factory, field_token,
                                                                           tmp_path):
    data = tmp_path / "phone"
    first = core_factory(data)
    first.sign_in(server.url, field_token)
    ids = queue_reports(first, 30)
    assert first.sync.run_once(limit=10).sent == 10
    # The app dies while an item is on the wire: the server took it, the device never heard the answer.
    in_flight = first.outbox.due()[0]
    assert first.outbox.claim(in_flight.id)
    status, answer = first.api().submit_report(in_flight.payload)
    assert status == 201
    first.close()

    second = core_factory(data)  # a new process on the same SQLite file
    assert second.signed_in and second.server_url == server.url  # still signed in
    assert second.outbox.counts() == {WAITING: 20, SENDING: 0, SENT: 10, "failed": 0}
    assert second.outbox.get(in_flight.id).state == WAITING
    while second.outbox.counts()[WAITING]:
        assert second.sync.run_once().failed == 0
    assert second.outbox.get(in_flight.id).reference == answer["reference"]  # the server's replay, not a copy
    assert_exactly_once(second, ids)


def test_the_sync_loop_runs_off_the_ui_thread_and_reports_through_notify(server, core_factory, field_token):
    seen: list[tuple[str, int]] = []
    core = core_factory(notify=lambda s: seen.append((threading.current_thread().name, s.counts.get(SENT, 0))))
    core.sign_in(server.url, field_token)
    ids = queue_reports(core, 3)
    core.loop.start()
    wait_for(lambda: any(n == 3 for _, n in seen), 30, "a notification with all 3 sent")
    assert {name for name, _ in seen} == {"fieldapp-sync"}
    assert_exactly_once(core, ids)

