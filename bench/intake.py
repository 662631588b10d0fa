"""Intake load benchmark: POST /api/v1/reports against two baselines, with wrk, in rotating rounds.

    .venv/bin/python -m bench.intake run --assets 1000000 --duration 30 --connections 16

The servers: the real API (`server.main:create_app`); the ORM baseline (bench/baseline_app.py: one KNN snap +
one INSERT through the API's own SQLAlchemy session and pool); the bare baseline (bench/bare_app.py: the same
two statements from a psycopg 3 async pool, server-side prepared, no ORM); and a what-if, the floor
(bench/floor_app.py: the intake's own statements behind the bare baseline's app, the ceiling of any app-side
change), the same work as one statement (the ceiling of that redesign), and that statement for all the reports
waiting together (group commit). Each is warmed up, then driven by
wrk (bench/post_reports.lua) on the same database, one after the other, the order rotating each round.
`bench.suite` uses `measure_intake` inside the whole benchmark and rewrites bench/RESULTS.md; `run` here is
the intake alone on its own database (prints a table).
"""
from __future__ import annotations

import functools
import json
import os
import platform
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Iterator

import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = ROOT / ".data" / "bench"
RESULTS = BENCH / "RESULTS.md"
LUA = BENCH / "post_reports.lua"
LAYER = "street_lights"
REF_PREFIX = "BL-"  # gis_data.synthetic.generate_scale_points; the generated B&NES lights are "NNNNN/NNN"
INTAKE_APP = "server.main:create_app"

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Intake load benchmark (wrk)",
                  pretty_exceptions_enable=False)
console = Console(stderr=True)


@cli.callback()
def _main() -> None:
    """Intake load benchmark."""


# --------------------------------------------------------------------------- database


def _pg(*args: str) -> str:
    return subprocess.run([str(ROOT / "scripts" / "pg.sh"), *args], check=True, capture_output=True,
                          text=True, cwd=ROOT).stdout.strip()


def _cli_env(url: str) -> dict[str, str]:
    return {**os.environ, "KERBSIDE_DATABASE_URL": url, "KERBSIDE_LOG_LEVEL": "WARNING"}


def _engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(url, pool_size=2)


def _boundary(engine):
    """The council boundary in lon/lat as a prepared shapely geometry."""
    import shapely
    from sqlalchemy import text

    with engine.connect() as conn:
        wkb = conn.execute(text("SELECT ST_AsBinary(ST_Transform(ST_Union(geom), 4326)) FROM areas "
                                "WHERE kind = 'boundary'")).scalar_one()
    geom = shapely.from_wkb(bytes(wkb))
    shapely.prepare(geom)
    return geom


def _bench_count(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                                 "WHERE l.name = :n AND a.external_ref LIKE :p"),
                            {"n": LAYER, "p": REF_PREFIX + "%"}).scalar_one()


def sample_points(engine, k: int, seed: int, path: Path) -> int:
    """Write k report points ("lat lon"), each within ~5 m of a random loaded lamp column, inside the boundary."""
    import shapely
    from sqlalchemy import text

    boundary = _boundary(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
        rows = conn.execute(text("""
            WITH s AS (SELECT a.geom FROM assets a JOIN asset_layers l ON l.id = a.layer_id
                        WHERE l.name = :n AND a.external_ref LIKE :p ORDER BY random() LIMIT :k)
            SELECT ST_Y(q) AS lat, ST_X(q) AS lon
              FROM (SELECT ST_Transform(ST_Translate(geom, (random() * 2 - 1) * 4, (random() * 2 - 1) * 4), 4326) AS q
                      FROM s) t"""), {"n": LAYER, "p": REF_PREFIX + "%", "k": int(k * 1.05) + 10}).all()
    pts = [(lat, lon) for lat, lon in rows if shapely.contains_xy(boundary, lon, lat)][:k]
    path.write_text("".join(f"{lat:.7f} {lon:.7f}\n" for lat, lon in pts))
    return len(pts)


def machine_info(engine) -> dict:
    """What the figures were measured on, read now (not hard-coded)."""
    from sqlalchemy import text

    mem_kb = 0
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with engine.connect() as conn:
        pg = conn.execute(text("SHOW server_version")).scalar_one()
        postgis = conn.execute(text("SELECT postgis_lib_version()")).scalar_one()
        geos = conn.execute(text("SELECT postgis_geos_version()")).scalar_one()
        settings = {k: conn.execute(text(f"SHOW {k}")).scalar_one()
                    for k in ("shared_buffers", "synchronous_commit", "fsync", "max_connections")}
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0]
    wrk = wrk.replace("Copyright", "").strip() or "wrk"
    import fastapi
    import sqlalchemy
    import uvicorn
    import psycopg

    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 1024 / 1024, 1),
            "postgresql": pg, "postgis": postgis, "geos": geos, "pg_settings": settings,
            "python": platform.python_version(), "kernel": platform.release(), "wrk": wrk,
            "stack": f"FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}, "
                     f"SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}"}


