"""Render bench/RESULTS.md (and growth.json / growth.png) from a suite run's figures (bench/results.json).

    .venv/bin/python -m bench.report            (re-render from the last bench/results.json)

The notes on goals not met are written here, as text that is shown only when the goal is not met; the figures
in them come from the run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "RESULTS.md"
RAW_JSON = BENCH / "results.json"
GROWTH_JSON = BENCH / "growth.json"
GROWTH_PNG = BENCH / "growth.png"
CREW_PLANS = "## Crew day plans (issue 15)"


def _v(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _minutes(r: dict) -> str:
    """How long the run took, in whole minutes ("?" for a record without its finish)."""
    if "finished" not in r:
        return "?"
    return f"{(datetime.fromisoformat(r['finished']) - datetime.fromisoformat(r['started'])).total_seconds() / 60:.0f}"


def _n(x: float, d: int = 0) -> str:
    return f"{x:,.{d}f}"


def _crew_section() -> str:
    """The issue-15 section as it stands in the current file (another branch writes it), or a placeholder."""
    if RESULTS.exists():
        text = RESULTS.read_text()
        if CREW_PLANS in text:
            return text[text.index(CREW_PLANS):].rstrip() + "\n"
    return CREW_PLANS + "\n\n(Placeholder: issue 15's figures are added on its own branch.)\n"


def render(r: dict) -> str:
    """RESULTS.md text for one suite run."""
    if not NOTES:
        NOTES.update(notes(r))
    m = r["machine"]
    sizes = sorted(int(k) for k in r["snap"])
    main = 1_000_000 if 1_000_000 in sizes else sizes[-1]
    it = r["intake"]["summary"]
    rps = it["rps"]
    vs_bare, vs_orm, worst = it["vs_bare"], it["vs_orm"], it["worst_p99"]
    snap1 = r["snap"][str(main)] if str(main) in r["snap"] else r["snap"][main]
    big = max(sizes)
    snapb = r["snap"][str(big)] if str(big) in r["snap"] else r["snap"][big]
    job = r["reads"]["job"]
    ogc = r["reads"]["ogc"]

    def pooled(name: str) -> float:
        return sum(x[name]["rps"] for x in ogc) / len(ogc)

    ogc_ours, ogc_theirs = pooled("kerbside"), pooled("pygeoapi")
    ogc_p95 = max(x["kerbside"]["p95"] for x in ogc)
    ogc_p95_theirs = max(x["pygeoapi"]["p95"] for x in ogc)
    sla = r["sla"]
    sync = r["sync"]
    g1 = (vs_bare >= 0.5, worst <= 50)
    # Within the spread between runs of 0.5 (make bench runs at the same load gave 0.47, 0.53 and 0.53 on 7 Dec,
    # 0.48 on 8 Dec): said in the verdict, and the notes on where the time goes are shown as for a goal not met.
    g1_near = abs(vs_bare - 0.5) < 0.05
    g2 = (snap1["locate"]["p99"] <= 2, snapb["locate"]["p50"] <= 2 * snap1["locate"]["p50"])
    g3 = (job["p99"] <= 10, ogc_p95 <= 150, ogc_ours >= 2 * ogc_theirs)
    # O(open jobs) would walk the partial indexes' ~1M entries (thousands of pages); O(changing) touches a few
    # pages per recently flagged job at most: the line is drawn at one buffer per 1,000 open jobs, or, where the
    # versions the committed sweep left are still passed over, at one buffer per job that changed, shrinking when
    # a fifth as many change.
    g4 = (sla["ratio"] <= 1.5, sla["empty_buffers"] <= sla["open_jobs"] / 1000
          or ("fewer_empty_buffers" in sla and sla["empty_buffers"] <= sla["crossing"]
              and sla["fewer_empty_buffers"] <= 0.5 * sla["empty_buffers"]))
    g5 = (sync["seconds"] <= 10 and sync["exactly_once"],)
    finished = datetime.fromisoformat(r.get("finished", r["started"]))
    L = [
        "# Benchmark results",
        "",
        f"Rewritten by `make bench` on {finished:%Y-%m-%d %H:%M} UTC; earlier figures are in git history. "
        "Absolute figures move between runs and machines (the same code has run 1.2–3× slower on other days' "
        "2-core machines, in git history), so every comparison was measured side by side in one run, in "
        "alternating or rotating rounds, and is given as a ratio.",
        "",
        f"- Command: `{r['command']}` (`make bench`; this run took {_minutes(r)} min, most of it loading 10M lamp "
        "columns)",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; PostgreSQL "
        f"{m['postgresql']}, PostGIS {m['postgis']}; "
        + ", ".join(f"{k}={v}" for k, v in m["pg_settings"].items()),
        f"- Stack: Python {m['python']}, {m['stack']}; {m['wrk']}; pygeoapi from `requirements-bench.txt` "
        "(`.venv-bench`)",
        f"- Code: {r['code']}" + (f" ({r['code_note']})" if r.get("code_note") else ""),
        f"- Data: one fresh database, `server.cli setup` (real B&NES layers), {_n(r['jobs'] if 'jobs' in r else 1e6)} "
        "open jobs, synthetic lamp columns grown through " + ", ".join(_n(s) for s in sizes) + " (SQL, "
        "`bench/load.py`); database size " + ", ".join(f"{v} at {_n(int(k))}" for k, v in r["disk"].items()),
        "- Every phase: 0 errors and only 2xx answers (the harness refuses the run otherwise); 2 uvicorn workers "
        "per server.",
        "",
        "## Verdicts",
        "",
        "| # | goal | measured | verdict |",
        "|---|---|---|---|",
        f"| 1 | intake ≥ 0.5× the bare psycopg baseline, p99 ≤ 50 ms at 16 connections ({_n(main)} lamp columns, "
        f"≥ 1M jobs) | {_n(rps['intake'])} req/s vs bare {_n(rps['bare'])} and ORM {_n(rps['orm'])}: **{vs_bare:.2f}× "
        f"bare**, {vs_orm:.2f}× ORM; worst intake p99 {worst:.0f} ms" + (
            f"; its statements behind the bare app (floor) {it['floor_vs_bare']:.2f}× bare, as one statement "
            f"{it.get('floor1_vs_bare', 0):.2f}×" + (f", batched {it['floor1b_vs_bare']:.2f}×"
                                                    if it.get("floor1b_vs_bare") else "")
            if it.get("floor_vs_bare") else
            f"; its database work behind the bare app (floor) {it['floor1b_vs_bare']:.2f}× bare"
            if it.get("floor1b_vs_bare") else "")
        + f" | ratio {_v(g1[0])}{', on the line' if g1_near else ''}, p99 {_v(g1[1])} |",
        f"| 2 | snap alone: p99 ≤ 2 ms at 1M; median at 10M ≤ 2× median at 1M | `kerbside_locate` p99 "
        f"{snap1['locate']['p99']:.2f} ms at {_n(main)}; median {snap1['locate']['p50']:.2f} → "
        f"{snapb['locate']['p50']:.2f} ms at {_n(big)} ({snapb['locate']['p50'] / snap1['locate']['p50']:.2f}×) | "
        f"{_v(g2[0])}, {_v(g2[1])} |",
        f"| 3a | job by reference p99 ≤ 10 ms, 16 connections | p99 {job['p99']:.1f} ms ({_n(job['rps'])} req/s) | "
        f"{_v(g3[0])} |",
        f"| 3b | OGC items, bbox of 1,000 of 1M jobs: p95 ≤ 150 ms, ≥ 2× pygeoapi | p95 {ogc_p95:.0f} ms at "
        f"{r.get('ogc_connections', 4)} connections; {ogc_ours:.1f} vs pygeoapi {ogc_theirs:.1f} req/s "
        f"(**{ogc_ours / ogc_theirs:.2f}×**; pygeoapi p95 {ogc_p95_theirs:.0f} ms) | p95 {_v(g3[1])}, "
        f"vs pygeoapi {_v(g3[2])} |",
        f"| 4 | SLA sweep: 10,000 crossing among {_n(sla['open_jobs'])} open jobs ≤ 1.5× set-based SQL; an empty "
        f"sweep costs O(changing) | sweep {sla['sweep_median_s'] * 1000:.0f} ms vs set-based "
        f"{sla['set_median_s'] * 1000:.0f} ms (**{sla['ratio']:.2f}×**); empty sweep {sla['empty_ms']:.1f} ms, "
        f"{sla['empty_buffers']} buffers touched"
        + (f", {sla['fewer_empty_buffers']} with {_n(sla['fewer_crossing'])} changing (line: ≤ 1 per 1,000 open jobs, "
           "or ≤ 1 per changed job and shrinking with them)" if "fewer_empty_buffers" in sla else
           " (line: ≤ 1 per 1,000 open jobs)") + f" | {_v(g4[0])}, {_v(g4[1])} |",
        f"| 5 | field sync: 200 reports with 1–2 MB photos ≤ 10 s, exactly-once | {sync['seconds']:.1f} s "
        f"({sync['mb_total']:.0f} MB), exactly-once: {'yes' if sync['exactly_once'] else 'NO'} | {_v(g5[0])} |",
        "| 6 | growth curve 100k / 1M / 10M | table and `bench/growth.png` below | done |",
        "",
    ]
    # ---- intake
    old_floors = "floor" in r["intake"]["rounds"][0]  # runs before the intake batched (migration 0022)
    L += ["## 1. Intake against two baselines, and its floor", "",
          "Servers, each `uvicorn --workers 2`, "
          + ("each phase started from the same state (the written tables vacuumed and analysed, then a checkpoint: "
             "under PostgreSQL's default max_wal_size the intake's WAL starts a checkpoint every one to two minutes, "
             "which would otherwise fall inside some servers' phases and not others'), "
             if r["intake"]["summary"].get("settled") else "")
          + "warmed up then driven by `wrk -t2 -c16` with "
          "`bench/post_reports.lua` (street-light reports within ~5 m of random lamp columns, unique client_id"
          + (f"; {_fresh_points(r)}" if "points" in r["intake"]["rounds"][0]["intake"] else
             "; the points drawn at random from 20,000 for the whole run, so most of the intake's reports attached "
             "to a job an earlier report had opened") + "): "
          "the API; the **ORM baseline** (`bench/baseline_app.py`: KNN snap + INSERT through the API's SQLAlchemy "
          "session); the **bare baseline** (`bench/bare_app.py`: the same two statements from a psycopg 3 async "
          "pool, server-side prepared, in autocommit, orjson, no ORM); and a what-if, the **floor** "
          + ("(`bench/floor_app.py`: the intake's own three statements, same texts, same rows written, behind the "
             "bare baseline's app, with everything the intake does in Python cut to the least that gives the "
             "database the same work); and the **one-statement floor** (`floor1`: the same work as one statement, "
             "a PL/pgSQL wrapper made in the bench database only that locates, fills in the nearest asset and calls "
             "`kerbside_intake` with its NOTIFYs inside)" + ("; and the **batched one-statement floor** (`floor1b`: "
                                                             "the same, with group commit)" if "floor1b" in
                                                             r["intake"]["rounds"][0] else "")
             + ". The floor is the most any app-side change could give the intake with its statements as they "
             "are. The order rotates each round." if old_floors else
             ("(`floor1b`, bench/floor_app.py `create_app_batched`: the intake's database work, the same "
                "statements, behind the bare baseline's app: the API's own batch statement, `kerbside_intake_batch`, "
                "for the reports waiting together (with the API's wait under load), then their NOTIFYs, as the API "
                "sends them; everything the intake "
                "does in Python is cut to the least that gives the database the same work)"
                if r["intake"]["summary"].get("floor_statement") == "kerbside_intake_batch" else
                "(`floor1b`, bench/floor_app.py `create_app_batched`: the intake's database work for a report, "
                "batched as the intake batches, behind the bare baseline's app: a PL/pgSQL wrapper made in the bench "
                "database only locates, fills in the nearest asset and calls `kerbside_intake`, for the reports "
                "waiting together in one statement and one commit; everything the intake does in Python is cut to "
                "the least that gives the database the same work)")
             + ". The floor is the most any app-side change could give "
             "the intake. The order rotates each round. The API takes a report like these by group commit "
             "(server/reports/batch.py, migration 0022): the reports waiting in one API process when a connection "
             "of its pool comes free go as one statement (under load, a sender finding fewer waiting than last "
             "time waits once, 1 ms, for those on their way), `kerbside_intake_batch`, which locates, "
             "judges the caller and snaps each, writes the new faults together (one INSERT each for their jobs, "
             "reports, timelines and dispatch messages: migration 0024) and the rest each in a subtransaction of "
             "its own, with one commit for all; "
             "anything unusual (a retry, triage, a report naming its asset…) it declines to the two-statement "
             "path before writing."), "",
          "| round | server | req/s | p50 ms | p95 ms | p99 ms | requests | CPU ms/req: app | its PostgreSQL backends "
          "| backend active ms/req | machine busy |",
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rd in r["intake"]["rounds"]:
        for name in [n for n in ("intake", "orm", "bare", "floor", "floor1", "floor1b") if n in rd]:
            p = rd[name]
            L.append(f"| {rd['round']} | {name} | {_n(p['rps'])} | {p['p50']:.1f} | {p['p95']:.1f} | {p['p99']:.1f} | "
                     f"{_n(p['requests'])} | {p['app_ms']:.2f} | {p['db_ms']:.2f} | {p.get('db_active_ms', 0):.2f} | "
                     f"{p.get('util', 0):.0f}% |")
    L += ["", f"Pooled: intake {_n(rps['intake'])}, ORM {_n(rps['orm'])}, bare {_n(rps['bare'])} req/s; intake/bare "
          f"**{vs_bare:.2f}**, intake/ORM {vs_orm:.2f}" + (f"; floor {_n(rps['floor'])}, floor/bare "
          f"**{it['floor_vs_bare']:.2f}**" if it.get("floor_vs_bare") else "") + (
          f"; one-statement floor {_n(rps['floor1'])}, floor1/bare **{it['floor1_vs_bare']:.2f}**"
          if it.get("floor1_vs_bare") else "") + (
          f"; batched {_n(rps['floor1b'])}, floor1b/bare **{it['floor1b_vs_bare']:.2f}**"
          if it.get("floor1b_vs_bare") else "") + ".", ""]
    if g1_near:
        per_round = ", ".join(f"{rd['intake']['rps'] / rd['bare']['rps']:.2f}" for rd in r["intake"]["rounds"])
        L += [f"**On the line.** The ratio is {'over' if g1[0] else 'under'} 0.5 by less than it moves between "
              f"runs: by round it was {per_round}. The `make bench` runs at this load (new faults only, since "
              "migration 0024) gave 0.47×, 0.53× and 0.53× on 7 December, and 0.48× (two rounds: 0.43 and 0.54) "
              "on 8 December with migration 0025 (git history); the bare baseline moves between "
              "runs as much as the intake. Another run on this kind of machine may well land on the other side of "
              "the line" + (", so what follows is shown as for a goal not met." if g1[0] else "."), ""]
    L += NOTES.get("intake", []) if not all(g1) or g1_near else []
    # ---- snap
    L += ["", "## 2. Snap query alone", "",
          "`bench/snap.py`: one connection, server-side prepared, 3,000 calls each (after 300 warm-up), "
          "sequential, timed at the client over loopback; `kerbside_locate` (what the intake calls: boundary, "
          "ward, street and 5 nearest lamp columns) and the bare KNN (nearest one), alternating call by call.", "",
          "| lamp columns | locate p50 | p95 | p99 | bare KNN p50 | p99 |", "|---:|---:|---:|---:|---:|---:|"]
    for s in sizes:
        x = r["snap"][str(s)] if str(s) in r["snap"] else r["snap"][s]
        L.append(f"| {_n(s)} | {x['locate']['p50']:.2f} | {x['locate']['p95']:.2f} | {x['locate']['p99']:.2f} | "
                 f"{x['knn']['p50']:.2f} | {x['knn']['p99']:.2f} |")
    L += NOTES.get("snap", []) if not all(g2) else []
    # ---- reads
    L += ["", "## 3. Reads", "",
          f"Job by reference: `GET /api/v1/jobs/{{ref}}` (advisor token) at 20,000 random references of the "
          f"{_n(sla['open_jobs'])} jobs, 16 connections: {_n(job['rps'])} req/s, p50 {job['p50']:.1f} ms, p95 "
          f"{job['p95']:.1f} ms, p99 **{job['p99']:.1f} ms**. The page is answered ahead of its FastAPI route, "
          "without dependency solving or a request session (server/poolroute.py; in an A/B on 1M jobs: 2,844 → "
          "3,690 req/s, app CPU 0.49 → 0.36 ms per request, p99 10.7 → 7.9 ms). It is one prepared statement on "
          "the API's async psycopg pool, which holds one connection per CPU core in each API process "
          "(`KERBSIDE_DB_ASYNC_POOL_SIZE`): "
          "with 20, as it had before, 16 busy backends shared the 2 cores with the API workers and wrk. In an A/B of "
          "1, 2, 3, 4 and 20 connections per worker (3 rounds of 10 s each, on the notifications bench's database, "
          "20,000 jobs) this page's p99 ran 7.3–9.6, 7.7–10.2, 8.9–10.9, 9.4–12.3 and 10.1–20 ms.", "",
          f"OGC items: 20 bboxes, each the extent of the 1,000 open jobs nearest a random one (they hold "
          f"{min(r['reads']['bbox_held'])}–{max(r['reads']['bbox_held'])} jobs), `limit=1000&f=json`, "
          f"{r.get('ogc_connections', 4)} connections: Kerbside `/ogc/collections/jobs/items` (advisor token) and "
          "pygeoapi 0.21 (`pygeoapi.starlette_app` under uvicorn, PostgreSQL provider on the same `jobs` table, "
          "storage CRS EPSG:27700, 8 properties), alternating rounds.", "",
          "| round | server | req/s | p50 ms | p95 ms | p99 ms |", "|---:|---|---:|---:|---:|---:|"]
    for x in ogc:
        for name in ("kerbside", "pygeoapi"):
            p = x[name]
            L.append(f"| {x['round']} | {name} | {p['rps']:.1f} | {p['p50']:.0f} | {p['p95']:.0f} | {p['p99']:.0f} |")
    L += NOTES.get("reads", []) if not all(g3) else []
    # ---- SLA
    L += ["", "## 4. SLA sweep", "",
          f"`bench/sla.py`: 10,000 of the {_n(sla['open_jobs'])} open jobs moved to cross (5,000 at-risk, 5,000 "
          "breach), then alternating rounds, each rolled back: the worker's `sweep_sla` and set-based SQL doing the "
          "same work (per kind one `UPDATE … RETURNING` feeding an `INSERT INTO job_events` and one `pg_notify` per "
          "flag). Both run with `jit = off`, as every connection of the API and the worker does: planned for "
          "thousands of rows, the sweep's statements pass `jit_above_cost`, and compiling them made an empty sweep "
          "take 9 ms instead of under 2. Then one sweep committed and five empty sweeps timed."
          + (" Before it all, the tables the intake writes are vacuumed and analysed and autovacuum is let finish: "
             "the crossing jobs' old versions are passed over cheaply only once no snapshot can see them, and an "
             "autovacuum ANALYZE of a table the earlier phases filled holds one while it samples." if
             "older_snapshots" in sla else ""), "",
          f"- sweep: {', '.join(f'{t * 1000:.0f}' for t in sla['sweep_s'])} ms; set-based: "
          f"{', '.join(f'{t * 1000:.0f}' for t in sla['set_s'])} ms; median ratio **{sla['ratio']:.2f}×**",
          f"- empty sweep (nothing crossing): {sla['empty_ms']:.1f} ms; its two index scans touch "
          f"{sla['empty_buffers']} buffers in all (partial indexes `ix_jobs_risk_pending`, `ix_jobs_breach_pending`):"
          " the cost follows the jobs changing, not the open ones"
          + ("." if "older_snapshots" not in sla else
             f"; {sla['older_snapshots']} other session(s) held an older snapshot meanwhile. Right after the "
             "committed sweep, the scans may still pass over the versions it left behind, a visit each, until a "
             "scan has marked them dead or a vacuum has removed them (here the worker's own empty sweeps did not "
             "always mark them: the EXPLAIN did), so the same was measured with "
             f"{_n(sla['fewer_crossing'])} jobs changing: {sla['fewer_empty_buffers']} buffers.")]
    if "run" in sla:
        L += [f"- These SLA figures are from a later run of the SLA goal alone, `{sla['run']['command']}` at "
              f"{sla['run']['started'][:16].replace('T', ' ')} UTC (code: {sla['run']['code']}), on a fresh database "
              f"with the same jobs."]
    if "sla_previous" in r:
        b = r["sla_previous"]
        L += [f"- The SLA-only run before this one ({b['run']['started'][11:16]} UTC, code sha256 "
              f"{b['run']['code'].rsplit(' ', 1)[-1]}) measured {b['sweep_median_s'] * 1000:.0f} vs "
              f"{b['set_median_s'] * 1000:.0f} ms (**{b['ratio']:.2f}×**)."]
    if "sla_before" in r:
        b = r["sla_before"]
        L += [f"- The full run measured this branch's first version of the sweep (batches of {b['batch']}, three "
              f"statements per batch, events inserted with one parameter set per row): {b['sweep_median_s'] * 1000:.0f} vs "
              f"{b['set_median_s'] * 1000:.0f} ms (**{b['ratio']:.2f}×**). Before this branch the sweep added and "
              "flushed one ORM event and sent one NOTIFY per job: 22.7× the set-based SQL at 2,000 crossing among "
              "100,000 open jobs (a check made while writing the harness)."]
    L += NOTES.get("sla", []) if not all(g4) else []
    # ---- sync
    L += ["", "## 5. Field sync", "",
          f"`bench/fieldsync.py`: `FieldCore` (mobile/fieldapp/core) with 200 street-light reports queued, each with "
          f"its own JPEG of {sync['photo_mb_min']:.2f}–{sync['photo_mb_max']:.2f} MB ({sync['mb_total']:.0f} MB), "
          "sent by the app's sync loop (4 in flight) to the API over loopback: **"
          f"{sync['seconds']:.1f} s**; server: {sync['server_reports']} reports, {sync['server_photos']} photos "
          f"({sync['server_photo_mb']:.0f} MB stored), each client_id once, device references = server's: "
          f"{'yes' if sync['exactly_once'] else 'NO'}."]
    L += NOTES.get("sync", []) if not all(g5) else []
    # ---- growth
    L += ["", "## 6. Growth curve", "",
          "At each size, with the 1M open jobs: the snap alone (as in 2), the intake alone (one 10 s phase, 16 "
          "connections), job by reference (16 connections) and an OGC lamp-column bbox of 1,000 (4 connections).",
          "", "| lamp columns | snap p50 ms | snap p99 ms | intake req/s | intake p99 ms | job p99 ms | "
          "OGC lights p95 ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for g in r["growth"]:
        L.append(f"| {_n(g['assets'])} | {g['snap_p50']:.2f} | {g['snap_p99']:.2f} | {_n(g['intake_rps'])} | "
                 f"{g['intake_p99']:.0f} | {g['job_p99']:.1f} | {g['ogc_p95']:.0f} |")
    for g in r["growth"]:
        if "measured_by" in g:
            L += ["", f"The {_n(g['assets'])} row was measured by `{g['measured_by']}` at "
                  f"{g['measured_at'][11:16]} UTC on the database the run kept: the run's own OGC phase at that size "
                  "completed no request in 10 s: each worker process's first request computes every layer's extent (one "
                  "ST_Extent over all 10M lamp columns: 14.4 s alone in psql, cached 5 minutes per process; 4 "
                  f"concurrent first requests took {g.get('ogc_first_s', 0):.1f} s). The harness now makes those "
                  "first requests before measuring. At 10M that is a stall every 5 minutes per worker: the extents "
                  "belong on `asset_layers`, written by the import and the bench loader, not computed on a read."]
    L += ["", "![cost against size](growth.png)", ""]
    L += NOTES.get("growth", [])
    L += ["", "## Running it", "",
          "`make bench` installs `.venv-bench` from `requirements-bench.txt` (pygeoapi, matplotlib) and runs "
          "`.venv/bin/python -m bench.suite run`; it needs ~8 GB free disk for the 10M-asset database, which it "
          "drops at the end. `python -m bench.intake run` measures the intake alone; `python -m bench.report` "
          "re-renders this file from `bench/results.json`; `python -m bench.profile_intake run` profiles a request. "
          "Pieces, each recorded into `bench/results.json`: `python -m bench.suite sla` (the SLA goal alone), "
          "`python -m bench.suite finish-growth --size N` (a growth row on a database kept by `run --keep`), "
          "`python -m bench.waits run --record` (the intake's wait events), `python -m bench.whatif_notify run`.",
          "", _crew_section()]
    return "\n".join(L)


NOTES: dict[str, list[str]] = {}  # filled by notes(r) for the run being rendered


def _waits(r: dict) -> list[str]:
    """The intake's backend wait events, when bench.waits recorded them."""
    w = r.get("intake_waits")
    if not w:
        return []
    return _waits_text(r, w)


