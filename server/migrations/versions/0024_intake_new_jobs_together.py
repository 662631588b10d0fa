"""intake: a batch's new faults written together, one statement for their jobs, reports, timelines and dispatches

Revision ID: 0024_intake_new_jobs_together
Revises: 0023_locate_point_once
Create Date: 2026-12-07 22:10:00

kerbside_intake_batch (0022) wrote its reports one at a time, each kerbside_intake in a subtransaction of its
own: about a dozen statements a report, each started and ended by the executor, with the report's parameter
read member by member in each. Most reports are a new fault (no open job for their asset), and those are now
written together:

- kerbside_intake_new_jobs(ps) writes new jobs, one per parameter, in one statement: the jobs, then the reports,
  the timelines (report_received and the job's opening events, in that order) and the dispatch messages, each
  one INSERT for all of them; it answers each as kerbside_intake does, with the NOTIFYs to send. It is also what
  kerbside_intake now calls for a new job (one parameter), so a new job is written by one piece of SQL on every
  path: the two-statement path, the session path's autocommit, and a batch.
- kerbside_intake_batch takes every lock of the batch first, in lock order (so batches still never wait on each
  other in a circle), then writes together the reports that are certainly a new job: snapped to an asset, no
  open job for the asset and category (the lock keeps another from being opened meanwhile), the only report of
  the batch with its lock, and no reporter contact. They share one subtransaction: if any of them fails (a race
  for a client_id, a deadlock with a lock taken outside the intake), none of them is kept, the locks are let go,
  and each is written on its own as before. The rest (attaches, contacts, reports without an asset, two reports
  of one fault) are written one at a time as before, in lock order, after them.

Measured in one connection at 1M lamp columns and 1M open jobs, in batches of 8 new faults: 0.83 ms of database
time a report before, 0.75 after.
"""

from alembic import op

from server.migrations.earlier import migration

revision = '0024_intake_new_jobs_together'
down_revision = '0023_locate_point_once'
branch_labels = None
depends_on = None

