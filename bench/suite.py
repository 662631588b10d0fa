"""The whole benchmark (issue 16): intake against two baselines, snap at scale, reads (with pygeoapi), the SLA
sweep, field sync, and the growth curve; rewrites bench/RESULTS.md, bench/growth.json and bench/growth.png.

    .venv/bin/python -m bench.suite run            (what `make bench` runs; 15 to 40 minutes on 2 cores)
    .venv/bin/python -m bench.suite run --sizes 20000 --sizes 100000 --main-size 100000 --jobs 50000 \\
        --duration 5 --no-write                    (a quick check of the harness)

One fresh database (kerbside_bench_suite, dropped at the end unless --keep): `server.cli setup`, 1M open jobs
(bench/load.py, SQL), then lamp columns grown through --sizes (SQL, generate_series). At each size: the snap
query alone and the growth row (intake, job by reference, OGC lamp-column bbox). At --main-size as well: intake
vs both baselines in rotating rounds, reads with pygeoapi, the SLA sweep, field sync. Any non-2xx answer, socket
error, failed flag count or sync that is not exactly-once makes the run invalid: RESULTS.md is not rewritten
and the command exits 1.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench import intake as ib
from bench.intake import ROOT, _pg, console

RESULTS = ROOT / "bench" / "RESULTS.md"
GROWTH_JSON = ROOT / "bench" / "growth.json"
GROWTH_PNG = ROOT / "bench" / "growth.png"
RAW_JSON = ROOT / "bench" / "results.json"
GET_LUA = ROOT / "bench" / "get_paths.lua"
VENV_BENCH = ROOT / ".venv-bench"
WORK = ROOT / ".data" / "bench" / "suite"  # .data may be shared between worktrees: our own folder
CREW_PLANS = "## Crew day plans (issue 15)"

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The whole Kerbside benchmark (issue 16)")


@cli.callback()
def _main() -> None:
    """The whole benchmark."""


class Invalid(RuntimeError):
    """A measurement that must not be reported (errors, non-2xx, not exactly-once)."""


def _check(p: ib.Phase, what: str) -> ib.Phase:
    if not p.valid:
        raise Invalid(f"{what}: {p.errors} errors/non-2xx {p.statuses}; first: {p.raw.get('first_error', '')[:300]}")
    return p


def _phase_dict(p: ib.Phase) -> dict:
    return {"rps": p.rps, "p50": p.p50, "p95": p.p95, "p99": p.p99, "requests": p.requests, "errors": p.errors,
            "app_ms": p.cpu["app_ms"], "db_ms": p.cpu["db_backends_ms"], "db_all_ms": p.cpu["db_ms"],
            "other_pct": p.cpu["other_pct"], "util": p.cpu["util"],
            **({"db_active_ms": p.raw["db"]["active_ms"], "tx_per_req": p.raw["db"]["commits"] / max(p.requests, 1),
                "jobs_opened": p.raw["db"]["jobs_opened"], "reports_taken": p.raw["db"]["reports_taken"]}
               if "db" in p.raw else {}),
            **({"points": p.raw["points"]} if "points" in p.raw else {})}


def _get(base: str, paths: Path, token: str, *, duration: int, warmup: int, connections: int, log: Path,
         name: str, pid: int, engine=None) -> ib.Phase:
    kw = dict(duration=duration, connections=connections, threads=2, observed_at="-", log=log, script=GET_LUA)
    if warmup:
        ib.run_wrk(base, "-", token, paths, **{**kw, "duration": warmup}, name=name + "-warmup", app_pid=pid)
    return _check(ib.run_wrk(base, "-", token, paths, **kw, name=name, app_pid=pid, engine=engine), name)


def _first(base: str, paths: Path, token: str, concurrent: int = 4, tries: int = 4) -> float:
    """Requests of the first path, `concurrent` at a time with no time limit, until a round is fast (< 2 s), so
    each worker process has made its first-use caches (e.g. the layers' extents) before a measured phase; the
    slowest first-round request's seconds. Raises Invalid on a non-2xx."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    path = paths.read_text().split("\n", 1)[0]

    def one(_: int) -> float:
        t0 = time.perf_counter()
        r = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=600)
        if not 200 <= r.status_code < 300:
            raise Invalid(f"GET {path}: {r.status_code} {r.text[:300]}")
        return time.perf_counter() - t0

    first = None
    with ThreadPoolExecutor(concurrent) as pool:
        for _ in range(tries):
            slowest = max(pool.map(one, range(concurrent)))
            first = slowest if first is None else first
            if slowest < 2:
                break
    return first