def _waits_text(r: dict, w: dict) -> list[str]:
    """The waits paragraph, and the what-if that sizes them when bench.whatif_notify ran."""
    sh = w["shares"]

    def share(prefix: str) -> float:
        return 100 * sum(v for k, v in sh.items() if k.startswith(prefix))

    out = []
    wi = r.get("whatif_notify")

    def act(flag: bool) -> float:
        xs = [x["active_ms"] for x in wi["rows"] if x["notify"] == flag]
        return sum(xs) / len(xs)

    if wi:
        out = ["", f"**What-if, to size it** (`{wi['command']}`, a fresh database with 1M lamp columns, alternating "
               "rounds): the same API with `kerbside_intake`'s pg_notify calls made no-ops in that bench database "
               f"only served **{wi['rps_without']:.0f} req/s against {wi['rps_with']:.0f}** as committed "
               f"({wi['rps_without'] / wi['rps_with']:.2f}×), worst p99 {wi['p99_without']:.0f} ms against "
               f"{wi['p99_with']:.0f} ms; backend active time per report {act(False):.0f} ms against {act(True):.0f} "
               "ms. So the lock wait is most of the backends' time but not the ceiling: it overlaps other requests' "
               "CPU work, and on 2 shared cores the intake is bound by CPU per report (app + PostgreSQL), which is "
               "what the rest of this note is about."]
    return ["", f"**Waits.** Sampling the intake's active backends every 50 ms under the same load "
            f"(`{w['command']}`, on the database the run kept, at its largest size: {w['rps']:.0f} req/s, p99 {w['p99']:.0f} ms, {w['samples']:,} samples): "
            f"**{share('Lock:object'):.0f} % waiting for a lock at COMMIT** (`Lock:object`: the database-wide lock "
            "on the NOTIFY queue, which a transaction that sent NOTIFY holds from pre-commit through its WAL flush, "
            f"so such commits run one at a time) and {share('IO:WALSync'):.0f} % in that flush; "
            f"{share('CPU:-'):.0f} % on CPU in the two statements, {share('IO:DataFileRead'):.0f} % reading pages. "
            "The baselines send no NOTIFY, so their commits share WAL flushes."] + out


