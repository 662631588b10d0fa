"""What the intake's PostgreSQL backends wait on under load: pg_stat_activity sampled every 50 ms while wrk
drives the API (16 connections), on a database kept by `bench.suite run --keep`.

    .venv/bin/python -m bench.waits run --database kerbside_bench_suite --points .data/bench/suite/points_1000000.txt
"""
from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from bench import intake as ib

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sample the intake's database wait events under load")


@cli.callback()
def _main() -> None:
    """Wait events under load."""


@cli.command()
def run(
    points: Annotated[Path, typer.Option(help="report points file (lat lon lines) written by bench.suite")],
    database: Annotated[str, typer.Option(help="a kept bench database")] = "kerbside_bench_suite",
    duration: Annotated[int, typer.Option(help="seconds sampled")] = 12,
    connections: Annotated[int, typer.Option()] = 16,
    record: Annotated[bool, typer.Option("--record", help="store the shares in bench/results.json and re-render "
                                                          "bench/RESULTS.md")] = False,
) -> None:
    """Drive the intake with wrk and print the share of active-backend samples per wait event and statement."""
    url = ib._pg("url", database)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    os.environ["KERBSIDE_DATABASE_URL"] = url
    env = ib._cli_env(url)
    token = ib.bench_token(env)
    log = ib.WORK / "waits.log"
    counts: collections.Counter = collections.Counter()
    stop = threading.Event()
    observed = "2026-12-06T22:00:00+00:00"

    def sample() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            while not stop.is_set():
                for (key,) in c.execute(
                        "SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') || '  ' || "
                        "left(query, 30) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state = 'active' AND pid <> pg_backend_pid()"):
                    counts[key] += 1
                time.sleep(0.05)

    with ib.server(ib.INTAKE_APP, 2, env, log) as (base, pid):
        kw = dict(connections=connections, threads=2, observed_at=observed, log=log, app_pid=pid)
        ib.run_wrk(base, "/api/v1/reports", token, points, duration=3, name="warm-up", **kw)
        t = threading.Thread(target=sample)
        t.start()
        p = ib.run_wrk(base, "/api/v1/reports", token, points, duration=duration, name="sampled", **kw)
        stop.set()
        t.join()
    if not p.valid:
        raise typer.Exit(f"not 2xx: {p.statuses}")
    total = sum(counts.values())
    print(f"intake {p.rps:.0f} req/s, p99 {p.p99:.0f} ms; {total} active-backend samples")
    for key, n in counts.most_common(12):
        print(f"{100 * n / total:5.1f}%  {key}")
    if record:
        import json
        import shlex
        import sys

        from bench.report import RAW_JSON, write_all

        r = json.loads(RAW_JSON.read_text())
        r["intake_waits"] = {"command": ".venv/bin/python -m bench.waits " + shlex.join(sys.argv[1:]),
                             "rps": p.rps, "p99": p.p99, "samples": total,
                             "shares": {k: n / total for k, n in counts.most_common(12)}}
        write_all(r)


if __name__ == "__main__":
    cli()
