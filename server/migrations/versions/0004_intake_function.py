"""intake: area parts for fast point-in-area tests; where a point is, and the write half of a report, as functions

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

# p: lock (bigint), category, asset_id, dup_radius_m, dup_since, geom (EWKT), now, actor, actor_role,
#    event_channel, outbox_channel, dispatch {destination, topic}, job {...} (a new job's columns),
#    report {...} (the report's columns), received_data {...} (report_received's data, less the reference),
#    opening_events [...] (a new job's events after report_received: type, actor, actor_role, before, after,
#    data, note, with_geom, notify), answer {...} (the answer, less what only the database knows).
# Returns {report_id, job_id, attached, attached_event_id, subscriptions (ids wanting report_attached), answer}.
INTAKE = r"""
CREATE OR REPLACE FUNCTION kerbside_intake(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  pt geometry := ST_GeomFromEWKT(p->>'geom');
  now_ timestamptz := (p->>'now')::timestamptz;
  j jobs%ROWTYPE;
  attached boolean;
  r_ref text;
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
    INSERT INTO jobs (reference, category_code, asset_id, geom, ward_id, street, priority, status, triage_reason,
                      sla_policy, sla_started_at, due_at, risk_at, paused_seconds, demand_count, flags,
                      dispatch_count, description, created_at, updated_at)
    VALUES (kerbside_reference('J', nextval('job_reference_seq')), p->>'category', (jb->>'asset_id')::bigint, pt,
            (jb->>'ward_id')::int, jb->>'street', jb->>'priority', jb->>'status', jb->>'triage_reason',
            jb->'sla_policy', now_, (jb->>'due_at')::timestamptz, (jb->>'risk_at')::timestamptz, 0, 1,
            '[]'::jsonb, 0, jb->>'description', now_, now_)
    RETURNING * INTO j;
  END IF;

  r_ref := kerbside_reference('R', nextval('report_reference_seq'));
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

# Where a point is, in one call: boundary test, ward (containing, else nearest within 50 m for simplified
# polygon gaps), nearest named street, the layer's id and its 3 nearest assets by KNN. PL/pgSQL so the
# plan is made once per connection and kept (a generic plan: planning this query cost as much as running
# it). Two things keep the KNN on the GiST index, else PostgreSQL sorts the whole layer: the point CTE is
# NOT MATERIALIZED, and the inner ORDER BY is the distance alone (ties are broken outside). The LIMITs are
# literals: with a parameter there, the generic plan stops using the index.
LOCATE = r"""
CREATE OR REPLACE FUNCTION kerbside_locate(p_lon float8, p_lat float8, p_srid integer, p_layer text)
RETURNS TABLE (ewkt text, inside boolean, ward_id integer, ward text, street text, layer_id integer,
               candidates json)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH p AS NOT MATERIALIZED (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326), p_srid) AS g),
    lyr AS (SELECT id FROM asset_layers WHERE name = p_layer),
    roads AS (SELECT id FROM asset_layers WHERE name = 'roads')
    SELECT
      ST_AsEWKT(p.g),
      EXISTS (SELECT 1 FROM area_parts b WHERE b.kind = 'boundary' AND ST_Covers(b.geom, p.g)),
      w.area_id,
      (SELECT name::text FROM areas WHERE id = w.area_id),
      (SELECT s.name::text FROM (SELECT a.name, a.geom <-> p.g AS d FROM assets a
                                  WHERE a.layer_id = (SELECT id FROM roads) AND a.name IS NOT NULL
                                  ORDER BY a.geom <-> p.g LIMIT 4) s
        ORDER BY s.d, s.name LIMIT 1),
      (SELECT id FROM lyr),
      (SELECT coalesce(json_agg(json_build_array(n.id, n.external_ref, n.d, n.name) ORDER BY n.d, n.id), '[]'::json)
         FROM (SELECT * FROM (SELECT a.id, a.external_ref, a.name, ST_Distance(a.geom, p.g) AS d FROM assets a
                               WHERE a.layer_id = (SELECT id FROM lyr)
                               ORDER BY a.geom <-> p.g LIMIT 5) n0
                ORDER BY n0.d, n0.id LIMIT 3) n)
    FROM p
    LEFT JOIN LATERAL (
      SELECT area_id FROM area_parts w WHERE w.kind = 'ward' AND ST_DWithin(w.geom, p.g, 50)
      ORDER BY ST_Distance(w.geom, p.g), area_id LIMIT 1) w ON true;
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
    op.execute(LOCATE)
    op.execute(REFERENCE)
    op.execute(INTAKE)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS tr_areas_parts ON areas")
    op.execute("DROP FUNCTION IF EXISTS kerbside_area_parts_sync()")
    op.drop_table('area_parts')
    op.execute("DROP FUNCTION IF EXISTS kerbside_intake(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS kerbside_reference(text, bigint)")
    op.execute("DROP FUNCTION IF EXISTS kerbside_locate(float8, float8, integer, text)")
