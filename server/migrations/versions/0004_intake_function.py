"""intake: area parts for fast point-in-area tests; the write half of a report as one server-side function

Revision ID: 0004_intake
Revises: 0003_crew
Create Date: 2026-11-22 17:00:00

area_parts: every area cut into pieces of at most 64 vertices (ST_Subdivide), kept in step with `areas` by a
trigger. "Which ward is this point in" on a 400-vertex ward tests every vertex; on its pieces, the GiST index
finds the one small piece that matters (B&NES boundary: 8,166 vertices -> 264 parts, 0.57 ms -> 0.02 ms).

server/reports/service.py decides everything that does not depend on the database's state (validation,
the snapped asset, priority, the SLA deadline, the events' content) and passes it here as one JSON
document. This function does what does depend on it, under one lock: find the open duplicate, open a job or
attach to it, store the report and its timeline, queue the dispatch and send the notifications.
"""
import geoalchemy2
import sqlalchemy as sa
from alembic import op

from server.config import get_settings

SRID = get_settings().srid

revision = '0004_intake'
down_revision = '0003_crew'
branch_labels = None
depends_on = None

# p: lock (bigint), category, asset_id, dup_radius_m, dup_since, geom (EWKT),
#    now, actor, actor_role, job {...} (a new job's columns), report {...} (the report's columns),
#    received_data {...}, opening_events [...] (type, actor, actor_role, before, after, data, note, with_geom,
#    notify), dispatch {destination, topic}, event_channel, outbox_channel, webhook_types (text[]).
INTAKE = r"""
CREATE OR REPLACE FUNCTION kerbside_intake(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  pt geometry := ST_GeomFromEWKT(p->>'geom');
  now_ timestamptz := (p->>'now')::timestamptz;
  j jobs%ROWTYPE;
  attached boolean := false;
  r_ref text;
  r_id bigint;
  ev jsonb;
  ev_id bigint;
  attached_event bigint;
  subs integer[];
  rep jsonb := p->'report';
  jb jsonb := p->'job';
  received jsonb;
BEGIN
  -- One lock per (category, asset) or per category: two reports of one fault never open two jobs.
  PERFORM pg_advisory_xact_lock((p->>'lock')::bigint);
  IF p->>'asset_id' IS NOT NULL THEN
    SELECT * INTO j FROM jobs
     WHERE asset_id = (p->>'asset_id')::bigint AND category_code = p->>'category'
       AND status NOT IN ('completed', 'closed', 'cancelled', 'duplicate')  -- open: ix_jobs_open_asset's predicate
     ORDER BY id LIMIT 1 FOR UPDATE;
  ELSIF (p->>'dup_radius_m')::float8 > 0 THEN
    SELECT * INTO j FROM jobs
     WHERE category_code = p->>'category' AND asset_id IS NULL
       AND status NOT IN ('completed', 'closed', 'cancelled', 'duplicate')  -- open: ix_jobs_open_asset's predicate
       AND created_at >= (p->>'dup_since')::timestamptz
       AND ST_DWithin(geom, pt, (p->>'dup_radius_m')::float8)
     ORDER BY ST_Distance(geom, pt), id LIMIT 1 FOR UPDATE;
  END IF;
  attached := j.id IS NOT NULL;

  r_ref := kerbside_reference('R', nextval('report_reference_seq'));
  received := jsonb_build_object('report', r_ref) || (p->'received_data');

  IF attached THEN
    UPDATE jobs SET demand_count = demand_count + 1, updated_at = now_ WHERE id = j.id RETURNING * INTO j;
  ELSE
    INSERT INTO jobs (reference, category_code, asset_id, geom, ward_id, street, priority, status, triage_reason,
                      sla_policy, sla_started_at, due_at, risk_at, paused_seconds, demand_count, flags,
                      dispatch_count, description, created_at, updated_at)
    VALUES (kerbside_reference('J', nextval('job_reference_seq')), p->>'category', (jb->>'asset_id')::bigint, pt,
            (jb->>'ward_id')::int, jb->>'street', jb->>'priority', jb->>'status', jb->>'triage_reason',
            jb->'sla_policy', now_, (jb->>'due_at')::timestamptz, (jb->>'risk_at')::timestamptz, 0, 1,
            '[]'::jsonb, 0, jb->>'description', now_, now_)
    RETURNING * INTO j;
  END IF;

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
          (rep->>'token_id')::int, rep->'reporter', rep->>'external_id', '{}'::jsonb)  -- answer set by the caller
  RETURNING id INTO r_id;

  INSERT INTO job_events (job_id, type, at, actor, actor_role, geom, before, after, data)
  VALUES (j.id, 'report_received', now_, p->>'actor', p->>'actor_role', pt, NULL, NULL, received);

  IF attached THEN
    INSERT INTO job_events (job_id, type, at, actor, actor_role, before, after, data)
    VALUES (j.id, 'report_attached', now_, p->>'actor', p->>'actor_role',
            jsonb_build_object('demand_count', j.demand_count - 1), jsonb_build_object('demand_count', j.demand_count),
            received)
    RETURNING id INTO attached_event;
    PERFORM pg_notify(p->>'event_channel', json_build_object('job', j.reference, 'event_id', attached_event,
                      'type', 'report_attached', 'status', j.status)::text);
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO subs FROM subscriptions s
     WHERE s.active AND s.event_types @> '["report_attached"]'::jsonb;
  ELSE
    FOR ev IN SELECT * FROM jsonb_array_elements(p->'opening_events') LOOP
      INSERT INTO job_events (job_id, type, at, actor, actor_role, geom, before, after, data, note)
      VALUES (j.id, ev->>'type', now_, ev->>'actor', ev->>'actor_role',
              CASE WHEN (ev->>'with_geom')::boolean THEN pt END,
              nullif(ev->'before', 'null'::jsonb), nullif(ev->'after', 'null'::jsonb),
              coalesce(nullif(ev->'data', 'null'::jsonb), '{}'::jsonb), ev->>'note')
      RETURNING id INTO ev_id;
      IF (ev->>'notify')::boolean THEN
        PERFORM pg_notify(p->>'event_channel', json_build_object('job', j.reference, 'event_id', ev_id,
                          'type', ev->>'type', 'status', j.status)::text);
      END IF;
    END LOOP;
    INSERT INTO outbox_messages (destination, topic, job_id, payload, idempotency_key, state, attempts,
                                 next_attempt_at, created_at)
    VALUES (p->'dispatch'->>'destination', p->'dispatch'->>'topic', j.id,
            jsonb_build_object('job', j.reference, 'category', p->>'category'),
            'dispatch:' || j.reference, 'pending', 0, now(), now())
    ON CONFLICT (idempotency_key) DO NOTHING;
    PERFORM pg_notify(p->>'outbox_channel', '');
  END IF;

  RETURN jsonb_build_object(
    'report_id', r_id, 'report_ref', r_ref, 'attached', attached, 'attached_event_id', attached_event,
    'subscriptions', to_jsonb(subs),
    'job', jsonb_build_object(
      'id', j.id, 'reference', j.reference, 'status', j.status, 'priority', j.priority,
      'asset_id', j.asset_id, 'ward_id', j.ward_id,
      'ward', (SELECT name FROM areas WHERE id = j.ward_id), 'street', j.street,
      'due_at', j.due_at, 'demand_count', j.demand_count, 'triage_reason', j.triage_reason));
END
$fn$;
"""

