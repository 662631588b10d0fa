"""intake: the write path's plans stay on their indexes from the first report; the replay check as a function

Revision ID: 0005_intake_plans
Revises: 0004_intake
Create Date: 2026-11-22 19:30:00

A new installation starts with empty jobs and reports tables. A connection plans its statements once and keeps
the plan (PL/pgSQL, psycopg's prepared statements and the foreign-key checks all do), and a plan made when
`jobs` held a handful of rows reads the whole table. Measured with pgbench from empty: kerbside_intake went
from 2.3 to 7.7 ms within 30 s as the tables grew, until autoanalyze happened to invalidate the plans. Every
read in these functions is a lookup by key or by a spatial index, so they run with `enable_seqscan = off`:
plans made inside them (the foreign-key checks' included) use the index however small the table is. With
it, the same run held 0.95-1.0 ms throughout. They also run with `jit = off`: a read with no index to use
(the few webhook subscriptions) then carries the seq scan's penalty cost, which would otherwise set off
JIT compilation, 30-80 ms on every attach.

kerbside_reference is now inlined where it is called: it used to_char, which is only STABLE, so PostgreSQL
ran the IMMUTABLE SQL function through its SQL-function executor, parsing and planning it on every call (9 %
of kerbside_intake's time). It pads with lpad instead, and kerbside_intake takes the sequence numbers into a
variable first (a volatile argument used twice cannot be inlined either).
"""

from alembic import op

from server.migrations.earlier import migration

revision = '0005_intake_plans'
down_revision = '0004_intake'
branch_labels = None
depends_on = None

