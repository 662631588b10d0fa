"""Intake load benchmark: POST /api/v1/reports against a bare snap+insert baseline, 1M street lights loaded.

    .venv/bin/python -m bench.intake run --assets 1000000 --duration 30 --connections 16

One run: a fresh bench database (scripts/pg.sh createdb), `server.cli setup`, N synthetic lamp columns
added to the real `street_lights` layer (COPY, inside the council boundary), a field_worker token, then
for each uvicorn worker count: the real API and the baseline app (bench/baseline_app.py), each warmed
up and driven by wrk (bench/post_reports.lua) for the duration, one after the other on the same
database. The figures are appended to bench/RESULTS.md.
"""
from __future__ import annotations

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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = ROOT / ".data" / "bench"
RESULTS = BENCH / "RESULTS.md"
LUA = BENCH / "post_reports.lua"
LAYER = "street_lights"
REF_PREFIX = "BL-"  # gis_data.synthetic.generate_scale_points; the generated B&NES lights are "NNNNN/NNN"
CHUNK = 50_000
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


def load_assets(engine, n: int, seed: int, srid: int) -> float:
    """Add n synthetic lamp columns inside the boundary to the street_lights layer (COPY in chunks); seconds."""
    import numpy as np
    import shapely
    from sqlalchemy import text

    from gis_data.synthetic import generate_scale_points

    boundary = _boundary(engine)
    # Uniform points in the boundary's bbox, keeping the first n inside it (deterministic for n and seed).
    stream = generate_scale_points(4 * n, seed=seed, bbox=tuple(boundary.bounds))
    t0 = time.perf_counter()
    attrs = json.dumps({"synthetic": True, "bench": True})
    columns = [TextColumn("[bold]street_lights[/] +synthetic"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress, engine.connect() as conn:
        task = progress.add_task("load", total=n)
        layer_id = conn.execute(text("SELECT id FROM asset_layers WHERE name = :n"), {"n": LAYER}).scalar_one()
        conn.execute(text("CREATE TEMP TABLE _bench_pts (ref text, lon float8, lat float8)"))
        conn.commit()
        done = 0
        while done < n:
            batch = [row for _, row in zip(range(CHUNK * 2), stream)]
            if not batch:
                raise RuntimeError("the point generator ran dry before n points fell inside the boundary")
            xs = np.fromiter((r[1] for r in batch), float, len(batch))
            ys = np.fromiter((r[2] for r in batch), float, len(batch))
            keep = [r for r, inside in zip(batch, shapely.contains_xy(boundary, xs, ys)) if inside][: n - done]
            with conn.connection.driver_connection.cursor() as cur:
                with cur.copy("COPY _bench_pts (ref, lon, lat) FROM STDIN") as cp:
                    for row in keep:
                        cp.write_row(row)
            # No ON CONFLICT: a ref colliding with an existing one fails the load loudly.
            conn.execute(text(f"""
                INSERT INTO assets (layer_id, external_ref, ref_derived, geom, attributes, maintainer, synthetic)
                SELECT :l, ref, false, ST_Transform(ST_SetSRID(ST_MakePoint(lon, lat), 4326), {int(srid)}),
                       CAST(:a AS jsonb), 'street_lighting', true FROM _bench_pts"""), {"l": layer_id, "a": attrs})
            conn.execute(text("TRUNCATE _bench_pts"))
            conn.commit()
            done += len(keep)
            progress.update(task, completed=done)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        with console.status("VACUUM ANALYZE assets"):
            conn.execute(text("VACUUM (ANALYZE) assets"))
    return time.perf_counter() - t0


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
def server(app: str, workers: int, env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """Run `uvicorn app --factory` with `workers` processes on a free port; yields (base URL, pid)."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(base + "/healthz", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not answer /healthz within 60 s; see {log}")
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
        row = conn.execute(text("SELECT sessions, xact_commit, xact_rollback, active_time, idle_in_transaction_time "
                                "FROM pg_stat_database WHERE datname = current_database()")).one()
    return dict(row._mapping)


def db_split(before: dict, after: dict, requests: int, seconds: float) -> dict[str, float]:
    """New connections, commits, and per-request time the backends spent active / idle in a transaction."""
    d = {k: float(after[k] - before[k]) for k in before}
    n = max(requests, 1)
    return {"sessions": max(d["sessions"] - 1, 0.0), "commits": d["xact_commit"], "rollbacks": d["xact_rollback"],
            "active_ms": d["active_time"] / n, "idle_in_tx_ms": d["idle_in_transaction_time"] / n}


def _backends(table: dict[int, tuple[int, float]], postmaster: int | None) -> float:
    """CPU seconds of PostgreSQL's client backends (the rest of its tree is background work: autovacuum,
    WAL writer, checkpointer, and backends that already exited)."""
    total = 0.0
    for pid, (ppid, cpu) in table.items():
        if ppid == postmaster:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            # "postgres: USER DATABASE HOST(PORT) STATE"; background processes name their role instead.
            if title.startswith("postgres: ") and len(title.split()) >= 4 and "(" in title.split()[3]:
                total += cpu
    return total


def cpu_snapshot(app_pid: int) -> dict[str, float]:
    """CPU seconds so far: the server's process tree, PostgreSQL's (and its client backends'), the whole
    machine, our waited children."""
    import resource

    table = _proc_table()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    postmaster = _postmaster()
    return {"app": _tree_cpu(table, app_pid), "db": _tree_cpu(table, postmaster),
            "db_backends": _backends(table, postmaster), "machine": _machine_busy(),
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


def wait_quiet(limit: float = 25.0, max_wait: int = 180) -> float:
    """Wait until the machine is mostly idle (others' tests share it); returns the last busy % seen."""
    busy = 100.0
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


def run_wrk(base: str, path: str, token: str, coords: Path, *, duration: int, connections: int, threads: int,
            observed_at: str, log: Path, name: str, app_pid: int, engine=None, extra: str = "") -> Phase:
    """Drive base+path with wrk + post_reports.lua; parse the WRKJSON line its done() prints; account CPU."""
    prefix = f"{random.getrandbits(32):08x}"
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(LUA), base,
           "--", str(coords), path, token or "-", prefix, observed_at, *([extra] if extra else [])]
    db0 = db_snapshot(engine) if engine is not None else None
    before = cpu_snapshot(app_pid)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    after = cpu_snapshot(app_pid)
    db1 = db_snapshot(engine) if engine is not None else None
    with open(log, "a") as fh:
        shown = [("<token>" if a == token and token else a) for a in cmd]
        fh.write(f"\n### {name}: {shlex.join(shown)}\n{proc.stdout}{proc.stderr}")
    match = re.search(r"^WRKJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    d = json.loads(match.group(1))
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


def summarise(rows: list[tuple[int, int, Phase, Phase]]) -> list[tuple[int, float, float]]:
    """Per worker count: the pooled ratio (all intake requests over all intake seconds, against the same for
    the baseline) and the intake's worst p99 of any round."""
    out = []
    for w in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == w]

        def pooled(ps: list[Phase]) -> float:
            return sum(p.requests for p in ps) / sum(p.raw["duration_us"] / 1e6 for p in ps)

        base = pooled([b for *_, b in mine])
        out.append((w, pooled([i for _, _, i, _ in mine]) / base if base else 0.0, max(i.p99 for _, _, i, _ in mine)))
    return out


def write_results(command: str, info: dict, assets: dict, cfg: dict,
                  rows: list[tuple[int, int, Phase, Phase]]) -> str:
    """Append one run's section to bench/RESULTS.md; returns the section."""
    start = cfg.get("started") or datetime.now(timezone.utc)
    lines = [f"## Run {start.astimezone():%Y-%m-%d %H:%M %Z}", "",
             f"- Command: `{command}`",
             f"- Code: {cfg.get('code') or code_state()}",
             *([f"- **What-if build, not the API as committed**: intake served by `{cfg['intake_app']}`"]
               if cfg["intake_app"] != INTAKE_APP else []),
             f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_gib']} GiB RAM, Linux {info['kernel']}",
             f"- PostgreSQL {info['postgresql']}, PostGIS {info['postgis']} (GEOS {info['geos']}); "
             + ", ".join(f"{k}={v}" for k, v in info["pg_settings"].items()),
             f"- Stack: Python {info['python']}, {info['stack']}; load generator {info['wrk']}",
             f"- Assets: {assets['layer_total']:,} lamp columns on `{LAYER}` ({assets['bench']:,} synthetic "
             f"scale points + {assets['layer_total'] - assets['bench']:,} generated B&NES lights); "
             f"{assets['all_assets']:,} assets in all layers",
             f"- Load: wrk, {cfg['connections']} connections, {cfg['threads']} threads, {cfg['duration']} s measured "
             f"after {cfg['warmup']} s warm-up, per server; {cfg['points']:,} report points within ~5 m of random "
             f"loaded lamp columns; unique client_id per request; same database; {cfg.get('rounds', 1)} round(s) per "
             f"worker count, odd rounds intake first, even rounds baseline first",
             ""]
    summary = {w: (ratio, worst) for w, ratio, worst in summarise(rows)}
    for workers, rnd, intake, base in rows:
        ratio = intake.rps / base.rps if base.rps else 0.0
        valid = intake.valid and base.valid
        ratio_ok, p99_ok = ratio >= 0.5, intake.p99 < 100
        lines += [f"### uvicorn --workers {workers}, round {rnd}", "",
                  "| server | requests/s | p50 ms | p95 ms | p99 ms | requests | errors (non-2xx + socket) "
                  "| CPU ms/req: app | PostgreSQL (its backends) | wrk | other processes | machine busy |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(_fmt(p) + _fmt_cpu(p)) + " |" for p in (intake, base)]
        lines += ["",
                  f"- Ratio intake/baseline: **{_ratio(ratio)}** "
                  f"(goal ≥ 0.50: {'met' if ratio_ok else '**not met**'})",
                  f"- Intake p99: **{intake.p99:.1f} ms** (goal < 100 ms: {'met' if p99_ok else '**not met**'})",
                  f"- Status codes: intake {intake.statuses}, baseline {base.statuses}; wrk socket errors: intake "
                  f"{intake.raw['socket_errors']}, baseline {base.raw['socket_errors']}",
                  f"- Latency max: intake {intake.maxi:.0f} ms, baseline {base.maxi:.0f} ms; mean: intake "
                  f"{intake.mean:.1f} ms, baseline {base.mean:.1f} ms"]
        if "db" in intake.raw and "db" in base.raw:
            i, b = intake.raw["db"], base.raw["db"]
            lines.append(f"- PostgreSQL (pg_stat_database): new connections during the phase: intake "
                         f"{i['sessions']:.0f}, baseline {b['sessions']:.0f}; per request, backend active: intake "
                         f"{i['active_ms']:.2f} ms, "
                         f"baseline {b['active_ms']:.2f} ms; idle in transaction (waiting on the app): intake "
                         f"{i['idle_in_tx_ms']:.2f} ms, baseline {b['idle_in_tx_ms']:.2f} ms")
        if intake.idle_before is not None and base.idle_before is not None:
            lines.append(f"- Machine busy with other work just before the phase (the harness waits up to 3 min for "
                         f"< 25 %): intake {intake.idle_before:.0f} %, baseline {base.idle_before:.0f} %")
        noisy = [f"{p.name} ({p.cpu['other_pct']:.0f}% of the machine)" for p in (intake, base)
                 if p.cpu and p.cpu["other_pct"] >= 5]
        if noisy:
            lines.append(f"- Caution: other processes (the machine is shared) took CPU during {', '.join(noisy)}; "
                         "figures from a quiet machine would be better")
        if not valid:
            lines.append("- **Not a valid result: some responses were not 2xx** "
                         f"(first: `{(intake.raw.get('first_error') or base.raw.get('first_error'))[:200]}`)")
        lines.append("")
        if rnd == max(r for w, r, _, _ in rows if w == workers):
            ratio, worst = summary[workers]
            lines += [f"**uvicorn --workers {workers}, all rounds: pooled ratio {_ratio(ratio)}** (goal ≥ 0.50: "
                      f"{'met' if ratio >= 0.5 else '**not met**'}); **worst intake p99 {worst:.1f} ms** (goal < "
                      f"100 ms: {'met' if worst < 100 else '**not met**'})", ""]
    section = "\n".join(lines) + "\n"
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `bench/intake.py`; newest run last.\n\n")
    with open(RESULTS, "a") as fh:
        fh.write(section)
    return section


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
    rounds: Annotated[int, typer.Option(help="measured rounds per worker count; they alternate which server goes "
                                             "first, so a drift in the machine's speed falls on both", min=1)] = 2,
    points: Annotated[int, typer.Option(help="distinct report points in the wrk script", min=1)] = 20_000,
    database: Annotated[str, typer.Option(help="bench database name (dropped and recreated)")] = "kerbside_bench",
    reuse: Annotated[bool, typer.Option("--reuse", help="reuse the bench database if it already holds the assets")]
    = False,
    seed: Annotated[int, typer.Option(help="seed for the synthetic points")] = 1,
    record: Annotated[bool, typer.Option("--record/--no-record", help="append to bench/RESULTS.md")] = True,
    intake_app: Annotated[str, typer.Option(help="uvicorn factory of the API under test (what-if builds: "
                                                 "module:factory)")] = INTAKE_APP,
) -> None:
    """Load N assets, then measure the intake API and the snap+insert baseline with wrk, one after the other."""
    started = datetime.now(timezone.utc)
    command = ".venv/bin/python -m bench.intake " + shlex.join(sys.argv[1:])
    WORK.mkdir(parents=True, exist_ok=True)
    _pg("start")
    url = _pg("url", database)
    env = _cli_env(url)
    os.environ["KERBSIDE_DATABASE_URL"] = url
    from server.config import get_settings

    get_settings.cache_clear()
    srid = get_settings().srid
    engine = None
    if reuse:
        try:
            engine = _engine(url)
            have = _bench_count(engine)
        except Exception:
            have = -1
        if have != assets:
            console.print(f"[yellow]--reuse: {database} holds {have} bench assets, not {assets}; rebuilding[/]")
            reuse = False
    if not reuse:
        if engine is not None:
            engine.dispose()
        console.rule(f"fresh database {database}")
        _pg("createdb", database)
        t = time.perf_counter()
        setup = subprocess.run([sys.executable, "-m", "server.cli", "setup"], cwd=ROOT, env=env,
                               capture_output=True, text=True)
        if setup.returncode != 0:
            console.print(setup.stderr[-3000:], markup=False, highlight=False)
            raise typer.Exit(1)
        console.print(f"setup (migrate, import GIS data, seed) in {time.perf_counter() - t:.0f} s")
        engine = _engine(url)
        secs = load_assets(engine, assets, seed, srid)
        console.print(f"loaded {assets:,} lamp columns in {secs:.0f} s")
    else:
        # The schema may have moved on since the database was built: migrate and re-sync the catalogue
        # (not import-gis: it would drop the scale points as rows no longer in the layer's source).
        for step in ("migrate", "seed"):
            done = subprocess.run([sys.executable, "-m", "server.cli", step], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                console.print(done.stderr[-3000:], markup=False, highlight=False)
                raise typer.Exit(1)
        console.print(f"reusing {database} ({assets:,} scale points present; migrated, catalogue synced)")

    from sqlalchemy import text

    from bench.baseline_app import prepare

    with engine.begin() as conn:
        prepare(conn)
        layer_total = conn.execute(text("SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                                        "WHERE l.name = :n"), {"n": LAYER}).scalar_one()
        all_assets = conn.execute(text("SELECT count(*) FROM assets")).scalar_one()
    asset_info = {"bench": _bench_count(engine), "layer_total": layer_total, "all_assets": all_assets}
    coords = WORK / "points.txt"
    n_points = sample_points(engine, points, seed, coords)
    token = subprocess.run([sys.executable, "-m", "server.cli", "token", "create", "--role", "field_worker",
                            "--name", "bench-intake"], cwd=ROOT, env=env, check=True, capture_output=True,
                           text=True).stdout.strip()
    info = machine_info(engine)
    code = code_state()
    observed_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    log = WORK / f"run-{datetime.now():%Y%m%d-%H%M%S}.log"
    console.print(f"{asset_info['layer_total']:,} lamp columns on {LAYER}; {n_points:,} report points; "
                  f"logs in {log.relative_to(ROOT)}")

    kw = dict(duration=duration, connections=connections, threads=threads, observed_at=observed_at, log=log)
    rows = []
    servers = {"intake": (intake_app, "/api/v1/reports", token), "baseline": ("bench.baseline_app:create_app",
                                                                           "/bench/reports", "")}
    for w in workers:
        for rnd in range(1, rounds + 1):
            measured = {}
            # Odd rounds measure the intake first, even rounds the baseline: the shared machine's speed drifts
            # over minutes, and alternating puts the drift on both sides of the ratio.
            for name in (("intake", "baseline") if rnd % 2 else ("baseline", "intake")):
                app, path, tok = servers[name]
                idle = wait_quiet()
                with server(app, w, env, log) as (base, pid):
                    if warmup:
                        with console.status(f"{name}, {w} worker(s), round {rnd}: warm-up {warmup} s"):
                            run_wrk(base, path, tok, coords, **{**kw, "duration": warmup}, name=f"{name}-warmup",
                                    app_pid=pid)
                        time.sleep(1)  # let the warm-up's last requests drain
                    with console.status(f"{name}, {w} worker(s), round {rnd}: measuring {duration} s"):
                        measured[name] = run_wrk(base, path, tok, coords, **kw, name=name, app_pid=pid,
                                                 engine=engine)
                    measured[name].idle_before = idle
                p = measured[name]
                console.print(f"{name:8} workers={w} round {rnd}: {p.rps:,.0f} req/s  p50 {p.p50:.1f} ms  "
                              f"p95 {p.p95:.1f} ms  p99 {p.p99:.1f} ms  errors {p.errors}  {p.statuses}  CPU/req: "
                              f"app {p.cpu['app_ms']:.1f} ms, PostgreSQL {p.cpu['db_ms']:.1f} ms (backends "
                              f"{p.cpu['db_backends_ms']:.1f}), wrk {p.cpu['wrk_ms']:.1f} ms, other "
                              f"{p.cpu['other_ms']:.1f} ms; machine {p.cpu['util']:.0f}% busy; db {p.raw.get('db')}")
            rows.append((w, rnd, measured["intake"], measured["baseline"]))

    table = Table(title=f"POST reports, {asset_info['layer_total']:,} lamp columns, {connections} connections")
    for col in ("workers", "round", "server", "req/s", "p50 ms", "p95 ms", "p99 ms", "requests", "errors", "ratio"):
        table.add_column(col, justify="right")
    for w, rnd, intake, base in rows:
        for p in (intake, base):
            ratio = _ratio(intake.rps / base.rps) if p is intake and base.rps else ""
            table.add_row(str(w), str(rnd), *_fmt(p), ratio)
    for w, ratio, worst_p99 in summarise(rows):
        table.add_row(str(w), "all", "intake/baseline", "", "", "", f"worst {worst_p99:.1f}", "", "",
                      f"[bold]{_ratio(ratio)}[/]")
    Console().print(table)
    if record:
        write_results(command, info, asset_info, {"connections": connections, "threads": threads,
                                                  "duration": duration, "warmup": warmup, "points": n_points,
                                                  "rounds": rounds,
                                                  "intake_app": intake_app, "started": started,
                                                  "code": code if code_state() == code else
                                                  f"{code} at the start; **changed during the run**: {code_state()}"},
                      rows)
        console.print(f"appended to {RESULTS.relative_to(ROOT)}")
    engine.dispose()
    if any(not (i.valid and b.valid) for _, _, i, b in rows):
        console.print("[bold red]some responses were not 2xx: not a valid result[/] (see the log)")
        raise typer.Exit(1)


if __name__ == "__main__":
    cli()