# J-001234: at least six digits, never truncated (lpad would cut 1234567 to 123456).
REFERENCE = r"""
CREATE OR REPLACE FUNCTION kerbside_reference(prefix text, n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT prefix || '-' || CASE WHEN n < 1000000 THEN to_char(n, 'FM000000') ELSE n::text END
$fn$;
"""


AREA_PARTS_SYNC = r"""
CREATE OR REPLACE FUNCTION kerbside_area_parts_sync() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM area_parts WHERE area_id = OLD.id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO area_parts (area_id, kind, geom) SELECT NEW.id, NEW.kind, ST_Subdivide(NEW.geom, 64);
  END IF;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER tr_areas_parts AFTER INSERT OR DELETE OR UPDATE OF kind, geom ON areas
  FOR EACH ROW EXECUTE FUNCTION kerbside_area_parts_sync();
"""


def upgrade() -> None:
    op.create_table(
        'area_parts',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('area_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('geom', geoalchemy2.types.Geometry(geometry_type='POLYGON', srid=SRID, dimension=2,
                                                     spatial_index=False, from_text='ST_GeomFromEWKT',
                                                     name='geometry', nullable=False), nullable=False),
        sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_area_parts_area_id_areas'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_area_parts')),
    )
    op.create_index('ix_area_parts_kind_geom', 'area_parts', ['kind', 'geom'], unique=False,
                    postgresql_using='gist')
    op.create_index('ix_area_parts_area_id', 'area_parts', ['area_id'], unique=False)
    op.execute(AREA_PARTS_SYNC)
    op.execute("INSERT INTO area_parts (area_id, kind, geom) SELECT id, kind, ST_Subdivide(geom, 64) FROM areas")
    op.execute(REFERENCE)
    op.execute(INTAKE)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS tr_areas_parts ON areas")
    op.execute("DROP FUNCTION IF EXISTS kerbside_area_parts_sync()")
    op.drop_table('area_parts')
    op.execute("DROP FUNCTION IF EXISTS kerbside_intake(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS kerbside_reference(text, bigint)")
