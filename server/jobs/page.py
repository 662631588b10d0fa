"""The job page (GET /api/v1/jobs/{reference}) in one statement, answered as bytes.

One round trip does what took six through the ORM: the token lookup (deps.Caller, judged in Python exactly as
current_principal would), the visibility rule of jobs.access.visible for that token, the job with its joined
names, and the timeline, reports and photos built as JSON arrays by PostgreSQL. Python adds what depends on the
clock and on the wording rules (status in words, SLA state, the deadline in words) through the same helpers as
the list rows (views.summary_fields, views.sla_view), and splices the arrays into the answer unparsed
(orjson.Fragment). views.job_page is the same page through the ORM; tests/server/test_job_page.py holds the two
equal for every role.

Datetimes and floats in the arrays are written as Python writes them: isoformat() (microseconds only when
there are some, the offset as +HH:MM in the session's time zone, as psycopg hands them to Python), and 5.0 for
a whole float. Only the spacing differs (PostgreSQL's json has spaces after colons and commas).
"""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from server.deps import Caller, Principal
from server.errors import NotFound
from server.geo import WGS84
from server.jobs.access import SEE_ALL
from server.jobs.views import sla_view, summary_fields


def _iso(column: str) -> str:
    """SQL: a timestamptz as datetime.isoformat() writes it (NULL stays NULL)."""
    return f"""replace(to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM'), '.000000', '')"""


def _float(column: str) -> str:
    """SQL: a float8 as JSON the way Python writes a float (5.0, not PostgreSQL's 5)."""
    return (f"CASE WHEN {column} = trunc({column}) AND abs({column}) < 1e15 THEN ({column}::text || '.0')::json "
            f"ELSE to_json({column}) END")


def _lonlat(geom: str, prefix: str = "") -> str:
    """SQL: lon and lat of a stored geometry as geo.lonlat_of gives them, as columns {prefix}lon, {prefix}lat."""
    g = f"ST_Transform(ST_PointOnSurface({geom}), {WGS84})"
    return f"ST_X({g}) AS {prefix}lon, ST_Y({g}) AS {prefix}lat"


_SEE_ALL = ", ".join(f"'{r}'" for r in SEE_ALL)

# The report as views.job_page shows it; `reporter` last, and only for roles that see every job.
_REPORT = """'reference', r.reference, 'channel', r.channel, 'observed_at', {observed}, 'received_at', {received},
             'description', r.description, 'answers', r.answers, 'lat', {lat}, 'lon', {lon},
             'accuracy_m', {accuracy}, 'snap_distance_m', {snap}, 'snap_confidence', {confidence}
          """.format(observed=_iso("r.observed_at"), received=_iso("r.received_at"), lat=_float("r.lat"),
                     lon=_float("r.lon"), accuracy=_float("r.accuracy_m"), snap=_float("r.snap_distance_m"),
                     confidence=_float("r.snap_confidence"))