def growth_row(engine, env, field_token, advisor_token, coords, job_file, lights_file, log, *, size, duration,
               connections, ogc_connections, workers) -> dict:
    """Intake alone (one round), then job by reference and an OGC lamp-column bbox on one API server."""
    g = ib.measure_intake(engine, env, field_token, coords, workers=[workers], rounds=1, duration=duration, warmup=3,
                          connections=connections, threads=2, log=log, servers=("intake",), quiet=False)
    p = _check(g[0][2]["intake"], f"intake at {size:,}")
    row = {"intake_rps": p.rps, "intake_p99": p.p99}
    with ib.server(ib.INTAKE_APP, workers, env, log) as (base, pid):
        jp = _get(base, job_file, advisor_token, duration=duration, warmup=3, connections=connections, log=log,
                  name=f"job-by-ref@{size}", pid=pid)
        row["ogc_first_s"] = _first(base, lights_file, advisor_token)
        op = _get(base, lights_file, advisor_token, duration=duration, warmup=3, connections=ogc_connections, log=log,
                  name=f"ogc-lights@{size}", pid=pid)
    row.update(job_p99=jp.p99, job_rps=jp.rps, ogc_p95=op.p95, ogc_rps=op.rps)
    return row


@cli.command("finish-growth")
def finish_growth(
    size: Annotated[int, typer.Option(help="lamp columns the kept database holds")],
    database: Annotated[str, typer.Option(help="the kept bench database")] = "kerbside_bench_suite",
    duration: Annotated[int, typer.Option(help="seconds per wrk phase")] = 10,
    connections: Annotated[int, typer.Option()] = 16,
    ogc_connections: Annotated[int, typer.Option()] = 4,
    workers: Annotated[int, typer.Option()] = 2,
) -> None:
    """Measure the growth row at `size` on a database kept by `run --keep` whose run stopped at that row, add it to
    bench/results.partial.json (marked as measured by this command) and render RESULTS.md from it."""
    from bench import reads
    from bench.report import write_all

    import psycopg

    partial = RAW_JSON.with_suffix(".partial.json")
    out = json.loads(partial.read_text())
    url = _pg("url", database)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    env = ib._cli_env(url)
    os.environ["KERBSIDE_DATABASE_URL"] = url
    engine = ib._engine(url)
    log = WORK / f"finish-{datetime.now():%Y%m%d-%H%M%S}.log"
    job_file, lights_file, coords = WORK / "job_paths.txt", WORK / f"ogc_lights_{size}.txt", WORK / f"points_{size}.txt"
    with psycopg.connect(dsn) as conn:
        reads.items_paths(reads.bboxes(conn, layer="street_lights"), lights_file, "/ogc", "street_lights")
    s = out["snap"][str(size)]
    row = {"assets": size, "snap_p50": s["locate"]["p50"], "snap_p99": s["locate"]["p99"],
           **growth_row(engine, env, ib.bench_token(env), ib.bench_token(env, "advisor", "bench-reads"), coords,
                        job_file, lights_file, log, size=size, duration=duration, connections=connections,
                        ogc_connections=ogc_connections, workers=workers),
           "measured_by": ".venv/bin/python -m bench.suite " + shlex.join(sys.argv[1:]),
           "measured_at": datetime.now(timezone.utc).isoformat()}
    console.print(f"growth {size:,}: {row}")
    out["growth"] = [g for g in out["growth"] if g["assets"] != size] + [row]
    out["finished"] = datetime.now(timezone.utc).isoformat()
    out["code_after"] = ib.code_state()
    engine.dispose()
    write_all(out)
    partial.unlink()


def _progress(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console)