# --------------------------------------------------------------------------- servers and load


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(app: str, workers: int, env: dict[str, str], log: Path, *, python: str = sys.executable,
           factory: bool = True, health: str = "/healthz") -> Iterator[tuple[str, int]]:
    """Run `uvicorn app [--factory]` with `workers` processes on a free port (with `python`: pygeoapi runs from
    its own venv); waits for `health` to answer 200; yields (base URL, pid)."""
    import httpx

    port = free_port()
    cmd = [python, "-m", "uvicorn", app, *(["--factory"] if factory else []), "--host", "127.0.0.1", "--port",
           str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(base + health, timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not answer {health} within 60 s; see {log}")
            time.sleep(0.3)
        time.sleep(1.0 if workers > 1 else 0)  # let every worker process finish starting
        yield base, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group (start_new_session)
                proc.wait()


TICK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of its exited, reaped children)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                # utime + stime + cutime + cstime: PostgreSQL backends that exit (pool overflow
                # connections) are reaped by the postmaster and land in its cutime/cstime.
                out[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK)
            except (OSError, IndexError, ValueError):
                pass
    return out


def _tree_cpu(table: dict[int, tuple[int, float]], root: int | None) -> float:
    """CPU seconds of root and all its descendants."""
    if root is None:
        return 0.0
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo.extend(kids.get(pid, []))
    return total


def _machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)) / TICK


