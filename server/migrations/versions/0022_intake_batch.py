"""intake: the reports waiting in an API process go to the database together, one statement and one commit

Revision ID: 0022_intake_batch
Revises: 0021_dispatch_queue_index
Create Date: 2026-12-07 18:30:00

The API took a report in two statements, each a round trip: where the point is (kerbside_locate, with the retry
lookup and the token lookup riding on it), then the write (kerbside_intake), with the snap choice in Python
between the two. kerbside_intake_batch takes the reports waiting in one API process together (group commit,
server/reports/batch.py) and does both for each of them in one statement and one commit:

1. for each report, kerbside_intake_ready: where it is, whether it is a retry, who sent it, and the asset it is
   about (the nearest lamp column within the category's radius, its runner-up and the confidence, as
   server/assets/snapping.py chooses them); then it fills those into the kerbside_intake parameter the API
   built, whose every other member the API worked out as before. A report this path does not take whole is
   declined with the reason, before anything is written for it: a retry, a token that is not certainly live
   for the route, a point outside the area, a layer not loaded, no asset within the radius (triage). The API
   then takes it by the two-statement path, which answers each of those as it always has;
2. the writes, in order of their duplicate-check lock: every batch takes its advisory locks in the same order,
   so two batches never wait on each other in a circle. Each report is a subtransaction of its own: a race
   for its client_id (unique_violation) or a deadlock on a lock taken outside the intake declines that report
   alone, and the others commit.

kerbside_intake_key is the duplicate check's lock key, computed as server/reports/service.py _lock_key does
(the first 8 bytes of the MD5 of "category:asset", signed), so reports taken by either path share the lock.
kerbside_snap_confidence is snapping.confidence, rounded as snapping.rounded rounds; kerbside_float_json writes a
float into JSON as the API does (1.0, not 1). tests/server/test_intake_batch.py holds each to the Python it mirrors.
"""

from alembic import op

revision = '0022_intake_batch'
down_revision = '0021_dispatch_queue_index'
branch_labels = None
depends_on = None

KEY = """
CREATE OR REPLACE FUNCTION kerbside_intake_key(p_category text, p_asset_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT ('x' || substr(md5(p_category || ':' || coalesce(p_asset_id::text, '-')), 1, 16))::bit(64)::bigint
$fn$"""

FLOAT = """
CREATE OR REPLACE FUNCTION kerbside_float_json(x float8) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  -- a float as the API writes one in JSON (orjson): 1.0, not 1
  SELECT CASE WHEN x = trunc(x) AND abs(x) < 1e15 THEN to_jsonb(round(x::numeric, 1)) ELSE to_jsonb(x) END
$fn$"""

CONFIDENCE = """
CREATE OR REPLACE FUNCTION kerbside_snap_confidence(d1 float8, d2 float8, accuracy_m float8, radius_m float8)
RETURNS float8 LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  sigma float8 := greatest(coalesce(accuracy_m, 0.0), 3.0);
  distance_factor float8;
  separation_factor float8 := 1.0;
  gap float8;
BEGIN
  IF d1 <= sigma THEN
    distance_factor := 1.0;
  ELSE
    distance_factor := greatest(0.0, 1.0 - (d1 - sigma) / greatest(radius_m, 1e-6));
  END IF;
  IF d2 IS NOT NULL THEN
    -- PostgreSQL raises where Python's float gives 0: a quotient too small for a float8 (a runner-up a hair
    -- further), and exp() of a large negative (a runner-up kilometres off), whose half is lost against 1.0.
    gap := greatest(d2 - d1, 0.0);
    separation_factor := CASE WHEN gap < 1e-300 THEN 0.5 WHEN gap / sigma > 700 THEN 1.0
                              ELSE 1.0 - 0.5 * exp(-gap / sigma) END;
  END IF;
  RETURN round(greatest(0.0, least(1.0, distance_factor * separation_factor))::numeric, 3)::float8;
END
$fn$"""

