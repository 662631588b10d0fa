"""What notifying the reporter adds to the intake: POST /api/v1/reports with and without a reporter's contact.

    .venv/bin/python -m bench.notify_cost run --assets 1000000 --duration 5 --rounds 18 --connections 16

The same API, database and wrk script (bench/post_reports.lua) as bench/intake.py, in three phases that differ
only in the body's `contact`:
- `plain`: none;
- `contact`: an email and a mobile, updates by both, consent given, a different reporter for every report (as
  residents are): the intake queues the contact as it came, one `contact_queue` row in the report's
  transaction, which the outbox worker later files (the contact apart from the report, its "received" queue
  row, a chaser for a repeat contact) and writes as outbox rows (timed after the run, off the request's path);
- `same`: that contact with one email and one mobile for every report of the run, the worst case: every report
  that joins an open job is then also a repeat contact by the same person (a chaser, when filed), and every
  contact lands on the same key of the phone index.
One API serves the whole run; after a warm-up of each, the phases run in short slices, round after round, the
rounds rotating which goes first, so a drift of the machine or of the growing tables falls on all three alike
(the written tables are vacuumed and a checkpoint taken before the run). Then the same three on one connection,
interleaved request by request in a shuffled order (a bare socket client, every request prepared beforehand):
the time per report with nothing else in flight, the API's and PostgreSQL's work for it and its commit, with
no queueing in it, its median per phase (the figure least moved by the machine's noise).
The goal (issue 14): notifications add at most 5 % to the intake's cost, read as the pooled throughput ratio
(contact / plain) ≥ 0.95 and as the time per report on one connection (contact / plain ≤ 1.05), with CPU per
request (API + PostgreSQL) beside them; `same` is reported beside them.
The section "Notifications' cost to the intake" in bench/RESULTS.md is replaced by this run's.
"""
from __future__ import annotations

import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench import intake as B

cli = typer.Typer(add_completion=False, no_args_is_help=True)
console = Console()
HEADING = "## Notifications' cost to the intake (issue 14)"
# {n}: nine digits unique to the request within a phase (bench/post_reports.lua): a different reporter each time.
CONTACT = {"first_name": "Bench", "email": "reporter{n}@example.org", "phone": "07{n}", "notify": "both",
           "consent": True}
SAME = {**CONTACT, "email": "bench.reporter@example.org", "phone": "07700900123"}
PHASES = ("plain", "contact", "same")


@cli.callback()
def _main() -> None:
    """Notifications' share of the intake's cost."""