def _one_statement(it: dict, ia: float, fa: float, f1: tuple[float, float, float],
                   f1b: tuple[float, float] | None = None) -> str:
    """What the one-statement floors say about the redesign that makes a report one statement, alone and with
    group commit."""
    app1, db1, busy = f1
    extra = max(ia - fa, 0.0)  # the intake's own app work: its app CPU less the floor's
    est = it["floor1_vs_bare"] * (app1 + db1) / (app1 + db1 + extra)  # throughput follows CPU per report
    text = ("Making a report one statement (the snap choice and the SLA deadline in SQL) comes nearer the line: "
            f"the same work as one statement, behind the same bare app, "
            f"served {_n(it['rps']['floor1'])} req/s, **{it['floor1_vs_bare']:.2f}× bare**, with {app1:.2f} ms of "
            f"app CPU and {db1:.2f} ms of PostgreSQL per report (the machine {busy:.0f} % busy: with its NOTIFYs "
            "inside, each report's commit waits its turn for the notification queue's lock). With the intake's "
            f"own app work on top (validation, token judgement, snap choice, deadline, answer: {extra:.2f} ms, the "
            f"intake's app CPU less the floor's), it would come to about **{est:.2f}×** at this run's figures, "
            + ("short of 0.5×. " if est < 0.5 else "at the line, within this machine's run-to-run spread. "))
    if not (f1b and it.get("floor1b_vs_bare")):
        return text
    app1b, db1b = f1b
    est_b = it["floor1b_vs_bare"] * (app1b + db1b) / (app1b + db1b + extra)
    return text + (
        "**Group commit on top** " + ("is the one design measured here that passes 0.5× before the intake's own "
                                      "app work" if it["floor1b_vs_bare"] >= 0.5 else "comes nearest")
        + ": the reports waiting together, sent as one statement with one commit, served "
        f"{_n(it['rps']['floor1b'])} req/s, **{it['floor1b_vs_bare']:.2f}× bare**, with {app1b:.2f} ms of app CPU "
        f"and {db1b:.2f} ms of PostgreSQL per report (one round trip, pool checkout and commit shared by the "
        "batch, and one turn at the notification queue's lock per batch). With the intake's own app work on top "
        f"({extra:.2f} ms) it would come to about **{est_b:.2f}×**"
        + (", still short of 0.5×. " if est_b < 0.5 else ", at or over the line. ")
        + "Group commit alone does not move the intake as it is: in an A/B on 7 Dec (1M lamp columns, 1M open "
        "jobs, alternating rounds), the API with only `kerbside_intake` batched this way (where the point is "
        "still its own round trip, the snap choice and deadline still in Python between the two) served 1,026 "
        "req/s against 1,039, with 0.85 ms of app CPU per report against 0.81. The batch takes a round trip "
        "away only when the report is one statement. ")