@cli.command()
def run(
    sizes: Annotated[list[int], typer.Option("--sizes", help="lamp-column counts of the growth curve (repeatable)")]
    = [100_000, 1_000_000, 10_000_000],  # noqa: B006
    main_size: Annotated[int, typer.Option(help="size at which intake, reads, SLA and sync are measured")]
    = 1_000_000,
    jobs: Annotated[int, typer.Option(help="open jobs loaded before anything is measured")] = 1_000_000,
    duration: Annotated[int, typer.Option(help="seconds measured per wrk phase at the main size")] = 20,
    growth_duration: Annotated[int, typer.Option(help="seconds per wrk phase of a growth row")] = 10,
    warmup: Annotated[int, typer.Option(help="warm-up seconds per wrk phase")] = 5,
    rounds: Annotated[int, typer.Option(help="rounds of intake vs baselines, and of OGC vs pygeoapi")] = 3,
    connections: Annotated[int, typer.Option(help="wrk connections for intake and job reads")] = 16,
    ogc_connections: Annotated[int, typer.Option(help="wrk connections for the OGC items comparison")] = 4,
    workers: Annotated[int, typer.Option(help="uvicorn workers for every server")] = 2,
    quiet_wait: Annotated[int, typer.Option(help="seconds to wait at most, before each intake phase, for the "
                                                 "shared machine to go quiet (< 25 % busy)")] = 45,
    database: Annotated[str, typer.Option(help="bench database (dropped and recreated)")] = "kerbside_bench_suite",
    keep: Annotated[bool, typer.Option("--keep", help="keep the bench database afterwards")] = False,
    write: Annotated[bool, typer.Option("--write/--no-write", help="rewrite bench/RESULTS.md and the growth files")]
    = True,
) -> None:
    """Build the data, measure the six goals, rewrite bench/RESULTS.md."""
    import psycopg

    from bench import load, reads, snap

    started = datetime.now(timezone.utc)
    ib.QUIET_WAIT = quiet_wait
    command = ".venv/bin/python -m bench.suite " + shlex.join(sys.argv[1:])
    sizes = sorted(set(sizes) | {main_size})
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / f"suite-{datetime.now():%Y%m%d-%H%M%S}.log"
    _pg("start")
    url = _pg("url", database)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    env = ib._cli_env(url)
    os.environ["KERBSIDE_DATABASE_URL"] = url
    from server.config import get_settings

    get_settings.cache_clear()
    srid = get_settings().srid
    out: dict = {"command": command, "started": started.isoformat(), "code": ib.code_state(), "growth": [],
                 "snap": {}, "disk": {},
                 "jobs": jobs, "ogc_connections": ogc_connections, "connections": connections, "workers": workers}
    ok = False
    try:
        console.rule(f"fresh database {database}")
        _pg("createdb", database)
        t = time.perf_counter()
        setup = subprocess.run([sys.executable, "-m", "server.cli", "setup"], cwd=ROOT, env=env, capture_output=True,
                               text=True)
        if setup.returncode != 0:
            console.print(setup.stderr[-3000:], markup=False, highlight=False)
            raise typer.Exit(1)
        console.print(f"setup (migrate, import GIS data, seed) in {time.perf_counter() - t:.0f} s")
        engine = ib._engine(url)
        ib.prepare_baselines(engine)
        out["machine"] = ib.machine_info(engine)
        field_token = ib.bench_token(env)
        advisor_token = ib.bench_token(env, "advisor", "bench-reads")
        with psycopg.connect(dsn) as conn:
            with _progress(f"{jobs:,} open jobs") as pr:
                task = pr.add_task("jobs", total=jobs)
                out["jobs_load_s"] = load.add_jobs(conn, jobs, srid, progress=lambda d, n: pr.update(task, completed=d))
            job_file = WORK / "job_paths.txt"
            reads.job_paths(conn, job_file)
        for size in sizes:
            with psycopg.connect(dsn) as conn:
                with _progress(f"lamp columns → {size:,}") as pr:
                    task = pr.add_task("assets", total=size)
                    secs = load.grow_assets(conn, size, srid, progress=lambda d, n: pr.update(task, completed=d))
                out["disk"][size] = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                                                 ).fetchone()[0]
                console.print(f"{size:,} lamp columns loaded (+{secs:.0f} s); database {out['disk'][size]}")
                lights_file = WORK / f"ogc_lights_{size}.txt"
                reads.items_paths(reads.bboxes(conn, layer="street_lights"), lights_file, "/ogc", "street_lights")
            coords = WORK / f"points_{size}.txt"
            # Enough points that no intake report of the run repeats another's (run_wrk's `fresh`): the main size
            # takes about 600,000 reports over its growth row and its three rounds of the four servers (the bare
            # baseline's phases the most), and a phase uses up to its threads × the most one thread sent.
            with console.status(f"sampling report points at {size:,}"):
                ib.sample_points(engine, min(900_000 if size == main_size else 60_000, size * 9 // 10), 1, coords)
            with console.status(f"snap query alone at {size:,}"):
                out["snap"][size] = snap.measure(dsn, coords, srid)
            s = out["snap"][size]
            console.print(f"snap at {size:,}: locate p50 {s['locate']['p50']:.2f} ms p99 {s['locate']['p99']:.2f} ms; "
                          f"bare KNN p50 {s['knn']['p50']:.2f} ms p99 {s['knn']['p99']:.2f} ms")
            row = {"assets": size, "snap_p50": s["locate"]["p50"], "snap_p99": s["locate"]["p99"]}
            row.update(growth_row(engine, env, field_token, advisor_token, coords, job_file, lights_file, log,
                                  size=size, duration=growth_duration, connections=connections,
                                  ogc_connections=ogc_connections, workers=workers))
            out["growth"].append(row)
            console.print(f"growth {size:,}: {json.dumps({k: round(v, 2) for k, v in row.items()})}")
            if size == main_size:
                main(out, engine, env, dsn, url, field_token, advisor_token, coords, job_file, srid, log,
                     duration=duration, warmup=warmup, rounds=rounds, connections=connections,
                     ogc_connections=ogc_connections, workers=workers)
        out["finished"] = datetime.now(timezone.utc).isoformat()
        out["code_after"] = ib.code_state()
        engine.dispose()
        ok = True
    except Invalid as exc:
        console.print(f"[bold red]not a valid run:[/] {exc}")
    finally:
        RAW_JSON.with_suffix(".partial.json").write_text(json.dumps(out, indent=1, default=str))
        if not keep:
            try:
                _pg("dropdb", database)
            except subprocess.CalledProcessError as exc:
                console.print(f"[yellow]could not drop {database}: {exc}[/]")
    if not ok:
        raise typer.Exit(1)
    RAW_JSON.with_suffix(".partial.json").unlink()
    if write:
        from bench.report import write_all

        write_all(out)
        console.print(f"rewrote {RESULTS.relative_to(ROOT)}, {GROWTH_JSON.name}, {GROWTH_PNG.name}")


@cli.command("sla")
def sla_only(
    jobs: Annotated[int, typer.Option(help="open jobs loaded")] = 1_000_000,
    database: Annotated[str, typer.Option(help="bench database (dropped and recreated)")] = "kerbside_bench_sla",
) -> None:
    """The SLA sweep goal alone, on a fresh database with `jobs` open jobs; replaces the SLA figures in
    bench/results.json (marked with this command, time and code) and re-renders bench/RESULTS.md."""
    import psycopg

    from bench import load, sla
    from bench.report import RAW_JSON as RAW, write_all

    started = datetime.now(timezone.utc)
    url = _pg("url", database)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    env = ib._cli_env(url)
    os.environ["KERBSIDE_DATABASE_URL"] = url
    _pg("createdb", database)
    try:
        subprocess.run([sys.executable, "-m", "server.cli", "setup"], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True)
        with psycopg.connect(dsn) as conn:
            with _progress(f"{jobs:,} open jobs") as pr:
                task = pr.add_task("jobs", total=jobs)
                load.add_jobs(conn, jobs, 27700, progress=lambda d, n: pr.update(task, completed=d))
        with console.status("SLA sweep: 10,000 crossing, alternating with set-based SQL"):
            figures = sla.measure(dsn)
    finally:
        _pg("dropdb", database)
    console.print(f"SLA: {json.dumps(figures, default=str)}")
    r = json.loads(RAW.read_text())
    if "run" in r.get("sla", {}):
        r["sla_previous"] = r["sla"]  # the last SLA-only run, kept for the note
    r["sla"] = {**figures, "run": {"command": ".venv/bin/python -m bench.suite " + shlex.join(sys.argv[1:]),
                                   "started": started.isoformat(), "code": ib.code_state()}}
    write_all(r)


def main(out: dict, engine, env, dsn, url, field_token, advisor_token, coords, job_file, srid, log, *, duration,
         warmup, rounds, connections, ogc_connections, workers) -> None:
    """The main-size measurements: intake vs baselines, reads with pygeoapi, SLA sweep, field sync."""
    import psycopg

    from bench import fieldsync, reads, sla

    console.rule("intake vs both baselines")
    rows = ib.measure_intake(engine, env, field_token, coords, workers=[workers], rounds=rounds, duration=duration,
                             warmup=warmup, connections=connections, threads=2, log=log)
    for _, rnd, ph in rows:
        for name, p in ph.items():
            _check(p, f"{name} round {rnd}")
    Console(stderr=True).print(ib.intake_table(rows, "POST reports"))
    out["intake"] = {"rounds": [{"round": rnd, **{k: _phase_dict(p) for k, p in ph.items()}} for _, rnd, ph in rows],
                     # what the batched floor sends (bench/floor_app.py): the API's own batch statement
                     "summary": {**ib.summarise(rows)[workers], "floor_statement": "kerbside_intake_batch",
                                 "settled": True}}

    console.rule("reads")
    with psycopg.connect(dsn) as conn:
        boxes = reads.bboxes(conn)
    ours, theirs = WORK / "ogc_jobs_ours.txt", WORK / "ogc_jobs_pygeoapi.txt"
    reads.items_paths(boxes, ours, "/ogc")
    reads.items_paths(boxes, theirs, "")
    out["reads"] = {"bbox_held": [b["held"] for b in boxes], "ogc": []}
    with ib.server(ib.INTAKE_APP, workers, env, log) as (base, pid):
        jp = _get(base, job_file, advisor_token, duration=duration, warmup=warmup, connections=connections, log=log,
                  name="job-by-ref", pid=pid)
    out["reads"]["job"] = _phase_dict(jp)
    console.print(f"job by reference: {jp.rps:,.0f} req/s p50 {jp.p50:.1f} p99 {jp.p99:.1f} ms")
    from urllib.parse import urlparse

    u = urlparse(dsn)
    penv = reads.pygeoapi_env(u.path.lstrip("/"), u.password, u.port, srid, WORK)
    for rnd in range(1, rounds + 1):
        order = ("kerbside", "pygeoapi") if rnd % 2 else ("pygeoapi", "kerbside")
        measured = {}
        for name in order:
            if name == "kerbside":
                ctx = ib.server(ib.INTAKE_APP, workers, env, log)
                paths, tok = ours, advisor_token
            else:
                ctx = ib.server("pygeoapi.starlette_app:APP", workers, penv, log,
                                python=str(VENV_BENCH / "bin" / "python"), factory=False, health="/conformance?f=json")
                paths, tok = theirs, ""
            with ctx as (base, pid):
                _first(base, paths, tok)  # caches made on first use, outside the measured phase
                p = _get(base, paths, tok, duration=duration, warmup=warmup, connections=ogc_connections, log=log,
                         name=f"ogc-{name}", pid=pid)
            measured[name] = _phase_dict(p)
            console.print(f"OGC items {name} round {rnd}: {p.rps:,.1f} req/s p50 {p.p50:.0f} p95 {p.p95:.0f} ms")
        out["reads"]["ogc"].append({"round": rnd, **measured})
    (WORK / "pygeoapi.yml").unlink(missing_ok=True)  # it holds the bench database's password

    console.rule("SLA sweep")
    with console.status("SLA sweep: 10,000 crossing, alternating with set-based SQL"):
        out["sla"] = sla.measure(dsn)
    console.print(f"SLA: {json.dumps(out['sla'], default=str)}")

    console.rule("field sync")
    photos = WORK / f"photos-{os.getpid()}"
    senv = {**env, "KERBSIDE_PHOTO_ROOT": str(photos)}
    try:
        with ib.server(ib.INTAKE_APP, workers, senv, log) as (base, pid):
            with console.status("field sync: 200 reports with 1–2 MB photos"):
                out["sync"] = fieldsync.measure(base, field_token, coords, dsn)
    finally:
        import shutil

        shutil.rmtree(photos, ignore_errors=True)
    console.print(f"sync: {out['sync']}")
    if not out["sync"]["exactly_once"]:
        raise Invalid(f"field sync was not exactly-once: {out['sync']}")


if __name__ == "__main__":
    cli()
