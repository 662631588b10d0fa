"""Fault 2: PostgreSQL goes away under load and comes back — a clean fast shutdown, an immediate one (as
after a crash), and a freeze (SIGSTOP: connections open, nothing answers) — without restarting the API
or the worker.

A throwaway cluster of its own (tests/faults/pgcluster.py) — the shared one is never touched — with
the boundary, wards, roads and grit bins imported. Four clients post reports, each retried on its
client_id until a 2xx; a probe polls /healthz. While the database is down every report answer is a
503 problem+json with Retry-After (never a 500, never a hang: while frozen, requests beyond the small
pool get their 503 after the pool timeout); once it is back the same API process
answers 2xx again by itself; the worker's heartbeat and dispatch resume. Afterwards nothing is
half-written anywhere in the database, and every acknowledged report exists exactly once.
"""
from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import create_engine, text

from contractors.signing import sign
from tests.contractors.conftest import free_port, wait_until
from tests.faults import checks, procs
from tests.faults.conftest import record
from tests.faults.load import Sender, report_bodies
from tests.faults.pgcluster import Cluster

pytestmark = [pytest.mark.commits, pytest.mark.timeout(300)]

REPORTS, THREADS = 240, 8
# pg_ctl stop -m fast (sessions terminated, clean shutdown), -m immediate (as a crash: recovery at start),
# and a freeze (SIGSTOP: the server holds its connections and answers nothing, as hung storage would).
OUTAGES = ("fast", "immediate", "freeze")
# A small pool with a short wait, so that during the freeze the requests beyond it meet the pool timeout.
API_POOL = {"KERBSIDE_DB_POOL_SIZE": "2", "KERBSIDE_DB_ASYNC_POOL_SIZE": "2", "KERBSIDE_DB_POOL_TIMEOUT_SECONDS": "2"}
LAYERS = ("boundary", "wards", "roads", "grit_bins")


def _cli(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=procs.ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"server.cli {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def own_db():
    """A cluster of our own with a migrated, minimally imported and seeded database; a field-worker token."""
    cluster = Cluster(free_port())
    try:
        cluster.init()
        cluster.start()
        url = cluster.create_database("kerbside_faults_pg")
        env = {"KERBSIDE_DATABASE_URL": url, "KERBSIDE_ENV": "test"}
        _cli(env, "migrate")
        _cli(env, "import-gis", *[a for layer in LAYERS for a in ("--only", layer)])
        _cli(env, "seed")
        token = _cli(env, "token", "create", "--role", "field_worker", "--name", "faults-pg").strip().splitlines()[-1]
        yield cluster, url, env, token
    finally:
        cluster.destroy()


def _jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 60, 60)).save(out, "JPEG")
    return out.getvalue()


def _post(url: str, body: bytes | None, headers: dict, **kw) -> int | str:
    try:
        return httpx.post(url, content=body, headers=headers, timeout=30, **kw).status_code
    except httpx.HTTPError as exc:
        return exc.__class__.__name__


def _get(url: str, timeout: float) -> int | str:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError as exc:
        return exc.__class__.__name__


class HealthProbe:
    """Polls /healthz every 100 ms: (started, ended, status or exception, Retry-After)."""

    def __init__(self, url: str):
        self.url, self.samples, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                t = time.monotonic()
                try:
                    r = http.get(self.url + "/healthz")
                    self.samples.append((t, time.monotonic(), r.status_code, r.headers.get("retry-after")))
                except httpx.HTTPError as exc:
                    self.samples.append((t, time.monotonic(), exc.__class__.__name__, None))
                time.sleep(0.1)