def _database(name: str, assets: int, reuse: bool):
    """The bench database with N scale lamp columns: reused when it has them, else built afresh."""
    import psycopg

    from bench.load import bench_assets, grow_assets
    from server.config import get_settings

    url = B._pg("url", name)
    env = B._cli_env(url)
    fresh = not reuse
    if reuse:
        try:
            with psycopg.connect(url.replace("+psycopg", "")) as conn:
                fresh = bench_assets(conn) != assets
        except psycopg.OperationalError:  # no such database yet
            fresh = True
    if fresh:
        B._pg("createdb", name)
    for step in (("setup",) if fresh else ("migrate", "seed")):
        done = subprocess.run([sys.executable, "-m", "server.cli", step], cwd=B.ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            console.print(done.stderr[-3000:], markup=False, highlight=False)
            raise typer.Exit(1)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        grow_assets(conn, assets, get_settings().srid)
    return url, env, B._engine(url)


def _queued(engine) -> int:
    """Contacts queued by the intake for the outbox worker to file (none runs during the bench)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM contact_queue")).scalar_one()


def _write_queued(engine) -> dict:
    """What the outbox worker does with the queue after the run: its batches timed, off any request's path."""
    from sqlalchemy.orm import Session

    from server.notifications import received

    from sqlalchemy import text

    def messages() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM outbox_messages WHERE topic = 'received'")).scalar_one()

    def chasers() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM chasers WHERE kind = 'repeat_report'")).scalar_one()

    contacts, before, chased = _queued(engine), messages(), chasers()
    t0 = time.perf_counter()
    drain = received.Drain()  # as the worker's deliver_due drains it
    with Session(engine) as session:
        while received.write_queued(session, drain=drain):
            session.commit()
    seconds = time.perf_counter() - t0
    return {"contacts": contacts, "rows": messages() - before, "chasers": chasers() - chased, "seconds": seconds}


def _section(command: str, info: dict, cfg: dict, rows: list[tuple[int, dict]], queued: dict, solo: dict) -> str:
    per = queued["seconds"] * 1000 / queued["contacts"] if queued["contacts"] else 0.0
    def pooled(name):
        ps = [r[name] for _, r in rows]
        return sum(p.requests for p in ps) / sum(p.raw["duration_us"] / 1e6 for p in ps)

    def cpu(name):
        ps = [r[name] for _, r in rows]
        n = sum(p.requests for p in ps)
        return sum((p.cpu["app_ms"] + p.cpu["db_ms"]) * p.requests for p in ps) / n if n else 0.0

    ratio, same = pooled("contact") / pooled("plain"), pooled("same") / pooled("plain")
    per_round = sorted(r["contact"].rps / r["plain"].rps for _, r in rows)
    middle = per_round[len(per_round) // 2] if len(per_round) % 2 else sum(per_round[len(per_round) // 2 - 1:
                                                                                   len(per_round) // 2 + 1]) / 2
    cost = cpu("contact") / cpu("plain") if cpu("plain") else 0.0
    lines = [HEADING, "",
             f"- Command: `{command}` ({cfg['started']:%Y-%m-%d %H:%M %Z}); code {B.code_state()}",
             f"- Machine: {info['nproc']} CPUs, PostgreSQL {info['postgresql']}, PostGIS {info['postgis']}; "
             f"{cfg['assets']:,} scale lamp columns; wrk {cfg['connections']} connections, {cfg['duration']} s per "
             f"phase and round, {cfg['workers']} uvicorn worker(s) for the whole run, {len(rows)} rounds, the "
             "order rotating",
             "- Phases: **plain**, no contact; **contact**, an email and a mobile with updates by both and consent, "
             "a different reporter for every report; **same**, that contact with one email and mobile for every "
             "report of the run (every report joining an open job is then also a repeat contact)",
             f"- The contact phases queued {queued['contacts']:,} reporters' contacts (one `contact_queue` row per "
             f"report; the plain phase none). The outbox worker's step then filed them (each a contact row, and "
             f"{queued.get('chasers', 0):,} repeat-contact chasers) and wrote {queued['rows']:,} outbox rows (an "
             f"email and a text each) in batches of 500: {queued['seconds']:.1f} s, **{per:.3f} ms per report**, "
             "off the request's path and not in the ratio below", "",
             "| round | plain req/s | p99 ms | contact req/s | p99 ms | same req/s | p99 ms | CPU ms/req plain → contact → same |",
             "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for rnd, r in rows:
        a, b, c = (r[k] for k in PHASES)
        lines.append(f"| {rnd} | {a.rps:,.0f} | {a.p99:.1f} | {b.rps:,.0f} | {b.p99:.1f} | {c.rps:,.0f} | {c.p99:.1f} | "
                     + " → ".join(f"{p.cpu['app_ms'] + p.cpu['db_ms']:.2f}" for p in (a, b, c)) + " |")
    verdict = "met" if ratio >= 0.95 else "**not met**"
    lines += ["", f"**Throughput with contact / without: {ratio:.3f}** (notifications add "
              f"{(1 / ratio - 1) * 100:+.1f} % to the time per report; goal ≤ 5 %: {verdict}); "
              f"CPU per report (API + PostgreSQL) with / without: {cost:.3f}. One reporter for every report: "
              f"{same:.3f} ({(1 / same - 1) * 100:+.1f} %). Round by round, contact / plain ran from "
              f"{per_round[0]:.3f} to {per_round[-1]:.3f}, median {middle:.3f}.", ""]

    med = {n: statistics.median(solo[n]) * 1e3 for n in PHASES}
    trim = {n: _trimmed(solo[n]) * 1e3 for n in PHASES}
    solo_ratio = med["contact"] / med["plain"]
    lines += [f"**One report with nothing else in flight** (one connection, {len(solo['plain']):,} reports per phase, "
              f"the phases interleaved request by request in a shuffled order, same API; median time per report): "
              f"plain {med['plain']:.3f} ms, contact {med['contact']:.3f} ms, same {med['same']:.3f} ms: a contact "
              f"adds **{(solo_ratio - 1) * 100:+.1f} %** (10 %-trimmed means: "
              f"{(trim['contact'] / trim['plain'] - 1) * 100:+.1f} %; "
              f"one reporter for every report: {(med['same'] / med['plain'] - 1) * 100:+.1f} %); goal ≤ 5 %: "
              f"{'met' if solo_ratio <= 1.05 else '**not met**'}.", ""]
    return "\n".join(lines) + "\n"


def _one_connection(base: str, token: str, coords: Path, observed_at: str, extras: dict[str, str], per_phase: int,
                    warmup: int = 200) -> dict[str, list[float]]:
    """Time reports one at a time on one keep-alive connection, the three phases interleaved request by request
    in a shuffled order: a drift of the machine (its speed moves by tens of per cent over minutes on a shared
    host) falls on all three alike. The client is a bare socket with every request prepared beforehand, so its
    own cost per request (tens of µs, the same for every phase) barely dilutes the ratio. Returns the seconds of
    each request by phase; raises if any answer is not 2xx."""
    import random
    import socket
    import uuid
    from urllib.parse import urlsplit

    points = [line.split() for line in coords.read_text().splitlines() if line.strip()]
    rng = random.Random(7)
    host = urlsplit(base)

    def request(name: str, n: int) -> bytes:
        lat, lon = rng.choice(points)
        more = extras[name].replace("{n}", f"{n:09d}")
        body = (f'{{"client_id":"{uuid.uuid4()}","category":"street_light","lat":{lat},"lon":{lon},'
                f'"accuracy_m":5,"observed_at":"{observed_at}","answers":{{"fault":"out"}}{more}}}').encode()
        return (f"POST /api/v1/reports HTTP/1.1\r\nHost: {host.netloc}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    order = [name for name in PHASES for _ in range(per_phase)]
    rng.shuffle(order)
    order = [rng.choice(PHASES) for _ in range(warmup)] + order
    prepared = [(name, request(name, 500_000_000 + i)) for i, name in enumerate(order)]
    times: dict[str, list[float]] = {name: [] for name in PHASES}
    with socket.create_connection((host.hostname, host.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        for i, (name, data) in enumerate(prepared):
            t0 = time.perf_counter()
            sock.sendall(data)
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(buf) < length:
                buf += sock.recv(65536)
            buf = buf[length:]
            elapsed = time.perf_counter() - t0
            status = int(head.split(b" ", 2)[1])
            if not 200 <= status < 300:
                raise RuntimeError(f"one connection: {name} answered {status}")
            if i >= warmup:
                times[name].append(elapsed)
    return times


def _trimmed(values: list[float], cut: float = 0.1) -> float:
    v = sorted(values)
    k = int(len(v) * cut)
    return statistics.fmean(v[k:len(v) - k])


def _record(section: str) -> None:
    text = B.RESULTS.read_text() if B.RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(re.escape(HEADING) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    B.RESULTS.write_text(text)


@cli.command()
def run(
    assets: Annotated[int, typer.Option(help="synthetic lamp columns on street_lights", min=1)] = 1_000_000,
    # Short slices, many rounds: the machine's speed drifts by tens of per cent over minutes (other tenants of a
    # shared host), and a drift between two phases' slices is noise in their ratio.
    duration: Annotated[int, typer.Option(help="seconds measured per phase and round", min=1)] = 5,
    connections: Annotated[int, typer.Option(help="concurrent wrk connections", min=1)] = 16,
    workers: Annotated[int, typer.Option(help="uvicorn workers", min=1)] = 2,
    rounds: Annotated[int, typer.Option(help="rounds, rotating which phase goes first", min=1)] = 18,
    solo_requests: Annotated[int, typer.Option(help="reports per phase on one connection", min=100)] = 6000,
    warmup: Annotated[int, typer.Option(help="warm-up seconds per phase, once", min=0)] = 5,
    database: Annotated[str, typer.Option(help="bench database")] = "kerbside_bench_notify",
    reuse: Annotated[bool, typer.Option("--reuse/--fresh", help="reuse the database if it has the assets")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="keep the bench database afterwards")] = False,
    quiet_wait: Annotated[int, typer.Option(help="most seconds to wait for a quiet machine before the run",
                                            min=0)] = 180,
    record: Annotated[bool, typer.Option("--record/--no-record", help="write the section in RESULTS.md")] = True,
) -> None:
    """Measure the intake with and without a reporter's contact, side by side in one run."""
    started = datetime.now(timezone.utc)
    command = ".venv/bin/python -m bench.notify_cost " + shlex.join(sys.argv[1:])
    B.WORK.mkdir(parents=True, exist_ok=True)
    B._pg("start")
    url, env, engine = _database(database, assets, reuse)
    coords = B.WORK / "points-notify.txt"
    B.sample_points(engine, 20_000, 1, coords)
    token = subprocess.run([sys.executable, "-m", "server.cli", "token", "create", "--role", "advisor", "--name",
                            "bench-notify"], cwd=B.ROOT, env=env, check=True, capture_output=True,
                           text=True).stdout.strip()
    observed_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    log = B.WORK / f"notify-{datetime.now():%Y%m%d-%H%M%S}.log"
    kw = dict(duration=duration, connections=connections, threads=2, observed_at=observed_at, log=log)
    extras = {"plain": "", "contact": ',"contact":' + json.dumps(CONTACT, separators=(",", ":")),
              "same": ',"contact":' + json.dumps(SAME, separators=(",", ":"))}
    rows = []
    B.settle(engine)  # the same start for every phase
    B.wait_quiet(max_wait=quiet_wait)
    # One API for the whole run, its connections warm, the phases in short interleaved slices: a drift of the
    # machine or of the growing tables falls on all three alike.
    with B.server(B.INTAKE_APP, workers, env, log) as (base, pid):
        if warmup:
            for name in PHASES:
                B.run_wrk(base, "/api/v1/reports", token, coords, **{**kw, "duration": warmup},
                          name=f"{name}-warmup", app_pid=pid, extra=extras[name])
            time.sleep(1)
        for rnd in range(1, rounds + 1):
            measured = {}
            k = (rnd - 1) % len(PHASES)
            for name in PHASES[k:] + PHASES[:k]:
                measured[name] = p = B.run_wrk(base, "/api/v1/reports", token, coords, **kw, name=name,
                                               app_pid=pid, engine=engine, extra=extras[name])
                console.print(f"round {rnd} {name:8} {p.rps:,.0f} req/s  p99 {p.p99:.1f} ms  errors {p.errors}  "
                              f"CPU/req app {p.cpu['app_ms']:.2f} ms, PostgreSQL {p.cpu['db_ms']:.2f} ms")
            rows.append((rnd, measured))
        # The cost of one report with nothing else in flight: one connection, the phases interleaved request by
        # request. Time per report is then the API's and PostgreSQL's work for it plus the commit, no queueing.
        solo = _one_connection(base, token, coords, observed_at, extras, solo_requests)
        console.print("one connection: " + ", ".join(
            f"{n} median {statistics.median(solo[n]) * 1e3:.3f} ms" for n in PHASES))
    if any(not p.valid for _, r in rows for p in r.values()):
        console.print(f"[bold red]some responses were not 2xx: not a valid result[/] (see {log})")
        raise typer.Exit(1)
    B.settle(engine)  # the same start for every phase
    queued = _write_queued(engine)
    section = _section(command, B.machine_info(engine), {"started": started.astimezone(), "assets": assets,
                                                         "connections": connections, "duration": duration,
                                                         "workers": workers},
                       rows, queued, solo)
    console.print(section, markup=False, highlight=False)
    if record:
        _record(section)
        console.print(f"written to {B.RESULTS.relative_to(B.ROOT)}")
    engine.dispose()
    if not keep:
        B._pg("dropdb", database)


if __name__ == "__main__":
    cli()