def _floor(it: dict, ia: float, ib_: float, ba: float, bb: float, fa: float, fb: float,
           f1: tuple[float, float, float], f1b: tuple[float, float] | None = None) -> list[str]:
    """What would move goal 1: the floors' answers (how far app-side work, and one statement, can go), then the
    database's part."""
    need = 2 * (ba + bb)
    out = ["",
           "**What would move it.** " + (
               f"The floor says how far app-side work can go: the intake's own statements behind the bare "
               f"baseline's app served {_n(it['rps']['floor'])} req/s, **{it['floor_vs_bare']:.2f}× bare**, with "
               f"{fa:.1f} ms of app CPU and {fb:.1f} ms of PostgreSQL per report. Taking every line of the intake's "
               "own Python out (validation of the whole report, the token's judgement, the snap choice, the SLA "
               "deadline in working days, the answer in words, PoolRoute and the three middlewares) would move "
               f"the ratio from {it['vs_bare']:.2f} to at most about {it['floor_vs_bare']:.2f}, so goal 1 cannot be "
               "met from the app. 0.5× needs app and PostgreSQL within about 2× the bare baseline's "
               f"(≤ {need:.1f} ms here, against {ia + ib_:.1f} for the intake): even with the floor's app "
               f"({fa:.1f} ms) that leaves PostgreSQL ≤ {need - fa:.1f} ms per report, against {fb:.1f}. "
               + (_one_statement(it, ia, fa, f1, f1b) if it.get("floor1_vs_bare") else "")
               if it.get("floor_vs_bare") else
               f"0.5× the bare baseline needs the whole intake within about 2× its CPU (≤ {need:.1f} ms here, "
               f"against {ia + ib_:.1f}). ")
           + f"With the intake's own app ({ia:.1f} ms), PostgreSQL would have to come down to "
           f"≤ {max(need - ia, 0):.1f} ms per report from {ib_:.1f}, a cut of about "
           f"{100 * (1 - max(need - ia, 0) / ib_):.0f} %: a change of design, not of code. "
           "With `pg_stat_statements` tracking nested statements under this load (1M lamp columns, 1M open jobs; "
           "measured on 7 Dec, before migration 0019), `kerbside_locate` took 58 % of the statements' time and "
           "`kerbside_intake` 42 %. In one connection, beyond a round trip, locate's own work is 0.24 ms against "
           "the bare KNN's 0.10 (it was 0.28 before 0019 read the boundary test and the ward in one scan of the "
           "area parts); the nearest named street is about 0.09 ms of it. Dropping the street, the ward or the "
           "boundary test would give the job no street or ward for the adviser and the contractor, or no "
           "out-of-area answer. In `kerbside_intake` the cost is spread over the job's insert (into up to fifteen indexes, one GiST and one GIN), the "
           "report's (three foreign keys, two of them lamp-column row locks), four timeline rows and the dispatch "
           "message. None of these is a layer that could be skipped without losing something a user relies on, "
           "so this note does not propose dropping any; the issue's owners may prefer to restate goal 1 against "
           "the floor.",
           ""]
    return out