def test_api_and_worker_ride_out_postgres_restarts(own_db, tmp_path):
    cluster, db_url, env, token = own_db
    engine = create_engine(db_url, pool_pre_ping=True)
    with engine.connect() as conn:
        grit = [tuple(r) for r in conn.execute(text("""
            SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326)) FROM assets a
              JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'grit_bins' ORDER BY a.id LIMIT 60"""))]
    bodies = report_bodies(REPORTS, seed=random.SystemRandom().getrandbits(64), assets=grit)
    cids = [b["client_id"] for b in bodies]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    running = procs.Procs()
    api = running.add(procs.api(port, tmp_path / "api.log", {**env, **API_POOL}))
    worker = running.add(procs.worker(tmp_path / "worker.log", env))
    sender = Sender(url, token, timeout=30)
    probe = HealthProbe(url)
    outages: list[dict] = []
    frozen: list[int] = []
    try:
        api.start()
        procs.wait_up(api, url + "/healthz", ok=(200,))
        worker.start()
        api_pid = api.pid
        probe.thread.start()
        threads = sender.run(bodies, THREADS, timeout=200)
        for n, kind in enumerate(OUTAGES):
            wait_until(lambda: len(sender.acks) >= (n + 1) * REPORTS // (len(OUTAGES) + 1), timeout=120,
                       interval=0.01)
            stopping = time.monotonic()
            if kind == "freeze":
                frozen = cluster.freeze()
            else:
                cluster.stop(kind)
            down = time.monotonic()
            # Down for a few seconds, and long enough that the API has answered plenty meanwhile (a frozen
            # database answers nothing, so there only the requests beyond the pool get an answer).
            enough = 3 if kind == "freeze" else 20
            procs.until(lambda: time.monotonic() - down >= 4 and
                        sum(1 for a in sender.attempts if a.started >= down and a.status) >= enough,
                        60, f"{enough} answers from the API while the database was {kind}-stopped (a hang?)")
            up_wall = datetime.now(timezone.utc)
            starting = time.monotonic()
            if kind == "freeze":
                cluster.thaw(frozen)
                frozen = []
            else:
                cluster.start()
            up = time.monotonic()
            first_ok = procs.until(lambda: next((a for a in sender.attempts if a.started >= up and a.status
                                                 and a.status < 300), None), 60,
                                   f"a report acknowledged after the database came back ({kind})", interval=0.01)
            outages.append({"kind": kind, "stopping": stopping, "down": down, "starting": starting, "up": up,
                            "up_wall": up_wall, "recovery_s": first_ok.ended - up, "down_s": up - stopping})
        for t in threads:
            t.join(200)
        assert not any(t.is_alive() for t in threads), "the senders did not finish"
        # The senders can finish within one probe interval of the last restart: the probe runs on until /healthz
        # has answered a request it sent after that (or the wait fails, and so does the test).
        last_up = outages[-1]["up"]
        procs.until(lambda: any(s[0] >= last_up and s[2] == 200 for s in probe.samples), 60,
                    "a /healthz 200 after the last restart")
        probe.stop.set()
        probe.thread.join(35)

        # Every report was acknowledged in the end; no refusal, no 500, no lost connection, no hang.
        assert sender.refused == []
        assert len(sender.acks) == REPORTS
        outcomes = sender.outcomes()
        assert set(outcomes) <= {"200", "201", "503"}, outcomes
        # While the database was down every answer was a 503 problem+json with Retry-After.
        during = [a for o in outages for a in sender.attempts if o["down"] <= a.started and a.ended < o["starting"]]
        assert during and all(a.status == 503 for a in during), {a.status for a in during}
        for a in (a for a in sender.attempts if a.status == 503):
            assert a.content_type == "application/problem+json", a
            assert a.retry_after and a.retry_after.isdigit(), a
            assert a.problem_type.endswith("/database-unavailable"), a
        # /healthz said so too, and came back.
        for o in outages:
            down_samples = [s for s in probe.samples if o["down"] <= s[0] and s[1] < o["starting"]]
            # (a probe request that held a connection when the server froze waits for the thaw: no sample then)
            assert down_samples or o["kind"] == "freeze", "no /healthz answer while the database was down"
            assert all(s[2] == 503 and s[3] for s in down_samples), down_samples
            back = [s for s in probe.samples if s[0] >= o["up"] and s[2] == 200]
            assert back, "healthz did not recover"
            o["health_recovery_s"] = back[0][1] - o["up"]
            o["n503"] = sum(1 for a in sender.attempts if o["stopping"] <= a.started < o["up"] and a.status == 503)
        # The same API process throughout: it recovered by itself.
        assert api.starts == 1 and api.alive() and api.pid == api_pid

        # The worker came back by itself: heartbeats after the last restart, every new job dispatched.
        def worker_back() -> bool:
            with engine.connect() as conn:
                beat = conn.execute(text("SELECT max(beat_at) FROM worker_heartbeats")).scalar()
                pending = conn.execute(text("SELECT count(*) FROM outbox_messages WHERE destination = 'dispatch' "
                                            "AND state <> 'delivered'")).scalar()
            return beat is not None and beat > outages[-1]["up_wall"] and pending == 0

        wait_until(worker_back, timeout=60, interval=0.2)
        assert worker.starts == 1 and worker.alive()

        with engine.connect() as conn:
            counts = checks.rows_per_client_id(conn, cids)
            assert {cid: n for cid, n in counts.items() if n != 1} == {}
            stored = checks.stored_references(conn, cids)
            for cid, (_, answer) in sender.acks.items():
                assert stored[cid] == (answer["reference"], answer["job"]["reference"]), cid
            assert checks.half_written(conn) == []  # the whole database: every report, every job
            jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar()
            dead = conn.execute(text("SELECT count(*) FROM outbox_messages WHERE state = 'dead'")).scalar()
        assert dead == 0

        # A request stuck on the frozen database must not hold up the others: a contractor push that waits
        # on a pooled connection to the frozen server, and meanwhile a request that needs no database.
        with engine.connect() as conn:
            secret = conn.execute(text("SELECT config->>'webhook_secret' FROM contractors "
                                       "WHERE name = 'street-lighting'")).scalar()
        body = b'{"updates": []}'
        some_report = next(iter(sender.acks.values()))[1]["reference"]
        stuck: dict[str, int | str] = {}
        calls = {
            "push": lambda: _post(url + "/api/v1/contractors/street-lighting/webhook", body,
                                  {"content-type": "application/json", **sign(secret, body)}),
            "photo": lambda: _post(url + f"/api/v1/reports/{some_report}/photos", None,
                                   {"Authorization": f"Bearer {token}"},
                                   files={"file": ("p.jpg", _jpeg(), "image/jpeg")},
                                   data={"client_id": str(uuid.uuid4())}),
        }
        frozen = cluster.freeze()
        waiting = [threading.Thread(target=lambda k=k, f=f: stuck.__setitem__(k, f()), daemon=True)
                   for k, f in calls.items()]
        for t in waiting:
            t.start()
        waiting[-1].join(0.5)  # both under way (they can only finish once the database is back)
        free = _get(url + "/openapi.json", timeout=15)  # answered meanwhile: the event loop is not blocked
        cluster.thaw(frozen)
        frozen = []
        for t in waiting:
            t.join(35)
        assert free == 200
        assert stuck.get("push") in (200, 503) and stuck.get("photo") in (201, 503), stuck
    finally:
        cluster.thaw(frozen)
        sender.stop.set()
        probe.stop.set()
        running.stop_all()
        engine.dispose()

    slowest = max(a.seconds for a in sender.attempts)
    replays = sum(1 for s, _ in sender.acks.values() if s == 200)
    lines = [f"PostgreSQL out ×{len(outages)} under load: {REPORTS} reports by {THREADS} clients, "
             f"{len(sender.attempts)} attempts ({dict(outcomes)}), slowest answer {slowest:.2f} s; {REPORTS} "
             f"acknowledged ({replays} × 200 replay), stored exactly once {REPORTS}/{REPORTS}; {jobs} jobs, none "
             f"half-written, all dispatched, 0 dead messages; same API and worker pids throughout; a request "
             f"stuck on the frozen database did not block the event loop."]
    for o in outages:
        how = "frozen (SIGSTOP)" if o["kind"] == "freeze" else f"stopped (-m {o['kind']})"
        lines.append(f"  {how}: database out {o['down_s']:.1f} s, {o['n503']} × 503 problem+json with Retry-After "
                     f"meanwhile; first report acknowledged {o['recovery_s']:.2f} s after it was back, /healthz 200 "
                     f"after {o['health_recovery_s']:.2f} s")
    record("postgres", "\n".join(lines))
