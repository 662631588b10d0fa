"""Where an intake request's time goes: SQL statements per request (SQLAlchemy event hooks) and EXPLAIN ANALYZE.

    .venv/bin/python -m bench.profile_intake run --requests 200

Runs against the bench database that `bench.intake run` built (1M lamp columns). Requests go through the
real app in-process (FastAPI TestClient), one at a time, so the figures are per-request costs, not load.
"""
from __future__ import annotations

import cProfile
import os
import pstats
import random
import re
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
POINTS = ROOT / ".data" / "bench" / "points.txt"

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Profile the intake use case against the bench database")
console = Console()


@cli.callback()
def _main() -> None:
    """Profile the intake use case."""


def _norm(sql: str) -> str:
    s = re.sub(r"\s+", " ", sql).strip()
    s = re.sub(r"\(([^()]*,){4,}[^()]*\)", "(…)", s)  # long column / value lists
    return s[:110]


def _explain(conn, sql: str, params: dict) -> tuple[float, float, bool, bool]:
    from sqlalchemy import text

    conn.execute(text(sql), params).all()  # warm caches, proj, plan
    plan = [r[0] for r in conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql), params)]
    body = "\n".join(plan)
    exe = float(re.search(r"Execution Time: ([\d.]+)", body).group(1))
    pln = float(re.search(r"Planning Time: ([\d.]+)", body).group(1))
    return pln, exe, "ix_assets_layer_geom" in body, "JIT:" in body