NEW_JOBS = r"""
CREATE OR REPLACE FUNCTION kerbside_intake_new_jobs(ps jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
  res jsonb;
BEGIN
  -- ps: kerbside_intake parameters, each a new job (the caller holds their locks and found no open job); the
  -- answer: for each, in order, what kerbside_intake returns for it.
  WITH x AS MATERIALIZED (
    SELECT e.i, e.p, ST_GeomFromEWKT(e.p->>'geom') AS pt, (e.p->>'now')::timestamptz AS now_, e.p->'job' AS jb,
           e.p->'report' AS rep, kerbside_reference('J', nextval('job_reference_seq')) AS jref
      FROM jsonb_array_elements(ps) WITH ORDINALITY AS e(p, i)
  ), j AS (
    INSERT INTO jobs (reference, category_code, asset_id, geom, ward_id, street, priority, status, triage_reason,
                      sla_policy, sla_started_at, due_at, risk_at, paused_seconds, demand_count, flags,
                      dispatch_count, description, created_at, updated_at)
    SELECT x.jref, x.p->>'category', (x.jb->>'asset_id')::bigint, x.pt, (x.jb->>'ward_id')::int, x.jb->>'street',
           x.jb->>'priority', x.jb->>'status', x.jb->>'triage_reason', x.jb->'sla_policy', x.now_,
           (x.jb->>'due_at')::timestamptz, (x.jb->>'risk_at')::timestamptz, 0, 1, '[]'::jsonb, 0,
           x.jb->>'description', x.now_, x.now_
      FROM x ORDER BY x.i
    RETURNING id, reference, status, priority, ward_id, street, due_at, demand_count, triage_reason
  ), xj AS MATERIALIZED (
    SELECT x.*, j.id AS job_id, j.status, j.priority, j.ward_id, j.street, j.due_at, j.demand_count,
           j.triage_reason, kerbside_reference('R', nextval('report_reference_seq')) AS rref
      FROM x JOIN j ON j.reference = x.jref ORDER BY x.i
  ), a AS MATERIALIZED (
    SELECT xj.*, (xj.p->'answer') || jsonb_build_object('reference', xj.rref, 'job', (xj.p->'answer'->'job')
             || jsonb_build_object('reference', xj.jref, 'status', xj.status, 'priority', xj.priority,
                                   'ward', (SELECT name FROM areas WHERE id = xj.ward_id), 'street', xj.street,
                                   'due_at', xj.due_at, 'attached', false, 'demand_count', xj.demand_count,
                                   'triage_reason', xj.triage_reason)) AS answer,
           jsonb_build_object('report', xj.rref) || (xj.p->'received_data') AS received
      FROM xj
  ), r AS (
    INSERT INTO reports (reference, client_id, payload_hash, category_code, channel, geom, lat, lon, accuracy_m,
                         location_provider, mock_location, observed_at, received_at, asset_hint, description,
                         answers, asset_id, snap_distance_m, runner_up_asset_id, runner_up_distance_m,
                         snap_confidence, ward_id, street, job_id, token_id, reporter, external_id, response)
    SELECT a.rref, (a.rep->>'client_id')::uuid, a.rep->>'payload_hash', a.p->>'category', a.rep->>'channel', a.pt,
           (a.rep->>'lat')::float8, (a.rep->>'lon')::float8, (a.rep->>'accuracy_m')::float8,
           a.rep->>'location_provider', (a.rep->>'mock_location')::boolean, (a.rep->>'observed_at')::timestamptz,
           a.now_, a.rep->>'asset_hint', a.rep->>'description', a.rep->'answers', (a.rep->>'asset_id')::bigint,
           (a.rep->>'snap_distance_m')::float8, (a.rep->>'runner_up_asset_id')::bigint,
           (a.rep->>'runner_up_distance_m')::float8, (a.rep->>'snap_confidence')::float8, (a.rep->>'ward_id')::int,
           a.rep->>'street', a.job_id, (a.rep->>'token_id')::int, a.rep->'reporter', a.rep->>'external_id', a.answer
      FROM a ORDER BY a.i
    RETURNING id, reference
  ), spec AS (
    -- each job's timeline: report_received, then the job's opening events as the API listed them
    SELECT a.i, a.job_id, 0::bigint AS ord, 'report_received'::text AS type, a.p->>'actor' AS actor,
           a.p->>'actor_role' AS role, a.pt AS geom, NULL::jsonb AS before, NULL::jsonb AS after, a.received AS data,
           NULL::text AS note, false AS notify, a.now_
      FROM a
    UNION ALL
    SELECT a.i, a.job_id, e.ord, e.v->>'type', e.v->>'actor', e.v->>'actor_role',
           CASE WHEN (e.v->>'with_geom')::boolean THEN a.pt END, nullif(e.v->'before', 'null'::jsonb),
           nullif(e.v->'after', 'null'::jsonb), coalesce(nullif(e.v->'data', 'null'::jsonb), '{}'::jsonb),
           e.v->>'note', (e.v->>'notify')::boolean, a.now_
      FROM a, jsonb_array_elements(a.p->'opening_events') WITH ORDINALITY AS e(v, ord)
  ), ev AS (
    INSERT INTO job_events (job_id, type, at, actor, actor_role, geom, before, after, data, note)
    SELECT s.job_id, s.type, s.now_, s.actor, s.role, s.geom, s.before, s.after, s.data, s.note
      FROM spec s ORDER BY s.i, s.ord
    RETURNING id, job_id, type
  ), ob AS (
    INSERT INTO outbox_messages (destination, topic, job_id, payload, idempotency_key, state, attempts,
                                 next_attempt_at, created_at)
    SELECT a.p->'dispatch'->>'destination', a.p->'dispatch'->>'topic', a.job_id,
           jsonb_build_object('job', a.jref, 'category', a.p->>'category'), 'dispatch:' || a.jref, 'pending', 0,
           now(), now()
      FROM a ORDER BY a.i
    ON CONFLICT (idempotency_key) DO NOTHING
  )
  -- the NOTIFYs: one for each event the listeners want (SSE, the live board), then the outbox worker's wake-up
  SELECT jsonb_agg(jsonb_build_object(
           'report_id', r.id, 'job_id', a.job_id, 'attached', false, 'attached_event_id', NULL,
           'subscriptions', NULL, 'answer', a.answer,
           'notify', coalesce((SELECT jsonb_agg(jsonb_build_array(a.p->>'event_channel', json_build_object(
                                 'job', a.jref, 'event_id', ev.id, 'type', ev.type, 'status', a.status)::text)
                                 ORDER BY ev.id)
                                 FROM ev JOIN spec s ON s.job_id = ev.job_id AND s.type = ev.type
                                WHERE ev.job_id = a.job_id AND s.notify), '[]'::jsonb)
                     || jsonb_build_array(jsonb_build_array(a.p->>'outbox_channel', '')))
           ORDER BY a.i)
    INTO res FROM a JOIN r ON r.reference = a.rref;
  RETURN res;
END
$fn$"""