# :token_hash and :reference. The caller column is deps.Caller's lookup; `who` is the same token row again,
# for the visibility rule (jobs.access.visible) and whether reporters are shown. Its liveness (revoked,
# expired) is judged in Python from the caller column, before anything of the job is used.
PAGE = text(f"""
SELECT {Caller.column} AS caller, p.*
  FROM (SELECT t.id, t.role, t.contractor_id, t.crew_id, t.role IN ({_SEE_ALL}) AS see_all
          FROM api_tokens t WHERE t.token_hash = :token_hash) who
  LEFT JOIN LATERAL (
    SELECT j.reference, j.category_code, j.status, j.priority, j.street, j.contractor_ref, j.due_at,
           j.demand_count, j.triage_reason, j.created_at, j.updated_at, j.resolved_at, j.sla_policy,
           j.paused_seconds, j.on_hold_since, j.sla_started_at, j.description, j.asset_id,
           {_lonlat("j.geom")}, a.external_ref AS asset_ref, a.name AS asset_name, al.name AS layer,
           {_lonlat("a.geom", "asset_")}, ar.name AS ward, c.name AS crew, c.title AS crew_title,
           k.name AS contractor, k.title AS contractor_title,
           (SELECT coalesce(json_agg(json_build_object(
                       'id', e.id, 'type', e.type, 'at', {_iso("e.at")}, 'actor', e.actor,
                       'actor_role', e.actor_role, 'before', e.before, 'after', e.after, 'data', e.data,
                       'note', e.note) ORDER BY e.id DESC), '[]')::text
              FROM job_events e WHERE e.job_id = j.id) AS timeline,
           (SELECT coalesce(json_agg(CASE WHEN who.see_all
                                          THEN json_build_object({_REPORT}, 'reporter', r.reporter)
                                          ELSE json_build_object({_REPORT}) END ORDER BY r.id), '[]')::text
              FROM reports r WHERE r.job_id = j.id) AS reports,
           (SELECT coalesce(json_agg(json_build_object(
                       'id', ph.id, 'client_id', ph.client_id, 'kind', ph.kind, 'content_type', ph.content_type,
                       'width', ph.width, 'height', ph.height, 'size_bytes', ph.size_bytes,
                       'url', '/api/v1/photos/' || ph.id,
                       'thumbnail_url', '/api/v1/photos/' || ph.id || '?thumbnail=true',
                       'created_at', {_iso("ph.created_at")}) ORDER BY ph.id), '[]')::text
              FROM photos ph WHERE ph.job_id = j.id) AS photos
      FROM jobs j
      LEFT JOIN assets a ON a.id = j.asset_id
      LEFT JOIN asset_layers al ON al.id = a.layer_id
      LEFT JOIN areas ar ON ar.id = j.ward_id
      LEFT JOIN crews c ON c.id = j.crew_id
      LEFT JOIN contractors k ON k.id = j.contractor_id
     WHERE j.reference = :reference
       AND (who.see_all
            OR (who.role = 'contractor' AND j.contractor_id = who.contractor_id)
            OR (who.role = 'crew' AND j.crew_id = who.crew_id)
            OR (who.role = 'field_worker'
                AND EXISTS (SELECT 1 FROM reports mine WHERE mine.job_id = j.id AND mine.token_id = who.id)))
  ) p ON true
""")


def fetch(session: Session, token_hash: str, reference: str):
    """The one statement's row (None for an unknown token: no row at all). The only database access here."""
    return _reading(session).execute(PAGE, {"token_hash": token_hash, "reference": reference}).first()


def _reading(session: Session):
    """The session's connection for one read.

    A session of our own engine not yet in a transaction reads in autocommit: one statement needs no
    transaction, and psycopg would otherwise spend a round trip on BEGIN and another on COMMIT (a ROLLBACK
    would also drop psycopg's prepared statements and their counts, so this statement would never be
    prepared). The connection goes back to the pool in its usual isolation level. A session that joined a
    transaction already open on its connection (the tests') reads inside it.
    """
    if isinstance(session.get_bind(), Engine) and not session.in_transaction():
        return session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session.connection()


def job_page_json(session: Session, caller: Caller, reference: str) -> tuple[Principal, bytes]:
    """The caller (401 / 403 as current_principal would answer) and their page of this job as JSON bytes (404
    when there is no such job or it is not theirs to see)."""
    row = fetch(session, caller.digest, reference)
    who = caller.resolve(row.caller if row is not None else None)
    if row.reference is None:
        raise NotFound(f"no job {reference!r}", fields=["reference"], code="job-not-found")
    now = datetime.now(timezone.utc)
    page = summary_fields(row, row)
    page["sla"] = sla_view(row, now)
    page["description"] = row.description
    if row.asset_id:
        page["asset"].update(lat=round(row.asset_lat, 6), lon=round(row.asset_lon, 6))
    page["timeline"] = orjson.Fragment(row.timeline)
    page["reports"] = orjson.Fragment(row.reports)
    page["photos"] = orjson.Fragment(row.photos)
    return who, orjson.dumps(page)
