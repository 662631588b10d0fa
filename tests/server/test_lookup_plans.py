"""Lists and searches at scale read indexes, not every job (migration 0020).

The test database is small, so the planner would happily read it all: each statement the page sends is planned
again here with sequential scans priced out, which leaves it to the indexes it can use. A statement with no
index to use (the find as an OR across jobs, reports and assets; a list sorted on a column no index holds)
still reads every row, and its plan says so.
"""
from __future__ import annotations

import pytest
from sqlalchemy import event, text

from server.auth.tokens import create_token
from tests.conftest import auth


@pytest.fixture
def sent(db):
    """The SQL statements (with their parameters) sent on the test's connection while the test runs."""
    conn = db.connection()
    seen: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", capture)
    yield seen
    event.remove(conn, "before_cursor_execute", capture)


def plans(db, statements: list[tuple[str, object]], marker: str) -> list[str]:
    """EXPLAIN of each statement holding `marker`, with sequential scans priced out."""
    db.execute(text("SET LOCAL enable_seqscan = off"))
    out = ["\n".join(r[0] for r in db.connection().exec_driver_sql("EXPLAIN " + sql, params))
           for sql, params in statements if marker in sql and not sql.lstrip().upper().startswith("EXPLAIN")]
    db.execute(text("SET LOCAL enable_seqscan = on"))
    assert out, f"no statement holding {marker!r} was sent"
    return out


# The contact centre's find and the job list's search: each way of matching on its own index. The find compares
# asset references in lower case (through the job's asset); the list's search matches them exactly.
SEARCHES = {
    "find": ("/api/v1/contact-centre/find", "advisor", "ILIKE",
             ("ix_assets_external_ref_lower", "ix_jobs_asset_id", "ix_jobs_contractor_ref_lower")),
    "job list": ("/api/v1/jobs", "supervisor", "ORDER BY jobs.created_at DESC, jobs.id DESC",
                 ("ix_assets_external_ref_lower", "ix_jobs_contractor_ref_lower")),
}


@pytest.mark.parametrize("search", SEARCHES)
def test_a_search_reads_each_way_of_matching_on_its_index(client, tokens, db, sent, search):
    path, role, marker, own = SEARCHES[search]
    for q in ("J-000001", "68064/030", "Bailbrook"):
        r = client.get(path, params={"q": q}, headers=auth(tokens[role]))
        assert r.status_code == 200, r.text
    planned = plans(db, sent, marker)
    assert len(planned) == 3
    for plan in planned:
        assert "Seq Scan on jobs" not in plan and "Seq Scan on assets" not in plan, plan
        for index in ("uq_jobs_reference", "uq_reports_reference", "ix_jobs_street_trgm", *own):
            assert index in plan, (index, plan)


def test_the_job_list_newest_first_reads_its_index(client, tokens, db, sent):
    r = client.get("/api/v1/jobs", params={"limit": 20}, headers=auth(tokens["supervisor"]))
    assert r.status_code == 200, r.text
    (plan,) = plans(db, sent, "ORDER BY jobs.created_at DESC, jobs.id DESC")
    assert "ix_jobs_created_at_id" in plan and "Seq Scan on jobs" not in plan, plan


def test_a_contractors_list_reads_only_its_jobs(client, db, sent):
    token = create_token(db, "contractor", name="plans-contractor", contractor="street-lighting")[1]
    db.flush()
    r = client.get("/api/v1/contractor/jobs", headers=auth(token))
    assert r.status_code == 200, r.text
    (plan,) = plans(db, sent, "ORDER BY jobs.updated_at DESC, jobs.id DESC")
    assert "ix_jobs_contractor_updated" in plan and "Seq Scan on jobs" not in plan, plan


def test_the_dispatch_queue_reads_only_the_jobs_waiting_in_it(client, tokens, db, sent):
    # Many open jobs not waiting (the queue's few are lost among them without its index), then fresh statistics.
    db.execute(text("""
        INSERT INTO jobs (reference, category_code, geom, priority, status, sla_policy, sla_started_at, due_at,
                          risk_at, paused_seconds, demand_count, description)
        SELECT 'PQ-' || i, 'graffiti', ST_SetSRID(ST_MakePoint(375000 + i % 500, 165000 + i / 500), 27700),
               'normal', 'assigned', '{"kind": "hours", "hours": 10}', now(), now() + i * interval '1 minute',
               now(), 0, 1, ''
          FROM generate_series(1, 4000) i"""))
    db.execute(text("ANALYZE jobs"))  # inside the test transaction
    r = client.get("/api/v1/dispatch/queue", headers=auth(tokens["supervisor"]))
    assert r.status_code == 200, r.text
    (plan,) = plans(db, sent, "ORDER BY jobs.due_at ASC NULLS LAST, jobs.id")
    assert "ix_jobs_queued" in plan and "Seq Scan on jobs" not in plan, plan