# The same contract as 0004's kerbside_intake (parameters and result are described there).
INTAKE = r"""CREATE OR REPLACE FUNCTION kerbside_intake(p jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
  pt geometry := ST_GeomFromEWKT(p->>'geom');
  now_ timestamptz := (p->>'now')::timestamptz;
  j jobs%ROWTYPE;
  attached boolean;
  r_ref text;
  n bigint;
  r_id bigint;
  attached_event bigint;
  subs integer[];
  rep jsonb := p->'report';
  jb jsonb := p->'job';
  received jsonb;
  answer jsonb;
  notified integer;
BEGIN
  -- One lock per (category, asset) or per category: two reports of one fault never open two jobs.
  PERFORM pg_advisory_xact_lock((p->>'lock')::bigint);
  -- "Open" is spelled as ix_jobs_open_asset's predicate, so the planner can use that index.
  IF p->>'asset_id' IS NOT NULL THEN
    SELECT * INTO j FROM jobs
     WHERE asset_id = (p->>'asset_id')::bigint AND category_code = p->>'category'
       AND status NOT IN ('completed', 'closed', 'cancelled', 'duplicate')
     ORDER BY id LIMIT 1 FOR UPDATE;
  ELSIF (p->>'dup_radius_m')::float8 > 0 THEN
    SELECT * INTO j FROM jobs
     WHERE category_code = p->>'category' AND asset_id IS NULL
       AND status NOT IN ('completed', 'closed', 'cancelled', 'duplicate')
       AND created_at >= (p->>'dup_since')::timestamptz
       AND ST_DWithin(geom, pt, (p->>'dup_radius_m')::float8)
     ORDER BY ST_Distance(geom, pt), id LIMIT 1 FOR UPDATE;
  END IF;
  attached := j.id IS NOT NULL;

  IF attached THEN
    UPDATE jobs SET demand_count = demand_count + 1, updated_at = now_ WHERE id = j.id RETURNING * INTO j;
  ELSE
    -- Numbers into a variable first: kerbside_reference(..., nextval(...)) would be planned on every call.
    n := nextval('job_reference_seq');
    INSERT INTO jobs (reference, category_code, asset_id, geom, ward_id, street, priority, status, triage_reason,
                      sla_policy, sla_started_at, due_at, risk_at, paused_seconds, demand_count, flags,
                      dispatch_count, description, created_at, updated_at)
    VALUES (kerbside_reference('J', n), p->>'category', (jb->>'asset_id')::bigint, pt,
            (jb->>'ward_id')::int, jb->>'street', jb->>'priority', jb->>'status', jb->>'triage_reason',
            jb->'sla_policy', now_, (jb->>'due_at')::timestamptz, (jb->>'risk_at')::timestamptz, 0, 1,
            '[]'::jsonb, 0, jb->>'description', now_, now_)
    RETURNING * INTO j;
  END IF;

  n := nextval('report_reference_seq');
  r_ref := kerbside_reference('R', n);
  received := jsonb_build_object('report', r_ref) || (p->'received_data');
  answer := (p->'answer') || jsonb_build_object('reference', r_ref, 'job', (p->'answer'->'job') || jsonb_build_object(
    'reference', j.reference, 'status', j.status, 'priority', j.priority,
    'ward', (SELECT name FROM areas WHERE id = j.ward_id), 'street', j.street, 'due_at', j.due_at,
    'attached', attached, 'demand_count', j.demand_count, 'triage_reason', j.triage_reason));

  INSERT INTO reports (reference, client_id, payload_hash, category_code, channel, geom, lat, lon, accuracy_m,
                       location_provider, mock_location, observed_at, received_at, asset_hint, description,
                       answers, asset_id, snap_distance_m, runner_up_asset_id, runner_up_distance_m,
                       snap_confidence, ward_id, street, job_id, token_id, reporter, external_id, response)
  VALUES (r_ref, (rep->>'client_id')::uuid, rep->>'payload_hash', p->>'category', rep->>'channel', pt,
          (rep->>'lat')::float8, (rep->>'lon')::float8, (rep->>'accuracy_m')::float8, rep->>'location_provider',
          (rep->>'mock_location')::boolean, (rep->>'observed_at')::timestamptz, now_, rep->>'asset_hint',
          rep->>'description', rep->'answers', (rep->>'asset_id')::bigint, (rep->>'snap_distance_m')::float8,
          (rep->>'runner_up_asset_id')::bigint, (rep->>'runner_up_distance_m')::float8,
          (rep->>'snap_confidence')::float8, (rep->>'ward_id')::int, rep->>'street', j.id,
          (rep->>'token_id')::int, rep->'reporter', rep->>'external_id', answer)
  RETURNING id INTO r_id;

  -- The timeline in one INSERT: report_received, then report_attached or the new job's events; then a
  -- NOTIFY (sent at commit) for each event that listeners (SSE, the live board) want.
  WITH spec AS (
    SELECT 0::bigint AS ord, 'report_received'::text AS type, p->>'actor' AS actor, p->>'actor_role' AS role,
           pt AS geom, NULL::jsonb AS before, NULL::jsonb AS after, received AS data, NULL::text AS note,
           false AS notify
    UNION ALL
    SELECT 1, 'report_attached', p->>'actor', p->>'actor_role', NULL, jsonb_build_object('demand_count', j.demand_count - 1),
           jsonb_build_object('demand_count', j.demand_count), received, NULL, true
     WHERE attached
    UNION ALL
    SELECT e.ord, e.v->>'type', e.v->>'actor', e.v->>'actor_role', CASE WHEN (e.v->>'with_geom')::boolean THEN pt END,
           nullif(e.v->'before', 'null'::jsonb), nullif(e.v->'after', 'null'::jsonb),
           coalesce(nullif(e.v->'data', 'null'::jsonb), '{}'::jsonb), e.v->>'note', (e.v->>'notify')::boolean
      FROM jsonb_array_elements(CASE WHEN attached THEN '[]'::jsonb ELSE p->'opening_events' END)
           WITH ORDINALITY AS e(v, ord)
  ), ins AS (
    INSERT INTO job_events (job_id, type, at, actor, actor_role, geom, before, after, data, note)
    SELECT j.id, s.type, now_, s.actor, s.role, s.geom, s.before, s.after, s.data, s.note FROM spec s ORDER BY s.ord
    RETURNING id, type
  )
  SELECT (SELECT max(ins.id) FROM ins WHERE ins.type = 'report_attached'),
         (SELECT count(*) FROM (SELECT pg_notify(p->>'event_channel', json_build_object(
                                  'job', j.reference, 'event_id', ins.id, 'type', ins.type, 'status', j.status)::text)
                                  FROM ins JOIN spec s ON s.type = ins.type WHERE s.notify) sent)
    INTO attached_event, notified;

  IF attached THEN
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO subs FROM subscriptions s
     WHERE s.active AND s.event_types @> '["report_attached"]'::jsonb;
  ELSE
    INSERT INTO outbox_messages (destination, topic, job_id, payload, idempotency_key, state, attempts,
                                 next_attempt_at, created_at)
    VALUES (p->'dispatch'->>'destination', p->'dispatch'->>'topic', j.id,
            jsonb_build_object('job', j.reference, 'category', p->>'category'),
            'dispatch:' || j.reference, 'pending', 0, now(), now())
    ON CONFLICT (idempotency_key) DO NOTHING;
    PERFORM pg_notify(p->>'outbox_channel', '');
  END IF;

  RETURN jsonb_build_object('report_id', r_id, 'job_id', j.id, 'attached', attached,
                            'attached_event_id', attached_event, 'subscriptions', to_jsonb(subs), 'answer', answer);
END
$fn$;
"""

# J-001234: at least six digits, never truncated (lpad alone would cut 1234567 to 123456). Only IMMUTABLE
# functions inside, so PostgreSQL can inline it.
REFERENCE = r"""
CREATE OR REPLACE FUNCTION kerbside_reference(prefix text, n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT prefix || '-' || CASE WHEN n < 1000000 THEN lpad(n::text, 6, '0') ELSE n::text END
$fn$;
"""

# The stored answer to a retried report (its payload hash and answer), by client_id; null if new.
REPLAY = r"""
CREATE OR REPLACE FUNCTION kerbside_replay(p_client_id uuid) RETURNS json
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET jit = off
AS $fn$
BEGIN
  RETURN (SELECT json_build_array(r.payload_hash, r.response) FROM reports r WHERE r.client_id = p_client_id);
END
$fn$;
"""


def _previous():
    return migration('0004_intake_function.py')


def upgrade() -> None:
    op.execute(REFERENCE)
    op.execute(INTAKE)
    op.execute(REPLAY)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS kerbside_replay(uuid)")
    previous = _previous()
    op.execute(previous.REFERENCE)
    op.execute(previous.INTAKE)
