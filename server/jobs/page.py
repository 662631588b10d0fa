"""The job page (GET /api/v1/jobs/{reference}) in one statement, answered as bytes.

One round trip does what took six through the ORM: the token lookup (deps.Caller, judged in Python exactly as
current_principal would), the visibility rule of jobs.access.visible for that token, the job with its joined
names, and the timeline, reports and photos built as JSON arrays by PostgreSQL. Python adds what depends on the
clock and on the wording rules (status in words, SLA state, the deadline in words) through the same helpers as
the list rows (views.summary_fields, views.sla_view), and splices the arrays into the answer unparsed
(orjson.Fragment). views.job_page is the same page through the ORM; tests/server/test_job_page.py holds the two
equal, key order and types included, for every role.

Datetimes and floats in the arrays are written as Python writes them: isoformat() (microseconds only when
there are some, the offset as +HH:MM in the session's time zone, as psycopg hands them to Python), and 5.0 for
a whole float. Only whitespace differs (PostgreSQL puts a space after a jsonb member's colon and comma, and a
newline between the elements of an array).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from types import SimpleNamespace

import orjson
from psycopg.pq import TransactionStatus
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from server.deps import Caller
from server.errors import NotFound
from server.geo import WGS84
from server.jobs.access import SEE_ALL
from server.jobs.views import sla_view, summary_fields


def _iso(column: str) -> str:
    """SQL: a timestamptz as datetime.isoformat() writes it (NULL stays NULL)."""
    return f"""replace(to_char({column},'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM'),'.000000','')"""


def _float(column: str) -> str:
    """SQL: a float8 as JSON the way Python writes a float (5.0, not PostgreSQL's 5; NULL stays NULL)."""
    return rf"regexp_replace({column}::text,'^-?\d+$','\&.0')::json"


_SEE_ALL = ", ".join(f"'{r}'" for r in SEE_ALL)
_TIMES = ("due_at", "created_at", "updated_at", "resolved_at", "on_hold_since", "sla_started_at")
_FLOATS = ("paused_seconds", "lon", "lat", "asset_lon", "asset_lat")

# :token_hash and :reference. `caller` is deps.Caller's token lookup; `who` is the same token row again, for the
# visibility rule (jobs.access.visible) and whether reporters are shown. Its liveness (revoked, expired) is
# judged in Python from `caller` before anything of the job is used.
# `job`: the job's columns and joined names as summary_select() names them (PostgreSQL's JSON: views turn
# them into the page). `timeline`, `reports`, `photos`: the page's arrays as views.job_page writes them, ready
# to send; a report's reporter (jsonb, never NULL) is appended as its last member for the roles that see it.
# Whitespace is squeezed out below: psycopg caches its parsing of a statement of up to 4,096 characters only.
_PAGE = f"""
SELECT {Caller.column} AS caller, p.*
FROM (SELECT t.id, t.role, t.contractor_id, t.crew_id, t.role IN ({_SEE_ALL}) AS see_all
      FROM api_tokens t WHERE t.token_hash = :token_hash) who
LEFT JOIN LATERAL (
  SELECT (SELECT row_to_json(x) FROM (SELECT j.reference, j.category_code, j.status, j.priority, j.street,
            j.contractor_ref, j.demand_count, j.triage_reason, j.sla_policy, j.paused_seconds, j.description,
            j.asset_id, {", ".join("j." + c for c in _TIMES)}, ST_X(g.j) lon, ST_Y(g.j) lat,
            a.external_ref asset_ref, a.name asset_name, al.name layer, ST_X(g.a) asset_lon, ST_Y(g.a) asset_lat,
            ar.name ward, c.name crew, c.title crew_title, k.name contractor, k.title contractor_title) x) job,
    (SELECT coalesce(json_agg(x ORDER BY x.id DESC),'[]')::text
     FROM (SELECT e.id, e.type, {_iso("e.at")} at, e.actor, e.actor_role, e.before, e.after, e.data, e.note
           FROM job_events e WHERE e.job_id=j.id) x) timeline,
    (SELECT coalesce(json_agg(CASE WHEN who.see_all
                                   THEN (left(row_to_json(x)::text,-1)||',"reporter":'||r.reporter||'}}')::json
                                   ELSE row_to_json(x) END ORDER BY r.id),'[]')::text
     FROM reports r, LATERAL (SELECT r.reference, r.channel, {_iso("r.observed_at")} observed_at,
       {_iso("r.received_at")} received_at, r.description, r.answers, {_float("r.lat")} lat, {_float("r.lon")} lon,
       {_float("r.accuracy_m")} accuracy_m, {_float("r.snap_distance_m")} snap_distance_m,
       {_float("r.snap_confidence")} snap_confidence) x
     WHERE r.job_id=j.id) reports,
    (SELECT coalesce(json_agg(x ORDER BY x.id),'[]')::text
     FROM (SELECT f.id, f.client_id, f.kind, f.content_type, f.width, f.height, f.size_bytes,
             '/api/v1/photos/'||f.id url, '/api/v1/photos/'||f.id||'?thumbnail=true' thumbnail_url,
             {_iso("f.created_at")} created_at
           FROM photos f WHERE f.job_id=j.id) x) photos
  FROM jobs j
  LEFT JOIN assets a ON a.id=j.asset_id
  LEFT JOIN asset_layers al ON al.id=a.layer_id
  LEFT JOIN areas ar ON ar.id=j.ward_id
  LEFT JOIN crews c ON c.id=j.crew_id
  LEFT JOIN contractors k ON k.id=j.contractor_id
  CROSS JOIN LATERAL (SELECT ST_Transform(ST_PointOnSurface(j.geom),{WGS84}) j,
                             ST_Transform(ST_PointOnSurface(a.geom),{WGS84}) a) g
  WHERE j.reference=:reference
    AND (who.see_all OR (who.role='contractor' AND j.contractor_id=who.contractor_id)
         OR (who.role='crew' AND j.crew_id=who.crew_id)
         OR (who.role='field_worker'
             AND EXISTS (SELECT 1 FROM reports m WHERE m.job_id=j.id AND m.token_id=who.id)))
) p ON true
"""
PAGE = text(re.sub(r"\s+", " ", _PAGE).strip())


# psycopg's form of the statement (%(name)s parameters), sent as it is: prepared by psycopg on each pooled
# connection after a few executions.
SQL = str(PAGE.compile(dialect=psycopg_dialect()))


def fetch(session: Session, token_hash: str, reference: str):
    """The one statement's row as a tuple (caller, job, timeline, reports, photos); None for an unknown token
    (no row at all). The only database access of the page.

    A session of our own engine that has not begun reads on a connection of its engine's pool, in autocommit:
    one statement needs no transaction, and psycopg would otherwise spend a round trip on BEGIN and another on
    COMMIT (a ROLLBACK would also drop psycopg's prepared statements and their counts, so this statement would
    never be prepared). A session that joined a transaction already open on its connection (the tests') reads
    inside it.
    """
    params = {"token_hash": token_hash, "reference": reference}
    bind = session.get_bind()
    if not isinstance(bind, Engine) or session.in_transaction():
        return _execute(session.connection(), params)
    with bind.connect() as conn:  # closing it hands the connection back to the pool
        return _execute(conn, params, autocommit=True)


def _execute(conn: Connection, params: dict, *, autocommit: bool = False):
    """The statement on the connection's driver connection, without SQLAlchemy's result machinery (which cost
    more than the rest of the request's database work), its errors raised as SQLAlchemy's would be (DataError,
    OperationalError… for server.errors), a lost connection invalidated as SQLAlchemy does. With `autocommit`,
    the connection is left as it was found (a broken one is not: it is invalidated)."""
    driver = conn.connection.driver_connection
    try:
        if autocommit:
            driver.autocommit = True
        try:
            return driver.execute(SQL, params, prepare=True).fetchone()
        finally:
            if autocommit and driver.info.transaction_status == TransactionStatus.IDLE:
                driver.autocommit = False
    except conn.dialect.loaded_dbapi.Error as exc:
        gone = conn.dialect.is_disconnect(exc, driver, None)
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(SQL, params, exc, conn.dialect.loaded_dbapi.Error, hide_parameters=True,
                                  connection_invalidated=gone, dialect=conn.dialect) from exc


async def fetch_async(pool, token_hash: str, reference: str):
    """fetch() on a connection of the API's async psycopg pool (server/db.py open_async_pool): in autocommit,
    prepared, no thread and no ORM (the pool's connections are in autocommit)."""
    async with pool.connection() as conn:
        cur = await conn.execute(SQL, {"token_hash": token_hash, "reference": reference}, prepare=True)
        return await cur.fetchone()


def job_page_json(session: Session, caller: Caller, reference: str) -> bytes:
    """The caller's page of this job as JSON bytes: 401 / 403 as current_principal would answer, 404 when there
    is no such job or it is not theirs to see."""
    return page_of(fetch(session, caller.digest, reference), caller, reference)


async def job_page_json_async(pool, caller: Caller, reference: str) -> bytes:
    """job_page_json on the API's async pool."""
    return page_of(await fetch_async(pool, caller.digest, reference), caller, reference)


def page_of(row, caller: Caller, reference: str) -> bytes:
    """The page from the statement's row (None for an unknown token), the caller judged first."""
    caller.resolve(row[0] if row is not None else None)
    if row[1] is None:
        raise NotFound(f"no job {reference!r}", fields=["reference"], code="job-not-found")
    job = SimpleNamespace(**row[1])
    for k in _TIMES:  # PostgreSQL's JSON writes a time to the microsecond, the offset as in the session
        if (v := getattr(job, k)) is not None:
            setattr(job, k, datetime.fromisoformat(v))
    for k in _FLOATS:  # and a whole float as an integer
        if (v := getattr(job, k)) is not None:
            setattr(job, k, float(v))
    now = datetime.now(timezone.utc)
    page = summary_fields(job, job)
    page["sla"] = sla_view(job, now)
    page["description"] = job.description
    if job.asset_id:
        page["asset"].update(lat=round(job.asset_lat, 6), lon=round(job.asset_lon, 6))
    page["timeline"] = orjson.Fragment(row[2])
    page["reports"] = orjson.Fragment(row[3])
    page["photos"] = orjson.Fragment(row[4])
    return orjson.dumps(page)