def _fresh_points(r: dict) -> str:
    """What the intake's reports were about: new faults, taken in order from the sampled points (run_wrk's
    `fresh`), and how many of them opened a job."""
    ps = [rd["intake"] for rd in r["intake"]["rounds"]]
    opened, taken = sum(p.get("jobs_opened", 0) for p in ps), sum(p.get("reports_taken", 0) for p in ps)
    wrapped = any(rd[n].get("points", {}).get("wrapped") for rd in r["intake"]["rounds"] for n in rd
                  if isinstance(rd[n], dict))
    return ("every report at a lamp column no earlier report of the run was at (the points taken in order, each "
            f"once{'; the file ran out and was started again' if wrapped else ''}): each a new fault, so "
            + (f"{100 * opened / taken:.0f} % of the intake's measured reports opened a job" if taken else
               "each opened a job") + " (the rest attached to one)")


def _floor_batched(it: dict, ia: float, ib_: float, ba: float, bb: float, f1b: tuple[float, float],
                   busy: tuple[float, float]) -> list[str]:
    """What would move goal 1 with the batched intake: the floor (its database work behind the bare app, batched
    the same way) says how much is the app's; the idle CPU says how much is waiting."""
    app_f, db_f = f1b
    need = 2 * (ba + bb)
    return ["",
            f"**Idle time.** The machine was {busy[0]:.0f} % busy under the intake against {busy[1]:.0f} % under "
            "the bare baseline: with one batch in flight per API process (`KERBSIDE_INTAKE_BATCH_SENDERS`), each "
            "process waits out its batch's commit (the WAL flush) with nothing else to send, and its database "
            "backend waits while the process answers one batch and reads the next. At full use the "
            f"intake's CPU per report would serve about {it['vs_bare'] * busy[1] / max(busy[0], 1):.2f}× bare. "
            "Filling that time has so far cost as much CPU per report as it gave back, in A/Bs on 7 Dec (1M lamp "
            "columns, 1M open jobs, alternating rounds, medians): two senders served 1,370 req/s against one's "
            "1,433; a second sender that joins only when 4 reports wait, 1,135 against 1,167; each batch's COMMIT "
            "sent while the next batch's statement runs (the machine 87–89 % busy instead of 80–86 %, but smaller "
            "batches and a round trip more), 1,126 against 1,204; three and four API workers, 1,118 and 1,062 "
            "against two's 1,138; on 8 Dec, one API worker with one sender used less CPU per report (1.03 against "
            "1.29 ms: batches twice the size, and one backend writing at a time) but left the machine 63 % busy, "
            "0.91× two workers' throughput, and one worker with two senders 0.97×. Kept: under load, a sender that finds fewer than half as many reports waiting "
            "as its last batch held waits once, 1 ms, for those on their way (`KERBSIDE_INTAKE_BATCH_LINGER_MS`): "
            "+1 %, +8 %, +5 % and +1 % in four A/Bs (0.5, 1, 2 and 1 ms), less app CPU per report in each. "
            "Sampled under the load of the day's earlier runs (reports repeating 20,000 points), "
            "a process's backend spent 0.30 of its time waiting "
            "on the WAL flush for 1.07 running. `wal_compression = lz4` halved the intake's WAL after a checkpoint "
            "(its full-page images) but not its throughput (1,326 against 1,300 req/s), so the bench's cluster "
            "keeps PostgreSQL's defaults.",
            "",
            "**What would move it.** The floor (`floor1b`: the intake's database work for a report, batched as the "
            f"intake batches, behind the bare baseline's app) served {_n(it['rps']['floor1b'])} req/s, "
            f"**{it['floor1b_vs_bare']:.2f}× bare**, with {app_f:.2f} ms of app CPU and {db_f:.2f} ms of "
            "PostgreSQL per report: the most any change to the app could give with the database work as it is"
            + (f" (this run it served less than the intake itself, {_n(it['rps']['intake'])} req/s: its rounds "
               "moved as much as the intake's). " if it["rps"]["floor1b"] < it["rps"]["intake"] else ". ")
            + f"0.5× needs app and PostgreSQL within about 2× the bare baseline's (≤ {need:.1f} ms here, against "
            f"{ia + ib_:.1f} for the intake: {ia:.2f} ms app, {ib_:.2f} ms PostgreSQL). The intake's own app work "
            f"beyond the floor's is {max(ia - app_f, 0):.2f} ms a report"
            + (f"; the floor sends the intake's own statements, and its PostgreSQL time per report was {db_f:.2f} "
               f"ms against the intake's {ib_:.2f} (its batches differ in size with its speed). "
               if it.get("floor_statement") == "kerbside_intake_batch" else
               f"; its database work beyond the floor's, {max(ib_ - db_f, 0):.2f} ms (the caller judged in SQL, the "
               "snap's runner-up and confidence, the parameter filled in, the NOTIFYs after the commit). ")
            + "What is left is mostly the database's work for a "
            f"report, {ib_ / max(bb, 1e-9):.1f}× the baseline's: a job in its indexes, a report, four timeline rows "
            "and a dispatch message where the baseline writes one row. None of it is a layer a user could do "
            "without, so this note does not propose dropping any; the issue's owners may prefer to restate goal 1 "
            "against the floor. Tried on 7 Dec and not kept (1M lamp columns, 1M open jobs, alternating rounds): the "
            "lamp-column foreign keys of jobs and reports replaced by guards, as migration 0006 did for categories "
            "and wards (+7 % and +2 % in two A/Bs, within the noise, and a guard cannot stop a delete that races an "
            "uncommitted report); the keys from reports, timeline rows and dispatch messages to jobs as well (+1 %); "
            "an attach that leaves updated_at alone, so that its UPDATE is HOT (0.01 ms a report). Kept on 8 Dec: "
            "two SQL functions that PostgreSQL could not inline had been parsed and planned again in every batch "
            "(9.5 % of a backend's time for batches of one, in `perf`); migration 0025 takes that out: -5 % "
            "database time a report in one connection, +7 % req/s under wrk (6 alternating rounds). A WAL flush "
            "takes about 0.09 ms on this disk (`pg_test_fsync`).",
            ""]