READY = """
CREATE OR REPLACE FUNCTION kerbside_intake_ready(it jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  p jsonb := it->'p';
  l record;
  caller jsonb;
  ranked jsonb[];
  c jsonb;
  r jsonb;
  d float8;
  d2 float8;
  radius float8 := (it->>'radius_m')::float8;
  conf jsonb;
  runner jsonb;
  job jsonb;
  rep jsonb;
  events jsonb;
  answer jsonb;
  role text;
  actor text;
  chan text;
  asset bigint;
BEGIN
  SELECT * INTO l FROM kerbside_locate((it->>'lon')::float8, (it->>'lat')::float8, (it->>'srid')::int,
                                       coalesce(it->>'layer', ''));
  IF kerbside_replay((it->>'client_id')::uuid) IS NOT NULL THEN
    RETURN jsonb_build_object('declined', 'retry');
  END IF;
  SELECT jsonb_build_object('id', t.id, 'name', t.name, 'role', t.role, 'contractor_id', t.contractor_id,
                            'crew_id', t.crew_id, 'token_hash', t.token_hash, 'revoked_at', t.revoked_at,
                            'expires_at', t.expires_at)
    INTO caller FROM api_tokens t WHERE t.token_hash = it->>'token_hash';
  role := caller->>'role';
  -- Live, for this route, and still live a minute from now, whatever the API's clock says: the API judges the
  -- caller again from this row after the write, and must come to the same answer.
  IF caller IS NULL OR caller->>'revoked_at' IS NOT NULL
     OR (caller->>'expires_at')::timestamptz <= (p->>'now')::timestamptz + interval '1 minute'
     OR role = 'open311_client' OR NOT (role = 'admin' OR it->'roles' ? role)
     OR NOT (it->'channels' ? role) THEN
    RETURN jsonb_build_object('declined', 'caller');
  END IF;
  IF NOT l.inside THEN
    RETURN jsonb_build_object('declined', 'out-of-area');
  END IF;
  actor := role || ':' || (caller->>'name');
  chan := it->'channels'->>role;
  -- The members to fill in, built small and put into p once at the end (each change of p copies all of it).
  job := jsonb_build_object('ward_id', l.ward_id, 'street', l.street);
  rep := jsonb_build_object('channel', chan, 'ward_id', l.ward_id, 'street', l.street,
                            'token_id', (caller->>'id')::int);
  events := jsonb_set(p->'opening_events', '{0}', (p->'opening_events'->0)
                                                  || jsonb_build_object('actor', actor, 'actor_role', role));
  answer := (p->'answer') || jsonb_build_object('channel', chan);
  IF it->>'layer' IS NOT NULL THEN
    ranked := ARRAY(SELECT value FROM jsonb_array_elements(l.candidates::jsonb));  -- by distance, then id
    IF l.layer_id IS NULL OR cardinality(ranked) = 0 OR (ranked[1]->>2)::float8 > radius THEN
      RETURN jsonb_build_object('declined', 'snap');
    END IF;
    c := ranked[1];
    d := (c->>2)::float8;
    asset := (c->>0)::bigint;
    IF cardinality(ranked) > 1 THEN
      r := ranked[2];
      d2 := (r->>2)::float8;
      runner := jsonb_build_object('ref', r->>1, 'distance_m', round(d2::numeric, 1));
    ELSE
      runner := 'null'::jsonb;
    END IF;
    conf := kerbside_float_json(kerbside_snap_confidence(d, d2, (it->>'accuracy_m')::float8, radius));
    job := job || jsonb_build_object('asset_id', asset);
    rep := rep || jsonb_build_object('asset_id', asset, 'snap_distance_m', kerbside_float_json(d),
                                     'runner_up_asset_id', (r->>0)::bigint,
                                     'runner_up_distance_m', kerbside_float_json(d2), 'snap_confidence', conf);
    events := jsonb_set(events, '{1,data}', (events->1->'data') || jsonb_build_object(
                'asset', c->>1, 'distance_m', round(d::numeric, 1), 'confidence', conf, 'runner_up', runner));
    answer := answer || jsonb_build_object(
                'job', (answer->'job') || jsonb_build_object('asset', (answer->'job'->'asset') || jsonb_build_object(
                   'ref', c->>1, 'distance_m', round(d::numeric, 1), 'name', c->3)),
                'snap', jsonb_build_object('confidence', conf, 'reason', answer->'snap'->'reason', 'runner_up', runner));
  END IF;
  RETURN jsonb_build_object('caller', caller, 'p', p || jsonb_build_object(
    'actor', actor, 'actor_role', role, 'geom', l.ewkt, 'asset_id', asset,
    'lock', kerbside_intake_key(p->>'category', asset), 'job', (p->'job') || job,
    'received_data', (p->'received_data') || jsonb_build_object('channel', chan),
    'report', (p->'report') || rep, 'opening_events', events, 'answer', answer));
END
$fn$"""

BATCH = """
CREATE OR REPLACE FUNCTION kerbside_intake_batch(items jsonb) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  n integer := jsonb_array_length(items);
  out jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
  w record;
BEGIN
  FOR i IN 1..n LOOP
    out[i] := kerbside_intake_ready(items->(i - 1));
  END LOOP;
  -- The writes in lock order, so batches never wait on each other in a circle.
  FOR w IN SELECT o.i, o.v FROM unnest(out) WITH ORDINALITY AS o(v, i)
            WHERE o.v ? 'p' ORDER BY (o.v->'p'->>'lock')::bigint, o.i LOOP
    BEGIN
      out[w.i] := jsonb_build_object('caller', w.v->'caller', 'written', kerbside_intake(w.v->'p'));
    EXCEPTION WHEN unique_violation OR deadlock_detected THEN
      out[w.i] := jsonb_build_object('declined', SQLSTATE);  -- nothing of this report stays
    END;
  END LOOP;
  RETURN array_to_json(out)::text;
END
$fn$"""


def upgrade() -> None:
    for sql in (KEY, FLOAT, CONFIDENCE, READY, BATCH):
        op.execute(sql)


def downgrade() -> None:
    op.execute("DROP FUNCTION kerbside_intake_batch(jsonb)")
    op.execute("DROP FUNCTION kerbside_intake_ready(jsonb)")
    op.execute("DROP FUNCTION kerbside_snap_confidence(float8, float8, float8, float8)")
    op.execute("DROP FUNCTION kerbside_float_json(float8)")
    op.execute("DROP FUNCTION kerbside_intake_key(text, bigint)")