@cli.command()
def run(
    requests: Annotated[int, typer.Option(help="requests to send (sequentially, in-process)")] = 200,
    database: Annotated[str, typer.Option(help="bench database (as kept by `bench.intake run --keep`)")]
    = "kerbside_bench_intake",
    points: Annotated[Path, typer.Option(help="report points, 'lat lon' per line (bench.intake writes them)")]
    = POINTS,
    cprofile: Annotated[int, typer.Option(help="print the top N functions by own time (0: off)")] = 20,
) -> None:
    """Statements per intake request with their time, Python time around them, and EXPLAIN of the KNN queries."""
    import subprocess

    url = subprocess.run([str(ROOT / "scripts" / "pg.sh"), "url", database], capture_output=True, text=True,
                         check=True).stdout.strip()
    os.environ["KERBSIDE_DATABASE_URL"] = url
    from fastapi.testclient import TestClient
    from sqlalchemy import event, text

    from bench.baseline_app import _SNAP
    from server.assets import nearest
    from server.auth.tokens import create_token
    from server.db import get_engine, new_session
    from server.main import create_app

    pts = [tuple(map(float, line.split())) for line in points.read_text().splitlines()]
    rng = random.Random(7)
    engine = get_engine()

    # --- EXPLAIN ANALYZE of the KNN queries at one point
    lat, lon = pts[0]
    with engine.connect() as conn:
        layer = conn.execute(text("SELECT id FROM asset_layers WHERE name = 'street_lights'")).scalar_one()
        t = Table(title="EXPLAIN ANALYZE at one report point (warm)")
        for col in ("query", "planning ms", "execution ms", "GiST KNN on assets", "JIT"):
            t.add_column(col)
        with new_session() as s:  # kerbside_locate's query, with the generic plan it runs with
            nearest.explain_locate(s, lon, lat, "street_lights", analyze=True)  # warm: PROJ, caches
            body = "\n".join(nearest.explain_locate(s, lon, lat, "street_lights", analyze=True))
            s.rollback()
        exe = float(re.search(r"Execution Time: ([\d.]+)", body).group(1))
        t.add_row("kerbside_locate (generic plan, made once per connection)", "-", f"{exe:.2f}",
                  "yes" if body.count("ix_assets_layer_geom") >= 2 else "[red]no: sorts the whole layer[/]",
                  "[red]yes[/]" if "JIT:" in body else "no")
        pln, exe, gist, jit = _explain(conn, _SNAP.text, {"lon": lon, "lat": lat, "srid": 27700, "layer": layer})
        t.add_row("baseline snap (bench/baseline_app.py)", f"{pln:.2f}", f"{exe:.2f}", "yes" if gist else "no",
                  "yes" if jit else "no")
        console.print(t)

    # --- statements per request through the real app
    with new_session() as s:
        _, token = create_token(s, "field_worker", name="bench-profile")
        s.commit()
    stats: dict[str, list[float]] = defaultdict(list)
    state = {"on": False}

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        if state["on"]:
            stats[_norm(statement)].append(time.perf_counter() - conn.info.pop("t0"))

    app = create_app()
    observed = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    headers = {"Authorization": f"Bearer {token}"}

    def body() -> dict:
        lat, lon = rng.choice(pts)
        return {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": lat, "lon": lon,
                "accuracy_m": 5, "observed_at": observed, "answers": {"fault": "out"}}

    codes: dict[int, int] = defaultdict(int)
    with TestClient(app) as client:
        for _ in range(5):  # warm-up: connection pool, catalogue, proj
            client.post("/api/v1/reports", json=body(), headers=headers)
        state["on"] = True
        t0 = time.perf_counter()
        for _ in range(requests):
            codes[client.post("/api/v1/reports", json=body(), headers=headers).status_code] += 1
        wall = time.perf_counter() - t0
        state["on"] = False

    db_total = sum(sum(v) for v in stats.values())
    n_stmt = sum(len(v) for v in stats.values())
    t = Table(title=f"SQL per intake request ({requests} requests; "
                    f"status {dict(codes)})")
    for col in ("statement", "per request", "mean ms", "total ms / request", "share of SQL time"):
        t.add_column(col, justify="left" if col == "statement" else "right")
    for sql, times in sorted(stats.items(), key=lambda kv: -sum(kv[1])):
        t.add_row(sql, f"{len(times) / requests:.2f}", f"{1000 * sum(times) / len(times):.2f}",
                  f"{1000 * sum(times) / requests:.2f}", f"{100 * sum(times) / db_total:.0f}%")
    console.print(t)
    console.print(f"per request: {1000 * wall / requests:.1f} ms wall, {n_stmt / requests:.1f} statements "
                  f"({1000 * db_total / requests:.1f} ms waiting on SQL), "
                  f"{1000 * (wall - db_total) / requests:.1f} ms in Python (app + TestClient)")
    if cprofile:
        # The app runs in TestClient's threads, out of cProfile's sight: profile the use case itself here.
        from server.deps import Principal
        from server.reports.schemas import ReportIn
        from server.reports.service import submit_report

        with new_session() as s:
            row = s.execute(text("SELECT id, name, role FROM api_tokens WHERE name = 'bench-profile' "
                                 "ORDER BY id DESC LIMIT 1")).one()
        who = Principal(row.id, row.name, row.role)
        # Unprofiled first: wall and CPU per report.
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(requests):
            with new_session() as s:
                submit_report(s, who, ReportIn(**body()), "field_app")
        wall_ms, cpu_ms = (1000 * (time.perf_counter() - t0) / requests, 1000 * (time.process_time() - c0) / requests)
        console.print(f"submit_report() called directly (no HTTP, no auth): {wall_ms:.1f} ms wall, "
                      f"{cpu_ms:.1f} ms Python CPU per report")
        # Then with a CPU-time profiler (waits on PostgreSQL do not count).
        prof = cProfile.Profile(time.process_time)
        for _ in range(requests):
            with new_session() as s:
                prof.enable()
                submit_report(s, who, ReportIn(**body()), "field_app")
                prof.disable()
        st = pstats.Stats(prof)
        total = sum(v[2] for v in st.stats.values())
        by_pkg: dict[str, float] = defaultdict(float)
        steps: dict[str, float] = {}
        for (fn, _line, name), (_cc, _nc, tt, ct, _callers) in st.stats.items():
            if "site-packages/" in fn:
                by_pkg[fn.split("site-packages/")[1].split("/")[0]] += tt
            elif str(ROOT) in fn:
                by_pkg[fn.split(str(ROOT) + "/")[1].rsplit("/", 1)[0]] += tt
                key = f"{fn.split(str(ROOT) + '/')[1]}:{name}"
                steps[key] = max(steps.get(key, 0.0), ct)
            else:
                by_pkg["stdlib / builtins"] += tt
        t = Table(title=f"Python CPU of submit_report() by package (profiled, {1000 * total / requests:.1f} ms/report "
                        "with profiler overhead)")
        for col in ("package", "ms / report", "share"):
            t.add_column(col, justify="left" if col == "package" else "right")
        for k, v in sorted(by_pkg.items(), key=lambda kv: -kv[1])[:10]:
            t.add_row(k, f"{1000 * v / requests:.2f}", f"{100 * v / total:.0f}%")
        console.print(t)
        t = Table(title="Python CPU by intake step (cumulative, includes SQLAlchemy/psycopg work it triggers)")
        for col in ("function", "ms / report", "share"):
            t.add_column(col, justify="left" if col == "function" else "right")
        for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:cprofile]:
            t.add_row(k, f"{1000 * v / requests:.2f}", f"{100 * v / total:.0f}%")
        console.print(t)


if __name__ == "__main__":
    cli()