def notes(r: dict) -> dict[str, list[str]]:
    """What was measured, where the time goes and what would move it, for each goal (shown when not met)."""
    it = r["intake"]["summary"]
    rounds = r["intake"]["rounds"]

    def avg(name: str, key: str) -> float:
        return sum(x[name].get(key, 0) for x in rounds) / len(rounds)

    ia, ib_, ba, bb = avg("intake", "app_ms"), avg("intake", "db_ms"), avg("bare", "app_ms"), avg("bare", "db_ms")
    fa, fb = (avg("floor", "app_ms"), avg("floor", "db_ms")) if "floor" in rounds[0] else (0.0, 0.0)
    f1 = ((avg("floor1", "app_ms"), avg("floor1", "db_ms"), avg("floor1", "util")) if "floor1" in rounds[0]
          else (0.0, 0.0, 0.0))
    f1b = (avg("floor1b", "app_ms"), avg("floor1b", "db_ms")) if "floor1b" in rounds[0] else None
    job = r["reads"]["job"]
    sizes = sorted(int(k) for k in r["snap"])
    snaps = {s: (r["snap"][str(s)] if str(s) in r["snap"] else r["snap"][s]) for s in sizes}
    out = {}
    batched = "floor" not in rounds[0]  # this run's intake sends its reports in batches (migration 0022)
    out["intake"] = [
        ("**Where the time goes.** The intake takes most reports (all of this load's) as one statement shared "
         "with the reports waiting in the same API process (group commit, server/reports/batch.py): "
         "`kerbside_intake_batch` locates each, judges its caller and snaps it, then writes it (lock, duplicate, "
         "job, report, timeline, dispatch): the new faults together, one INSERT each for their jobs, reports, "
         "timelines and dispatch messages (migration 0024), the rest a subtransaction each, and one commit for the "
         "batch, with nothing in it parsed or planned again from one batch to the next (migration 0025); the "
         "NOTIFYs follow in one statement per batch. The bare baseline sends two statements per report. "
         if batched else
         "**Where the time goes.** A report takes two statements and, for its wake-ups, a third; the bare "
         "baseline takes two. All run in autocommit on psycopg 3 from an async pool, prepared, with no thread and "
         "no ORM, and the request is taken ahead of FastAPI's dependency solving (server/poolroute.py "
         "`PoolRoute`). The first statement finds where the point is, with the token check and the retry lookup "
         "riding on it. The second is `kerbside_intake`, one PL/pgSQL call that is the report's transaction: "
         "lock, duplicate, job, report, timeline, dispatch, and the reporter's contact queued as it came. The "
         "third sends the NOTIFYs in a transaction of their own. ")
        + f"The difference is work per report: **{ib_:.1f} ms of PostgreSQL backend CPU per report against "
        f"{bb:.1f} ms**. Locate resolves boundary, ward, nearest named street and five candidates where the "
        "baseline takes one nearest; the write inserts a job into its indexes (up to fifteen), a report, four "
        "timeline rows and a dispatch message where the baseline inserts one row. "
        f"The app used **{ia:.1f} ms of CPU against {ba:.1f} ms**: validation of the whole report and its "
        "answers, the SLA deadline in working days, the answer in words, and three middlewares (request id and "
        "access log, CORS, body limit). wrk, the servers and PostgreSQL share 2 cores, so throughput follows "
        "total CPU per request and the ratio is close to the ratio of those totals.",
        *_waits(r),
        "",
        *(_floor_batched(it, ia, ib_, ba, bb, f1b, (avg("intake", "util"), avg("bare", "util")))
          if batched and f1b else _floor(it, ia, ib_, ba, bb, fa, fb, f1, f1b)),
        "p99 ≤ 50 ms at 16 connections is the same arithmetic: 16 requests in flight on 2 cores wait, on "
        f"average, 16 / throughput ({16000 / it['rps']['intake']:.0f} ms at {it['rps']['intake']:.0f} req/s; the "
        f"bare baseline's p99 was {it['p99']['bare']:.0f} ms in the same run).",
    ]
    s1, sb = snaps[1_000_000 if 1_000_000 in snaps else sizes[-1]], snaps[sizes[-1]]
    out["snap"] = [
        "",
        (f"At 1M the median is {s1['locate']['p50']:.2f} ms, p95 {s1['locate']['p95']:.2f} ms and p99 "
         f"{s1['locate']['p99']:.2f} ms; the bare KNN (one index descent) has p99 {s1['knn']['p99']:.2f} ms. "
         if s1["locate"]["p99"] <= 2 else
         f"The p99 is not the query's: at 1M the median is {s1['locate']['p50']:.2f} ms and p95 "
         f"{s1['locate']['p95']:.2f} ms, and the bare KNN (one index descent) has the same tail "
         f"({s1['knn']['p99']:.2f} ms). A 1 ms statement timed from the client on 2 busy cores measures "
         "scheduling: a preempted client or backend waits out a time slice of a few milliseconds. What would move "
         "the p99: a quiet machine (or the database on its own cores); nothing in the query. ")
        + f"From 1M to {sizes[-1]:,} the median goes {s1['locate']['p50']:.2f} → {sb['locate']['p50']:.2f} ms. "
        "Each half of this goal has been met in "
        "one run and missed in another of the same code on a busier machine (git history): near the line, both "
        "are within run-to-run noise.",
    ]
    if job["p99"] <= 10:
        job_tail = ", within the line."
    elif job["p95"] <= 10:
        job_tail = (", so the line is missed in the last few per cent, where a request waits out the time slices of "
                    "the other processes on 2 cores (wrk, two API workers, PostgreSQL backends).")
    else:
        job_tail = "."
    out["reads"] = [
        "",
        f"**Job by reference.** {job['rps']:.0f} req/s at 16 connections means each request waits behind the "
        f"others: 16 / throughput = {16000 / job['rps']:.0f} ms on average; the median is {job['p50']:.1f} ms and "
        f"p95 {job['p95']:.1f} ms{job_tail} The page is one prepared statement (server/jobs/page.py: the token "
        "check, visibility, the job, its timeline, reports and photos as JSON made by PostgreSQL), read in "
        "autocommit on the API's async psycopg pool (no thread, no ORM session) and passed through as bytes; in an "
        "A/B run the pool gave ~22 % more throughput than the same statement through a thread and SQLAlchemy's "
        "pool (app CPU per request 1.47 against 1.80 ms on that day's machine), which gave ~5× the ORM page's. "
        "What remains is per-request work in uvicorn, psycopg's async protocol and the page's Python "
        f"({job['app_ms']:.2f} ms of app CPU and {job['db_ms']:.2f} ms of PostgreSQL per request in this run). What "
        "would move it: more cores (at fixed CPU per request the latency scales with connections / cores), or a "
        "cache per reference invalidated by the job-events NOTIFY.",
        "",
        "**OGC items.** The FeatureCollection's features are made by PostgreSQL in one statement (server/ogc/"
        "features.py: ST_AsGeoJSON and the properties as JSON text, passed through as bytes), numberMatched comes "
        "from the page when the page is short, and each layer's extent is stored on `asset_layers` (migration 0012) "
        "instead of an ST_Extent over the layer on a read. What remains per page is PostgreSQL's work on 1,000 "
        "rows with their joins and the transformation of 1,000 points, and the bbox count on full pages.",
    ]
    sla = r["sla"]
    out["sla"] = [
        "",
        f"Measured {sla['sweep_median_s'] * 1000:.0f} vs {sla['set_median_s'] * 1000:.0f} ms. The sweep flags in "
        "batches (`BATCH` in server/jobs/scheduled.py), three statements each: the UPDATE … RETURNING, one INSERT of "
        "the batch's events from arrays, one statement of NOTIFYs; the events' JSON is made in Python and sent "
        "over, where the set-based SQL makes it in the server from the UPDATE's RETURNING. What would move it: the "
        "INSERT and the NOTIFYs inside the UPDATE's statement (CTEs, as the set-based SQL does), with the event "
        "data formatted by PostgreSQL exactly as `iso()` formats it.",
    ]
    sync = r["sync"]
    out["sync"] = [
        "",
        f"{sync['mb_total']:.0f} MB of photos in {sync['seconds']:.1f} s, all exactly once. An upright JPEG now "
        "keeps its compressed pixels and loses only its metadata segments (server/reports/photos.py "
        "`strip_jpeg`), verified and thumbnailed by one reduced-size decode: `clean` takes about a third of the "
        "CPU it did (21–25 ms against 62–72 ms per bench photo, alternating). What remains per photo: the "
        "verifying decode (~17 ms: reading the whole entropy-coded stream is what verification costs), multipart "
        "parsing (Starlette spools anything over 1 MB to a file, a thread hop per chunk) and the database work and "
        "file writes, on the 2 cores that also run the client and PostgreSQL. What would move it: more cores, or "
        "the thumbnail made by the worker after the upload is answered.",
    ]
    out["growth"] = [
        "Snap and intake grow slowly with size (a KNN descent is logarithmic; the index and table outgrow "
        "shared_buffers at 10M, so some calls read from the OS cache); job by reference does not depend on the "
        "lamp columns at all; the OGC lamp-column box shrinks in area as the density grows, and its cost is "
        "the 1,000 features it returns. Noise: each row is one short phase on a shared machine.",
    ]
    return out


def write_all(r: dict) -> None:
    """Write results.json, growth.json, RESULTS.md and growth.png."""
    RAW_JSON.write_text(json.dumps(r, indent=1, default=str) + "\n")
    GROWTH_JSON.write_text(json.dumps(r["growth"], indent=1) + "\n")
    NOTES.clear()
    NOTES.update(notes(r))
    RESULTS.write_text(render(json.loads(RAW_JSON.read_text())))
    py = ROOT / ".venv-bench" / "bin" / "python"
    subprocess.run([str(py), str(BENCH / "plot.py"), str(GROWTH_JSON), str(GROWTH_PNG)], check=True)


if __name__ == "__main__":
    write_all(json.loads(RAW_JSON.read_text()))
    print(f"rewrote {RESULTS}", file=sys.stderr)
