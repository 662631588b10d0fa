"""The SLA sweep at scale: the worker's sweep (server.jobs.scheduled.sweep_sla) against set-based SQL doing the
same work, on the same 10,000 crossing jobs among the open jobs, in alternating rounds, each rolled back.

"The same work": both flag each crossing job (at_risk_at or breached_at = now), write one job_events row per
flag with the same type, actor, after and data, and send one pg_notify per flag. Half the crossing jobs cross
at-risk (risk_at past, due_at ahead), half cross breach (already flagged at risk, due_at past).
Then one sweep is committed and a second sweep, with nothing crossing, is timed, with the buffers its two
index scans touch (EXPLAIN ANALYZE, BUFFERS): its cost should follow the changing jobs, not the open ones. Right
after the committed sweep, the scans may still find the versions its jobs left behind (a visit each, until a scan
has marked them dead or a vacuum has removed them), so the same is measured again with a fifth as many jobs
changing: the buffers should shrink with them, whatever the number of open jobs.

The versions the crossing jobs leave behind are passed over cheaply only once no snapshot can still see them: a
transaction open meanwhile anywhere in the database (an autovacuum's ANALYZE of a table the earlier phases filled
holds one for its whole sample) makes every later scan visit them again. So the tables the intake writes are
vacuumed and analysed first, with autovacuum let finish, as a database settles after a burst; and the sessions
that held an older snapshot while the empty sweeps ran are counted and reported beside their buffers.
"""
from __future__ import annotations

import re
import statistics
import time
from datetime import datetime, timezone

import psycopg

OPEN = "('triage','new','assigned','sent','accepted','scheduled','in_progress')"  # jobs/rules.py SWEPT_STATUSES

SET_BASED = [
    """WITH f AS (UPDATE jobs SET at_risk_at = %(now)s
                   WHERE at_risk_at IS NULL AND risk_at <= %(now)s AND status IN {open}
                  RETURNING id, reference, status, due_at, risk_at, sla_started_at),
            e AS (INSERT INTO job_events (job_id, type, actor, actor_role, at, after, data)
                  SELECT id, 'sla_at_risk', 'system:sla', 'system', %(now)s, jsonb_build_object('at_risk_at', %(now)s),
                         jsonb_build_object('due_at', due_at, 'risk_at', risk_at, 'started_at', sla_started_at)
                    FROM f RETURNING id, job_id)
       SELECT count(pg_notify('kerbside_job_events', json_build_object('job', f.reference, 'event_id', e.id,
                                'type', 'sla_at_risk', 'status', f.status)::text))
         FROM e JOIN f ON f.id = e.job_id""",
    """WITH f AS (UPDATE jobs SET breached_at = %(now)s
                   WHERE breached_at IS NULL AND due_at <= %(now)s AND status IN {open}
                  RETURNING id, reference, status, due_at, risk_at, sla_started_at),
            e AS (INSERT INTO job_events (job_id, type, actor, actor_role, at, after, data)
                  SELECT id, 'sla_breached', 'system:sla', 'system', %(now)s, jsonb_build_object('breached_at', %(now)s),
                         jsonb_build_object('due_at', due_at, 'risk_at', risk_at, 'started_at', sla_started_at)
                    FROM f RETURNING id, job_id)
       SELECT count(pg_notify('kerbside_job_events', json_build_object('job', f.reference, 'event_id', e.id,
                                'type', 'sla_breached', 'status', f.status)::text))
         FROM e JOIN f ON f.id = e.job_id""",
]


def make_crossing(conn: psycopg.Connection, n: int = 10_000) -> list[int]:
    """Move n open jobs' deadlines so that they cross now (half at-risk, half breach); their ids."""
    ids = [r[0] for r in conn.execute(
        f"SELECT id FROM jobs WHERE status IN {OPEN} AND at_risk_at IS NULL AND breached_at IS NULL "
        "AND on_hold_since IS NULL ORDER BY random() LIMIT %s", (n,)).fetchall()]
    half = ids[: n // 2], ids[n // 2:]
    conn.execute("UPDATE jobs SET risk_at = now() - interval '1 minute', due_at = now() + interval '1 day' "
                 "WHERE id = ANY(%s)", (half[0],))
    conn.execute("UPDATE jobs SET risk_at = now() - interval '2 days', at_risk_at = now() - interval '2 days', "
                 "due_at = now() - interval '1 minute' WHERE id = ANY(%s)", (half[1],))
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM (ANALYZE) jobs")
    conn.autocommit = False
    return ids


def restore(conn: psycopg.Connection, ids: list[int]) -> None:
    """Deadlines far ahead again, flags cleared (the timeline rows of the committed sweep stay)."""
    conn.execute("UPDATE jobs SET risk_at = now() + interval '10 days', due_at = now() + interval '15 days', "
                 "at_risk_at = NULL, breached_at = NULL WHERE id = ANY(%s)", (ids,))
    conn.commit()


def _sweep_once(now: datetime, commit: bool) -> tuple[float, int]:
    from server.db import new_session
    from server.jobs.scheduled import sweep_sla

    with new_session() as s:
        t0 = time.perf_counter()
        out = sweep_sla(s, now)
        s.commit() if commit else s.rollback()
        return time.perf_counter() - t0, len(out["at_risk"]) + len(out["breached"])


def _set_based_once(conn: psycopg.Connection, now: datetime) -> tuple[float, int]:
    t0 = time.perf_counter()
    flagged = sum(conn.execute(sql.format(open=OPEN), {"now": now}).fetchone()[0] for sql in SET_BASED)
    conn.rollback()
    return time.perf_counter() - t0, flagged


def settle(conn: psycopg.Connection, max_wait: float = 120.0) -> None:
    """VACUUM (ANALYZE) the tables the intake writes, then wait (up to max_wait s) for autovacuum to finish here."""
    conn.autocommit = True
    conn.execute("VACUUM (ANALYZE) jobs, reports, job_events, outbox_messages")
    deadline = time.monotonic() + max_wait
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                       "AND datname = current_database()").fetchone()[0] and time.monotonic() < deadline:
        time.sleep(1)
    conn.autocommit = False