def _postmaster() -> int | None:
    try:
        return int((ROOT / ".data" / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def db_snapshot(engine) -> dict[str, float]:
    """Cumulative pg_stat_database counters of the bench database (sessions needs PostgreSQL 14+)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        row = conn.execute(text("SELECT sessions, xact_commit, xact_rollback, active_time, idle_in_transaction_time, "
                                "(SELECT last_value FROM job_reference_seq) AS jobs_opened, "
                                "(SELECT last_value FROM report_reference_seq) AS reports_taken "
                                "FROM pg_stat_database WHERE datname = current_database()")).one()
    return dict(row._mapping)


def db_split(before: dict, after: dict, requests: int, seconds: float) -> dict[str, float]:
    """New connections, commits, per-request time the backends spent active / idle in a transaction, and the jobs
    opened and reports taken by the intake's own tables (kerbside_intake: the API and the floors)."""
    d = {k: float(after[k] - before[k]) for k in before}
    n = max(requests, 1)
    return {"sessions": max(d["sessions"] - 1, 0.0), "commits": d["xact_commit"], "rollbacks": d["xact_rollback"],
            "active_ms": d["active_time"] / n, "idle_in_tx_ms": d["idle_in_transaction_time"] / n,
            "jobs_opened": d["jobs_opened"], "reports_taken": d["reports_taken"]}


def _backends(table: dict[int, tuple[int, float]], postmaster: int | None, dbname: str | None = None) -> float:
    """CPU seconds of PostgreSQL's client backends (the rest of its tree is background work: autovacuum,
    WAL writer, checkpointer, and backends that already exited); with dbname, only those connected to it (the
    cluster is shared with other sessions' tests)."""
    total = 0.0
    for pid, (ppid, cpu) in table.items():
        if ppid == postmaster:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            # "postgres: USER DATABASE HOST(PORT) STATE"; background processes name their role instead.
            parts = title.split()
            if title.startswith("postgres: ") and len(parts) >= 4 and "(" in parts[3] \
                    and (dbname is None or parts[2] == dbname):
                total += cpu
    return total


def cpu_snapshot(app_pid: int, dbname: str | None = None) -> dict[str, float]:
    """CPU seconds so far: the server's process tree, PostgreSQL's (and its client backends'), the whole
    machine, our waited children."""
    import resource

    table = _proc_table()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    postmaster = _postmaster()
    return {"app": _tree_cpu(table, app_pid), "db": _tree_cpu(table, postmaster),
            "db_backends": _backends(table, postmaster, dbname), "machine": _machine_busy(),
            "children": kids.ru_utime + kids.ru_stime, "t": time.monotonic()}


def cpu_split(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU ms per request by app / PostgreSQL / wrk / everything else, and machine utilisation."""
    d = {k: after[k] - before[k] for k in before}
    n = max(requests, 1)
    other = d["machine"] - d["app"] - d["db"] - d["children"]
    capacity = d["t"] * (os.cpu_count() or 1)
    return {"app_ms": 1000 * d["app"] / n, "db_ms": 1000 * d["db"] / n,
            "db_backends_ms": 1000 * d["db_backends"] / n, "wrk_ms": 1000 * d["children"] / n,
            "other_ms": 1000 * max(other, 0.0) / n, "other_pct": 100 * max(other, 0.0) / capacity,
            "util": 100 * d["machine"] / capacity}


QUIET_WAIT = 180  # seconds wait_quiet waits at most (bench.suite lowers it: it has many phases)


# What the servers measured write: the intake's tables and the baselines' one (once a baseline has made it).
SETTLE_TABLES = ["jobs", "reports", "job_events", "reporter_contacts", "contact_queue", "received_queue",
                 "outbox_messages", "chasers", "bench_baseline_reports"]


def settle(engine) -> None:
    """The same start for every phase: the tables the servers write vacuumed and analysed, then a checkpoint, so
    that neither autovacuum nor a checkpoint's writes fall inside one server's phase rather than another's (the
    intake's WAL alone starts a checkpoint every one to two minutes under PostgreSQL's default max_wal_size)."""
    from sqlalchemy import text

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        tables = conn.execute(text("SELECT string_agg(t, ', ') FROM unnest(CAST(:ts AS text[])) AS t "
                                   "WHERE to_regclass(t) IS NOT NULL"), {"ts": SETTLE_TABLES}).scalar_one()
        conn.execute(text(f"VACUUM (ANALYZE) {tables}"))
    _pg("checkpoint")  # a superuser's command: the cluster's own script runs it


def wait_quiet(limit: float = 25.0, max_wait: int | None = None) -> float:
    """Wait until the machine is mostly idle (others' tests share it); returns the last busy % seen."""
    busy = 100.0
    max_wait = QUIET_WAIT if max_wait is None else max_wait
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = _machine_busy(), time.monotonic()
        time.sleep(2)
        busy = 100 * (_machine_busy() - b0) / ((time.monotonic() - t0) * (os.cpu_count() or 1))
        if busy < limit or time.monotonic() > deadline:
            return busy
        console.print(f"[dim]machine {busy:.0f}% busy with other work; waiting for it to settle[/]")


@dataclass
class Phase:
    """One measured wrk run."""

    name: str
    rps: float
    p50: float
    p95: float
    p99: float
    mean: float
    maxi: float
    requests: int
    errors: int
    statuses: dict
    raw: dict
    cpu: dict | None = None
    idle_before: float | None = None

    @property
    def valid(self) -> bool:
        return self.errors == 0 and self.requests > 0


# Where the next phase driven with `fresh` points starts in each points file (see run_wrk).
_NEXT_POINT: dict[str, int] = {}


def _lines(coords: Path) -> int:
    """Lines in a points file, counted once per version of it (every fresh phase asks)."""
    return _count_lines(str(coords), coords.stat().st_mtime_ns)


@functools.cache
def _count_lines(path: str, _version: int) -> int:
    with open(path) as fh:
        return sum(1 for _ in fh)


def run_wrk(base: str, path: str, token: str, coords: Path, *, duration: int, connections: int, threads: int,
            observed_at: str, log: Path, name: str, app_pid: int, engine=None, script: Path = LUA,
            extra: str = "", fresh: bool = False) -> Phase:
    """Drive base+path with wrk + a script (post_reports.lua, or get_paths.lua for reads); parse the WRKJSON line
    its done() prints; account CPU. `extra`: members post_reports.lua adds to every body (bench/notify_cost.py).

    `fresh`: post_reports.lua takes the points in order, each once, from where the last fresh phase on the same
    file stopped, so no report of the run is about a point an earlier one was about (a new fault each, not a
    repeat of one: at random from a small file, most reports would attach to a job opened earlier in the run).
    The phase's raw figures say which lines it used and whether it ran past the end of the file."""
    prefix = f"{random.getrandbits(32):08x}"
    more: list[str] = [extra] if extra else []
    start = 0
    if fresh:
        start = _NEXT_POINT.get(str(coords), 0)
        more = [extra, str(start), str(threads)]
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), base,
           "--", str(coords), path, token or "-", prefix, observed_at, *more]
    db0 = db_snapshot(engine) if engine is not None else None
    dbname = engine.url.database if engine is not None else None
    before = cpu_snapshot(app_pid, dbname)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    after = cpu_snapshot(app_pid, dbname)
    db1 = db_snapshot(engine) if engine is not None else None
    with open(log, "a") as fh:
        shown = [("<token>" if a == token and token else a) for a in cmd]
        fh.write(f"\n### {name}: {shlex.join(shown)}\n{proc.stdout}{proc.stderr}")
    match = re.search(r"^WRKJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    d = json.loads(match.group(1))
    if fresh:
        used = threads * d["sent_max"]
        _NEXT_POINT[str(coords)] = start + used
        lines = _lines(coords)
        d["points"] = {"from": start, "used": used, "lines": lines, "wrapped": start + used > lines}
    if db0 is not None:
        d["db"] = db_split(db0, db1, d["requests"], d["duration_us"] / 1e6)
    sock = sum(d["socket_errors"].values())
    lat = d["latency_us"]
    return Phase(name, d["requests"] / (d["duration_us"] / 1e6), lat["p50"] / 1000, lat["p95"] / 1000,
                 lat["p99"] / 1000, lat["mean"] / 1000, lat["max"] / 1000, d["requests"], d["non_2xx"] + sock,
                 d["statuses"], d, cpu_split(before, after, d["requests"]))


# --------------------------------------------------------------------------- results


def _fmt(p: Phase) -> list[str]:
    return [p.name, f"{p.rps:,.0f}", f"{p.p50:.1f}", f"{p.p95:.1f}", f"{p.p99:.1f}", f"{p.requests:,}", str(p.errors)]


def _ratio(r: float) -> str:
    return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}"


def _fmt_cpu(p: Phase) -> list[str]:
    c = p.cpu or {}
    return [f"{c.get('app_ms', 0):.1f}", f"{c.get('db_ms', 0):.1f} ({c.get('db_backends_ms', 0):.1f})",
            f"{c.get('wrk_ms', 0):.1f}",
            f"{c.get('other_ms', 0):.1f} ({c.get('other_pct', 0):.0f}% of the machine)", f"{c.get('util', 0):.0f}%"]


def code_state() -> str:
    """Which server/ was measured (the tree changes under concurrent work): newest change and a content hash."""
    import hashlib

    files = sorted((ROOT / "server").rglob("*.py"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    newest = max(f.stat().st_mtime for f in files)
    return (f"server/ last changed {datetime.fromtimestamp(newest).astimezone():%Y-%m-%d %H:%M:%S %Z}, "
            f"{len(files)} .py files, sha256 {digest.hexdigest()[:12]}")


SERVERS = {  # name -> (uvicorn factory, path, needs the bench token)
    "intake": (INTAKE_APP, "/api/v1/reports", True),
    "orm": ("bench.baseline_app:create_app", "/bench/reports", False),
    "bare": ("bench.bare_app:create_app", "/bench/reports", False),
    "floor": ("bench.floor_app:create_app", "/bench/reports", True),
    "floor1": ("bench.floor_app:create_app_one", "/bench/reports", True),
    "floor1b": ("bench.floor_app:create_app_batched", "/bench/reports", True),
}
LABELS = {"intake": "intake (the API)", "orm": "ORM baseline (SQLAlchemy session)",
          "bare": "bare baseline (psycopg pool, prepared)",
          "floor": "floor (the intake's statements behind the bare baseline's app)",
          "floor1": "one-statement floor (the same work as one statement)",
          "floor1b": "batched one-statement floor (reports waiting together: one statement, one commit)"}


def pooled(ps: list[Phase]) -> float:
    """All requests over all measured seconds."""
    return sum(p.requests for p in ps) / sum(p.raw["duration_us"] / 1e6 for p in ps)


def summarise(rows: list[tuple[int, int, dict[str, Phase]]]) -> dict[int, dict]:
    """Per worker count: pooled req/s per server, intake/ORM and intake/bare ratios, worst intake p99."""
    out = {}
    for w in dict.fromkeys(r[0] for r in rows):
        mine = [ph for ww, _, ph in rows if ww == w]
        rps = {name: pooled([ph[name] for ph in mine]) for name in mine[0]}
        out[w] = {"rps": rps, "vs_orm": rps["intake"] / rps["orm"] if rps.get("orm") else 0.0,
                  "vs_bare": rps["intake"] / rps["bare"] if rps.get("bare") else 0.0,
                  "floor_vs_bare": rps["floor"] / rps["bare"] if rps.get("floor") and rps.get("bare") else 0.0,
                  "floor1_vs_bare": rps["floor1"] / rps["bare"] if rps.get("floor1") and rps.get("bare") else 0.0,
                  "floor1b_vs_bare": rps["floor1b"] / rps["bare"] if rps.get("floor1b") and rps.get("bare") else 0.0,
                  "worst_p99": max(ph["intake"].p99 for ph in mine),
                  "p99": {name: max(ph[name].p99 for ph in mine) for name in mine[0]}}
    return out


def measure_intake(engine, env: dict[str, str], token: str, coords: Path, *, workers: list[int], rounds: int,
                   duration: int, warmup: int, connections: int, threads: int, log: Path,
                   intake_app: str = INTAKE_APP,
                   servers: tuple[str, ...] = ("intake", "orm", "bare", "floor1b"),
                   quiet: bool = True, fresh: bool = True,
                   settled: bool = True) -> list[tuple[int, int, dict[str, Phase]]]:
    """Each worker count, `rounds` rounds of every server one after the other (the order rotates each round, so
    a drift in the shared machine's speed falls on all of them); rows of (workers, round, {server: Phase}).
    `fresh` (the default): every report, warm-ups included, at a point no earlier one was at (see run_wrk).
    `settled` (the default): each server's phase starts from `settle` (vacuumed tables, a checkpoint)."""
    observed_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    kw = dict(duration=duration, connections=connections, threads=threads, observed_at=observed_at, log=log,
              fresh=fresh)
    rows = []
    for w in workers:
        for rnd in range(1, rounds + 1):
            order = list(servers[(rnd - 1) % len(servers):] + servers[:(rnd - 1) % len(servers)])
            if rnd % 2 == 0:
                order.reverse()
            measured = {}
            for name in order:
                app, path, needs_token = SERVERS[name]
                app = intake_app if name == "intake" else app
                if settled:
                    settle(engine)
                idle = wait_quiet() if quiet else None
                with server(app, w, env, log) as (base, pid):
                    if warmup:
                        with console.status(f"{name}, {w} worker(s), round {rnd}: warm-up {warmup} s"):
                            run_wrk(base, path, token if needs_token else "", coords, **{**kw, "duration": warmup},
                                    name=f"{name}-warmup", app_pid=pid)
                        time.sleep(1)  # let the warm-up's last requests drain
                    with console.status(f"{name}, {w} worker(s), round {rnd}: measuring {duration} s"):
                        p = run_wrk(base, path, token if needs_token else "", coords, **kw, name=name, app_pid=pid,
                                    engine=engine)
                    p.idle_before = idle
                measured[name] = p
                console.print(f"{name:6} workers={w} round {rnd}: {p.rps:,.0f} req/s  p50 {p.p50:.1f} ms  "
                              f"p95 {p.p95:.1f} ms  p99 {p.p99:.1f} ms  errors {p.errors}  {p.statuses}  CPU/req: "
                              f"app {p.cpu['app_ms']:.1f} ms, PostgreSQL {p.cpu['db_ms']:.1f} ms (backends "
                              f"{p.cpu['db_backends_ms']:.1f}), other {p.cpu['other_ms']:.1f} ms; machine "
                              f"{p.cpu['util']:.0f}% busy")
            rows.append((w, rnd, measured))
    return rows


def intake_table(rows: list[tuple[int, int, dict[str, Phase]]], title: str) -> Table:
    """The rows as a Rich table with the pooled ratios."""
    table = Table(title=title)
    for col in ("workers", "round", "server", "req/s", "p50 ms", "p95 ms", "p99 ms", "requests", "errors",
                "app / PG CPU ms"):
        table.add_column(col, justify="right")
    for w, rnd, ph in rows:
        for p in ph.values():
            table.add_row(str(w), str(rnd), *_fmt(p), f"{p.cpu['app_ms']:.1f} / {p.cpu['db_ms']:.1f}")
    for w, s in summarise(rows).items():
        table.add_row(str(w), "all", "intake/ORM, intake/bare", "", "", "", f"worst {s['worst_p99']:.1f}", "", "",
                      f"[bold]{_ratio(s['vs_orm'])}, {_ratio(s['vs_bare'])}[/]")
        if s["floor_vs_bare"] and s["floor1_vs_bare"]:
            table.add_row(str(w), "all", "floor/bare, floor1/bare, floor1b/bare", "", "", "", "", "", "",
                          f"{_ratio(s['floor_vs_bare'])}, {_ratio(s['floor1_vs_bare'])}, "
                          f"{_ratio(s['floor1b_vs_bare'])}")
    return table


def prepare_baselines(engine) -> None:
    """The baselines' table (both baselines insert into it), and the one-statement floors' functions."""
    from bench import floor_app
    from bench.baseline_app import prepare

    with engine.begin() as conn:
        prepare(conn)
        floor_app.prepare(conn)


def bench_token(env: dict[str, str], role: str = "field_worker", name: str = "bench-intake") -> str:
    """A fresh bearer token of `role` in the bench database."""
    return subprocess.run([sys.executable, "-m", "server.cli", "token", "create", "--role", role, "--name", name],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------- the command


@cli.command()
def run(
    assets: Annotated[int, typer.Option(help="synthetic lamp columns to add to street_lights", min=1)] = 1_000_000,
    duration: Annotated[int, typer.Option(help="seconds measured per server", min=1)] = 30,
    connections: Annotated[int, typer.Option(help="concurrent wrk connections", min=1)] = 16,
    threads: Annotated[int, typer.Option(help="wrk threads", min=1)] = 2,
    workers: Annotated[list[int], typer.Option("--workers", help="uvicorn worker counts to measure (repeatable)")]
    = [2],  # noqa: B006 (typer needs a literal default)
    warmup: Annotated[int, typer.Option(help="warm-up seconds per server (not measured)", min=0)] = 5,
    rounds: Annotated[int, typer.Option(help="measured rounds per worker count; the order of the servers rotates "
                                             "each round", min=1)] = 2,
    points: Annotated[int, typer.Option(help="distinct report points in the wrk script", min=1)] = 20_000,
    database: Annotated[str, typer.Option(help="bench database name (dropped and recreated)")]
    = "kerbside_bench_intake",
    reuse: Annotated[bool, typer.Option("--reuse", help="reuse the bench database if it already holds the assets")]
    = False,
    keep: Annotated[bool, typer.Option("--keep", help="keep the bench database afterwards")] = False,
    seed: Annotated[int, typer.Option(help="seed for the report points")] = 1,
    intake_app: Annotated[str, typer.Option(help="uvicorn factory of the API under test (what-if builds: "
                                                 "module:factory)")] = INTAKE_APP,
    server: Annotated[list[str], typer.Option("--server", help="servers to measure (repeatable): "
                                              + ", ".join(SERVERS))] = ["intake", "orm", "bare", "floor1b"],  # noqa: B006
) -> None:
    """Intake alone: load N assets, then the API and both baselines with wrk in rotating rounds (prints a table;
    `python -m bench.suite run` is what rewrites bench/RESULTS.md)."""
    import psycopg

    from bench.load import grow_assets

    WORK.mkdir(parents=True, exist_ok=True)
    _pg("start")
    url = _pg("url", database)
    env = _cli_env(url)
    os.environ["KERBSIDE_DATABASE_URL"] = url
    from server.config import get_settings

    get_settings.cache_clear()
    srid = get_settings().srid
    if not reuse:
        _pg("createdb", database)
        setup = subprocess.run([sys.executable, "-m", "server.cli", "setup"], cwd=ROOT, env=env,
                               capture_output=True, text=True)
        if setup.returncode != 0:
            console.print(setup.stderr[-3000:], markup=False, highlight=False)
            raise typer.Exit(1)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        grow_assets(conn, assets, srid)
    engine = _engine(url)
    prepare_baselines(engine)
    coords = WORK / "points.txt"
    sample_points(engine, points, seed, coords)
    log = WORK / f"intake-{datetime.now():%Y%m%d-%H%M%S}.log"
    rows = measure_intake(engine, env, bench_token(env), coords, workers=workers, rounds=rounds, duration=duration,
                          warmup=warmup, connections=connections, threads=threads, log=log, intake_app=intake_app,
                          servers=tuple(server))
    Console().print(intake_table(rows, f"POST reports, {assets:,} bench lamp columns, {connections} connections"))
    engine.dispose()
    if not keep:
        _pg("dropdb", database)
    if any(not p.valid for *_, ph in rows for p in ph.values()):
        console.print("[bold red]some responses were not 2xx: not a valid result[/] (see the log)")
        raise typer.Exit(1)


if __name__ == "__main__":
    cli()
