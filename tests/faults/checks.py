"""What "nothing lost, nothing doubled, nothing half-written" means in rows, as SQL over a connection."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def rows_per_client_id(conn: Connection, client_ids: list[str]) -> dict[str, int]:
    """How many report rows each client_id has (missing ones count 0)."""
    found = dict(conn.execute(text("""
        SELECT client_id::text, count(*) FROM reports WHERE client_id::text = ANY(:ids) GROUP BY client_id"""),
        {"ids": client_ids}).all())
    return {cid: found.get(cid, 0) for cid in client_ids}


def stored_references(conn: Connection, client_ids: list[str]) -> dict[str, tuple[str, str]]:
    """client_id -> (report reference, job reference) as stored."""
    return {r[0]: (r[1], r[2]) for r in conn.execute(text("""
        SELECT r.client_id::text, r.reference, j.reference FROM reports r JOIN jobs j ON j.id = r.job_id
         WHERE r.client_id::text = ANY(:ids)"""), {"ids": client_ids})}


def half_written(conn: Connection, client_ids: list[str] | None = None) -> list[str]:
    """Every way a report or job could be half there; [] when all is whole.

    With client_ids: the reports with those ids and their jobs; without: every report and job.
    """
    scope = "r.client_id::text = ANY(:ids)" if client_ids is not None else "true"
    params = {"ids": client_ids or []}
    problems: list[str] = []
    q = {
        # a report whose job row is missing, or whose report_received event is missing or doubled
        "report without exactly one report_received event": f"""
            SELECT r.reference FROM reports r
             WHERE {scope} AND (SELECT count(*) FROM job_events e WHERE e.job_id = r.job_id
                                   AND e.type = 'report_received' AND e.data->>'report' = r.reference) <> 1""",
        "report without its job": f"""
            SELECT r.reference FROM reports r LEFT JOIN jobs j ON j.id = r.job_id WHERE {scope} AND j.id IS NULL""",
        "report without its stored answer": f"""
            SELECT r.reference FROM reports r WHERE {scope} AND (r.response IS NULL OR r.response->>'reference'
                                                                  IS DISTINCT FROM r.reference)""",
        # every job: opened once, its SLA set, as many reports as its demand count, dispatched once
        "job not opened exactly once": f"""
            SELECT j.reference FROM jobs j WHERE j.id IN (SELECT r.job_id FROM reports r WHERE {scope})
               AND (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.type = 'job_opened') <> 1""",
        "job without its sla_set event": f"""
            SELECT j.reference FROM jobs j WHERE j.id IN (SELECT r.job_id FROM reports r WHERE {scope})
               AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id AND e.type = 'sla_set')""",
        "job whose demand count is not its number of reports": f"""
            SELECT j.reference FROM jobs j WHERE j.id IN (SELECT r.job_id FROM reports r WHERE {scope})
               AND j.demand_count <> (SELECT count(*) FROM reports x WHERE x.job_id = j.id)""",
        "job without exactly one dispatch message": f"""
            SELECT j.reference FROM jobs j WHERE j.id IN (SELECT r.job_id FROM reports r WHERE {scope})
               AND (SELECT count(*) FROM outbox_messages m WHERE m.job_id = j.id AND m.destination = 'dispatch') <> 1""",
    }
    for what, sql in q.items():
        bad = [r[0] for r in conn.execute(text(sql), params)]
        if bad:
            problems.append(f"{what}: {bad[:10]} ({len(bad)})")
    if client_ids is None:
        orphans = [r[0] for r in conn.execute(text("""
            SELECT j.reference FROM jobs j WHERE NOT EXISTS (SELECT 1 FROM reports r WHERE r.job_id = j.id)"""))]
        if orphans:
            problems.append(f"job without any report: {orphans[:10]} ({len(orphans)})")
    return problems