def _older_snapshots(conn: psycopg.Connection) -> int:
    """Other sessions of this database holding a snapshot older than a new one (they keep dead versions)."""
    n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL").fetchone()[0]
    conn.rollback()
    return n


def _empty_buffers(conn: psycopg.Connection, now: datetime) -> int:
    """Buffers the sweep's two index scans touch (EXPLAIN ANALYZE, BUFFERS)."""
    buffers = 0
    for sql in ("SELECT id FROM jobs WHERE at_risk_at IS NULL AND risk_at <= %(now)s AND status IN {open} "
                "ORDER BY risk_at LIMIT 500 FOR UPDATE SKIP LOCKED",
                "SELECT id FROM jobs WHERE breached_at IS NULL AND due_at <= %(now)s AND status IN {open} "
                "ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED"):
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql.format(open=OPEN),
                                                     {"now": now}))
        m = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
        buffers += int(m.group(1)) + int(m.group(2) or 0) if m else 0
    return buffers


def _committed_then_empty(conn: psycopg.Connection, now: datetime) -> tuple:
    """One sweep committed, then five empty ones timed: (the committed one's time and count, the empty ones',
    the buffers an empty one's two scans touch, how many other sessions held an older snapshot meanwhile)."""
    first = _sweep_once(now, commit=True)
    held = _older_snapshots(conn)
    empty = []
    for _ in range(5):
        empty.append(_sweep_once(now, commit=True))
        held = max(held, _older_snapshots(conn))
    if any(n for _, n in empty):
        raise RuntimeError("the second sweep flagged jobs again")
    buffers = _empty_buffers(conn, now)
    conn.rollback()
    return first, empty, buffers, held


def measure(url: str, rounds: int = 3, crossing: int = 10_000) -> dict:
    """Alternating rounds of sweep / set-based (rolled back), then a committed sweep and a second, empty one."""
    with psycopg.connect(url) as conn:
        settle(conn)
        conn.execute("SET jit = off")  # as the sweep runs: JIT compiling costs these statements more than it saves
        conn.commit()
        open_jobs = conn.execute("SELECT count(*) FROM jobs WHERE status IN ('triage','new','assigned','sent','accepted','scheduled','in_progress','on_hold')").fetchone()[0]
        ids = make_crossing(conn, crossing)
        now = datetime.now(timezone.utc)
        sweep, setb = [], []
        for rnd in range(rounds):
            order = ("sweep", "set") if rnd % 2 == 0 else ("set", "sweep")
            for what in order:
                if what == "sweep":
                    sweep.append(_sweep_once(now, commit=False))
                else:
                    setb.append(_set_based_once(conn, now))
        if any(n != crossing for _, n in sweep + setb):
            raise RuntimeError(f"flag counts differ from {crossing}: sweep {[n for _, n in sweep]}, "
                               f"set-based {[n for _, n in setb]}")
        first, empty, buffers, held = _committed_then_empty(conn, now)
        restore(conn, ids)
        # The same with a fifth of the jobs changing: the empty sweep's cost should shrink with them.
        few = make_crossing(conn, crossing // 5)
        _, _, few_buffers, few_held = _committed_then_empty(conn, datetime.now(timezone.utc))
        restore(conn, few)
    s_med, b_med = statistics.median(t for t, _ in sweep), statistics.median(t for t, _ in setb)
    return {"open_jobs": open_jobs, "crossing": crossing, "sweep_s": [t for t, _ in sweep],
            "set_s": [t for t, _ in setb], "sweep_median_s": s_med, "set_median_s": b_med, "ratio": s_med / b_med,
            "committed_s": first[0], "empty_ms": statistics.median(t for t, _ in empty) * 1000,
            "empty_buffers": buffers, "older_snapshots": max(held, few_held), "fewer_crossing": crossing // 5,
            "fewer_empty_buffers": few_buffers}
