"""What-if: the intake with its NOTIFYs taken out of the report's transaction, to size "what would move it".

    .venv/bin/python -m bench.whatif_notify run

A fresh database with 1M lamp columns; the API as committed, then the same API with `kerbside_intake` replaced
*in this bench database only* by a copy whose pg_notify calls do nothing (a what-if, not a proposal: listeners
would hear nothing), alternating, same load as the intake benchmark. The ratio says how much of the intake's
cost is the NOTIFY queue's commit lock. Prints a table and stores it in bench/results.json (`whatif_notify`).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from typing import Annotated

import psycopg
import typer

from bench import intake as ib

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="What-if: the intake without NOTIFY in its transaction")

NOOP = """CREATE OR REPLACE FUNCTION kerbside_bench_no_notify(channel text, payload text) RETURNS void
          LANGUAGE sql IMMUTABLE AS $$ SELECT $$"""


@cli.callback()
def _main() -> None:
    """What-if benchmarks."""


def _swap(conn: psycopg.Connection, original: str, notify: bool) -> None:
    body = original if notify else original.replace("pg_notify(", "kerbside_bench_no_notify(")
    conn.execute(body)
    conn.commit()


@cli.command()
def run(
    assets: Annotated[int, typer.Option()] = 1_000_000,
    duration: Annotated[int, typer.Option()] = 20,
    warmup: Annotated[int, typer.Option()] = 5,
    rounds: Annotated[int, typer.Option()] = 2,
    database: Annotated[str, typer.Option()] = "kerbside_bench_whatif",
) -> None:
    """Intake as committed vs intake with no-op NOTIFYs, alternating rounds."""
    from bench.load import grow_assets
    from bench.report import RAW_JSON

    started = datetime.now(timezone.utc)
    ib.QUIET_WAIT = 30
    url = ib._pg("url", database)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    env = ib._cli_env(url)
    os.environ["KERBSIDE_DATABASE_URL"] = url
    ib._pg("createdb", database)
    rows = []
    try:
        subprocess.run([sys.executable, "-m", "server.cli", "setup"], cwd=ib.ROOT, env=env, check=True,
                       capture_output=True, text=True)
        with psycopg.connect(dsn) as conn:
            grow_assets(conn, assets, 27700)
            conn.execute(NOOP)
            original = conn.execute("SELECT pg_get_functiondef('kerbside_intake(jsonb)'::regprocedure)").fetchone()[0]
            conn.commit()
        engine = ib._engine(url)
        coords = ib.WORK / "whatif_points.txt"
        ib.sample_points(engine, 20_000, 1, coords)
        token = ib.bench_token(env)
        log = ib.WORK / f"whatif-{datetime.now():%Y%m%d-%H%M%S}.log"
        kw = dict(connections=16, threads=2, observed_at=started.replace(microsecond=0).isoformat(), log=log)
        for rnd in range(1, rounds + 1):
            for notify in ((True, False) if rnd % 2 else (False, True)):
                with psycopg.connect(dsn) as conn:
                    _swap(conn, original, notify)
                name = "as committed" if notify else "no NOTIFY (what-if)"
                ib.wait_quiet()
                with ib.server(ib.INTAKE_APP, 2, env, log) as (base, pid):
                    ib.run_wrk(base, "/api/v1/reports", token, coords, duration=warmup, name="warm-up", app_pid=pid,
                               **kw)
                    p = ib.run_wrk(base, "/api/v1/reports", token, coords, duration=duration, name=name,
                                   app_pid=pid, engine=engine, **kw)
                if not p.valid:
                    raise typer.Exit(f"{name}: not 2xx {p.statuses}")
                ib.console.print(f"round {rnd} {name}: {p.rps:.0f} req/s p50 {p.p50:.0f} p99 {p.p99:.0f} ms; "
                                 f"backend active {p.raw['db']['active_ms']:.1f} ms/req")
                rows.append({"round": rnd, "notify": notify, "rps": p.rps, "p50": p.p50, "p99": p.p99,
                             "active_ms": p.raw["db"]["active_ms"], "app_ms": p.cpu["app_ms"],
                             "db_ms": p.cpu["db_backends_ms"]})
        with psycopg.connect(dsn) as conn:
            _swap(conn, original, True)
        engine.dispose()
    finally:
        ib._pg("dropdb", database)

    def pooled(flag: bool) -> float:
        return sum(x["rps"] for x in rows if x["notify"] == flag) / sum(1 for x in rows if x["notify"] == flag)

    out = {"command": ".venv/bin/python -m bench.whatif_notify " + shlex.join(sys.argv[1:]),
           "started": started.isoformat(), "code": ib.code_state(), "rows": rows,
           "rps_with": pooled(True), "rps_without": pooled(False),
           "p99_with": max(x["p99"] for x in rows if x["notify"]),
           "p99_without": max(x["p99"] for x in rows if not x["notify"])}
    ib.console.print(json.dumps(out, indent=1))
    r = json.loads(RAW_JSON.read_text())
    r["whatif_notify"] = out
    RAW_JSON.write_text(json.dumps(r, indent=1, default=str) + "\n")


if __name__ == "__main__":
    cli()
