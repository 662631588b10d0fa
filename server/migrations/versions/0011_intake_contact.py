"""intake: the reporter's contact in kerbside_intake's own round trip

Revision ID: 0011_intake_contact
Revises: 0010_road_network
Create Date: 2026-12-07 00:40:00

A report that carries the reporter's contact (issue 14) used to cost a second statement after
kerbside_intake: the contact, the repeat-contact chaser, the "received" messages and the worker's wake-up.
They are now written by kerbside_intake itself when its parameter has a `contact` member (first_name,
last_name, email, phone, notify, consent, token: the unsubscribe token, kinds: the message kinds to queue,
sms_due: when a text may be sent), so such a report costs the same two round trips as any other. The result
gains `contact_id`. Everything else is 0005's function unchanged.
"""
import importlib.util
from pathlib import Path

from alembic import op

revision = '0011_intake_contact'
down_revision = '0010_road_network'
branch_labels = None
depends_on = None

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
  ct jsonb := nullif(p->'contact', 'null'::jsonb);
  contact_id bigint;
  told integer := 0;
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

  -- The reporter's contact (optional), kept apart from the report: a repeat-contact chaser when the same
  -- person (same email or phone) already reported this job, then the contact and its "received" messages,
  -- one outbox row per kind (separate queues, so a text held for quiet hours holds no email).
  IF ct IS NOT NULL THEN
    IF attached AND (ct->>'email' IS NOT NULL OR ct->>'phone' IS NOT NULL) AND EXISTS (
         SELECT 1 FROM reporter_contacts o JOIN reports q ON q.id = o.report_id
          WHERE q.job_id = j.id AND o.erased_at IS NULL
            AND (lower(o.email) = lower(ct->>'email') OR o.phone = ct->>'phone')) THEN
      INSERT INTO chasers (job_id, category_code, channel, kind, actor)
      VALUES (j.id, p->>'category', rep->>'channel', 'repeat_report', p->>'actor');
    END IF;
    INSERT INTO reporter_contacts (report_id, channel, first_name, last_name, email, phone, notify, consent_at,
                                   unsubscribe_token)
    VALUES (r_id, rep->>'channel', ct->>'first_name', ct->>'last_name', ct->>'email', ct->>'phone', ct->>'notify',
            CASE WHEN (ct->>'consent')::boolean THEN now() END, ct->>'token')
    RETURNING id INTO contact_id;
    INSERT INTO outbox_messages (destination, topic, job_id, idempotency_key, next_attempt_at, payload, state,
                                 attempts)
    SELECT 'notify:' || k.kind, 'received', j.id, 'notify:received:' || r_ref || ':' || k.kind,
           CASE k.kind WHEN 'sms' THEN (ct->>'sms_due')::timestamptz ELSE now() END,
           jsonb_build_object('contact_id', contact_id, 'report', r_ref, 'template', 'received', 'kind', k.kind),
           'pending', 0
      FROM jsonb_array_elements_text(ct->'kinds') WITH ORDINALITY AS k(kind, n)
     ORDER BY k.n
    ON CONFLICT (idempotency_key) DO NOTHING;
    GET DIAGNOSTICS told = ROW_COUNT;
    IF told > 0 THEN  -- the same NOTIFY as a new job's dispatch: PostgreSQL sends it once per transaction
      PERFORM pg_notify(p->>'outbox_channel', '');
    END IF;
  END IF;

  RETURN jsonb_build_object('report_id', r_id, 'job_id', j.id, 'attached', attached, 'contact_id', contact_id,
                            'attached_event_id', attached_event, 'subscriptions', to_jsonb(subs), 'answer', answer);
END
$fn$;
"""


def _previous():
    path = Path(__file__).with_name('0005_intake_plans.py')
    spec = importlib.util.spec_from_file_location('kerbside_migration_0005', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute(INTAKE)


def downgrade() -> None:
    op.execute(_previous().INTAKE)