BATCH = r"""
CREATE OR REPLACE FUNCTION kerbside_intake_batch(items jsonb) RETURNS text
LANGUAGE plpgsql
-- as kerbside_intake: its plans are kept, and must read jobs by index even if first made while jobs was small
SET enable_seqscan = off
AS $fn$
DECLARE
  n integer := jsonb_array_length(items);
  out jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
  together integer[] := '{}';
  written jsonb;
  k bigint;
  w record;
BEGIN
  FOR i IN 1..n LOOP
    out[i] := kerbside_intake_ready(items->(i - 1));
  END LOOP;
  -- Every lock first, in lock order, so batches never wait on each other in a circle; then the new faults
  -- together, in one subtransaction: if one of them fails, none is kept, and each is written on its own below.
  BEGIN
    FOR k IN SELECT DISTINCT (o.v->'p'->>'lock')::bigint FROM unnest(out) AS o(v) WHERE o.v ? 'p' ORDER BY 1 LOOP
      PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    SELECT coalesce(array_agg(o.i ORDER BY (o.v->'p'->>'lock')::bigint, o.i), '{}') INTO together
      FROM unnest(out) WITH ORDINALITY AS o(v, i)
     WHERE o.v ? 'p' AND o.v->'p'->>'asset_id' IS NOT NULL AND o.v->'p'->'contact' = 'null'::jsonb
       AND (SELECT count(*) FROM unnest(out) AS q(v) WHERE q.v->'p'->'lock' = o.v->'p'->'lock') = 1
       -- "open" as kerbside_intake's duplicate check spells it (ix_jobs_open_asset's predicate)
       AND NOT EXISTS (SELECT 1 FROM jobs j
                        WHERE j.asset_id = (o.v->'p'->>'asset_id')::bigint AND j.category_code = o.v->'p'->>'category'
                          AND j.status NOT IN ('completed', 'closed', 'cancelled', 'duplicate'));
    IF cardinality(together) > 0 THEN
      written := kerbside_intake_new_jobs((SELECT jsonb_agg(out[t]->'p' ORDER BY u.o)
                                             FROM unnest(together) WITH ORDINALITY AS u(t, o)));
    END IF;
  EXCEPTION WHEN unique_violation OR deadlock_detected THEN
    together := '{}';  -- nothing of them stays, and their locks are let go
  END;
  FOR t IN 1..cardinality(together) LOOP
    out[together[t]] := jsonb_build_object('caller', out[together[t]]->'caller', 'written', written->(t - 1));
  END LOOP;
  -- The others one at a time, in lock order, each a subtransaction of its own.
  FOR w IN SELECT o.i, o.v FROM unnest(out) WITH ORDINALITY AS o(v, i)
            WHERE o.v ? 'p' AND o.i <> ALL (together) ORDER BY (o.v->'p'->>'lock')::bigint, o.i LOOP
    BEGIN
      out[w.i] := jsonb_build_object('caller', w.v->'caller', 'written', kerbside_intake(w.v->'p'));
    EXCEPTION WHEN unique_violation OR deadlock_detected THEN
      out[w.i] := jsonb_build_object('declined', SQLSTATE);  -- nothing of this report stays
    END;
  END LOOP;
  RETURN array_to_json(out)::text;
END
$fn$"""

DECLARE = "  notes jsonb;\n"
DECLARE_AFTER = "  notes jsonb;\n  written jsonb;\n"
NEW_JOB = """    -- Numbers into a variable first: kerbside_reference(..., nextval(...)) would be planned on every call.
    n := nextval('job_reference_seq');"""
