"""intake: no SQL function left to be parsed and planned again in every batch

Revision ID: 0025_intake_planned_once
Revises: 0024_intake_new_jobs_together
Create Date: 2026-12-08 01:10:00

A SQL-language function that PostgreSQL cannot inline into its caller is run by parsing, analysing and planning
its body afresh for each query that calls it (and, called from PL/pgSQL, for each transaction). Two of the
intake's were:

- kerbside_float_json (0022), called three times for each report by kerbside_intake_ready. It is declared
  IMMUTABLE but calls to_jsonb, which is STABLE, so it is never inlined. It is now PL/pgSQL, with the same
  expression: PL/pgSQL keeps its plan for the connection's life.
- kerbside_reference (0004), called by kerbside_intake_new_jobs (0024) with nextval(...) as its number, which
  its body reads three times: a volatile argument read more than once is not inlined either. The numbers are now
  drawn one query level down (in the same order: the batch's, as before), and kerbside_reference is given the
  drawn number, which it inlines.

Profiled (perf) in one connection at 1M lamp columns and 1M open jobs: these two were 9.5 % of the backend's time
for batches of one report, and kerbside_reference alone 1.8 % for batches of 8 after the first change; after both,
no parse or plan is left in a batch. Database time a report, batches of 8 new faults, definitions swapped in 8
alternating rounds: 0.693 -> 0.665 ms (-5 %). Under wrk (16 connections, 2 API workers, new faults), swapped on
one server in 6 alternating rounds: 1,178 -> 1,249 req/s (+7 %, median of the rounds' ratios).
"""

from alembic import op

from server.migrations.earlier import migration

revision = '0025_intake_planned_once'
down_revision = '0024_intake_new_jobs_together'
branch_labels = None
depends_on = None

FLOAT = """
CREATE OR REPLACE FUNCTION kerbside_float_json(x float8) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
BEGIN
  -- a float as the API writes one in JSON (orjson): 1.0, not 1
  RETURN CASE WHEN x = trunc(x) AND abs(x) < 1e15 THEN to_jsonb(round(x::numeric, 1)) ELSE to_jsonb(x) END;
END
$fn$"""

JOB_NUMBER = (
    """           e.p->'report' AS rep, kerbside_reference('J', nextval('job_reference_seq')) AS jref
      FROM jsonb_array_elements(ps) WITH ORDINALITY AS e(p, i)
""",
    """           e.p->'report' AS rep, kerbside_reference('J', e.n) AS jref
      FROM (SELECT e.p, e.i, nextval('job_reference_seq') AS n
              FROM jsonb_array_elements(ps) WITH ORDINALITY AS e(p, i) ORDER BY e.i) AS e
""")
REPORT_NUMBER = (
    """    SELECT x.*, j.id AS job_id, j.status, j.priority, j.ward_id, j.street, j.due_at, j.demand_count,
           j.triage_reason, kerbside_reference('R', nextval('report_reference_seq')) AS rref
      FROM x JOIN j ON j.reference = x.jref ORDER BY x.i
""",
    """    SELECT xn.*, kerbside_reference('R', xn.n) AS rref
      FROM (SELECT x.*, j.id AS job_id, j.status, j.priority, j.ward_id, j.street, j.due_at, j.demand_count,
                   j.triage_reason, nextval('report_reference_seq') AS n
              FROM x JOIN j ON j.reference = x.jref ORDER BY x.i) AS xn
""")


def new_jobs() -> str:
    """0024's kerbside_intake_new_jobs with each reference's number drawn a level below kerbside_reference."""
    body = migration('0024_intake_new_jobs_together.py').NEW_JOBS
    for old, new in (JOB_NUMBER, REPORT_NUMBER):
        if body.count(old) != 1:
            raise RuntimeError("0024's kerbside_intake_new_jobs no longer reads as 0025 expects")
        body = body.replace(old, new)
    return body


def upgrade() -> None:
    op.execute(FLOAT)
    op.execute(new_jobs())


def downgrade() -> None:
    op.execute(migration('0022_intake_batch.py').FLOAT)
    op.execute(migration('0024_intake_new_jobs_together.py').NEW_JOBS)