NEW_JOB_AFTER = """    -- A new job, written as a batch's new jobs are (kerbside_intake_new_jobs): the job, the report, the
    -- timeline and the dispatch message, with the NOTIFYs for them.
    written := kerbside_intake_new_jobs(jsonb_build_array(p))->0;
    j.id := (written->>'job_id')::bigint;
    r_id := (written->>'report_id')::bigint;
    answer := written->'answer';
    notes := written->'notify';"""
SUBS = """  IF attached AND coalesce((p->>'defer_follow_up')::boolean, false) THEN
    subs := '{}';  -- none: an attach they wait for was declined above
  ELSIF attached THEN
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO subs FROM subscriptions s
     WHERE s.active AND s.event_types @> '["report_attached"]'::jsonb;
  ELSE"""
SUBS_AFTER = """    IF coalesce((p->>'defer_follow_up')::boolean, false) THEN
      subs := '{}';  -- none: an attach they wait for was declined above
    ELSE
      SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO subs FROM subscriptions s
       WHERE s.active AND s.event_types @> '["report_attached"]'::jsonb;
    END IF;
  END IF;
"""
# The report and its timeline are now the attach's alone: the new job's events are kerbside_intake_new_jobs's.
ATTACH_ONLY = (
    ("  -- The timeline in one INSERT: report_received, then report_attached or the new job's events; then a\n",
     "  -- The timeline in one INSERT: report_received, then report_attached; then a\n"),
    ("""           jsonb_build_object('demand_count', j.demand_count), received, NULL, true
     WHERE attached
    UNION ALL
    SELECT e.ord, e.v->>'type', e.v->>'actor', e.v->>'actor_role', CASE WHEN (e.v->>'with_geom')::boolean THEN pt END,
           nullif(e.v->'before', 'null'::jsonb), nullif(e.v->'after', 'null'::jsonb),
           coalesce(nullif(e.v->'data', 'null'::jsonb), '{}'::jsonb), e.v->>'note', (e.v->>'notify')::boolean
      FROM jsonb_array_elements(CASE WHEN attached THEN '[]'::jsonb ELSE p->'opening_events' END)
           WITH ORDINALITY AS e(v, ord)
""", """           jsonb_build_object('demand_count', j.demand_count), received, NULL, true
"""),
)


def _previous():
    return migration('0018_intake_autocommit.py')


def intake() -> str:
    """0018's kerbside_intake, writing a new job by kerbside_intake_new_jobs: what was the new job's insert
    becomes that call, and the report, the timeline and the subscriptions below it are the attach's alone."""
    body = _previous().intake()
    attach = body.index("  IF attached THEN\n    UPDATE jobs SET demand_count")
    insert = body.index(NEW_JOB, attach)
    report = body.index("  n := nextval('report_reference_seq');", insert)
    subs = body.index(SUBS, report)
    end = body.index("  END IF;\n", subs) + len("  END IF;\n")
    if body.count(DECLARE) != 1 or body.count(SUBS) != 1 or body[insert:report].count("  END IF;\n") != 1:
        raise RuntimeError("0018's kerbside_intake no longer reads as 0024 expects")
    update = body[body.index("    UPDATE jobs", attach):body.index("  ELSE\n", attach)]
    attached_only = body[report:subs].rstrip("\n")
    for old, new in ATTACH_ONLY:
        if attached_only.count(old) != 1:
            raise RuntimeError("0018's kerbside_intake no longer reads as 0024 expects")
        attached_only = attached_only.replace(old, new)
    attached_only = "".join("  " + line if line.strip() else line for line in attached_only.splitlines(keepends=True))
    return (body[:attach].replace(DECLARE, DECLARE_AFTER)
            + "  IF NOT attached THEN\n" + NEW_JOB_AFTER + "\n  ELSE\n" + update + attached_only + "\n\n"
            + SUBS_AFTER + body[end:])


def upgrade() -> None:
    op.execute(NEW_JOBS)
    op.execute(intake())
    op.execute(BATCH)


def downgrade() -> None:
    op.execute(migration('0022_intake_batch.py').BATCH)
    op.execute(_previous().intake())
    op.execute("DROP FUNCTION kerbside_intake_new_jobs(jsonb)")
