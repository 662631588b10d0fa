"""Collections and features for OGC API Features: one per asset layer, open jobs and wards, in CRS84.

Who may read what: asset layers and wards are public when `ogc_public_assets` is set (otherwise any
valid token); open jobs need an adviser, supervisor or admin token, and a contractor or crew token
reads only the jobs it holds (server.jobs.access.visible).
A bbox is clipped to the collection's extent before it is projected, so a world-wide bbox never
reaches a projection outside the storage CRS's area.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from server.config import get_settings
from server.deps import Principal
from server.jobs import rules
from server.jobs.access import SEE_ALL, visible
from server.jobs.models import Job
from server.ogc import features
from server.ogc.documents import CollectionInfo
from server.ogc.params import WGS84, Interval, OgcError

JOBS, WARDS = "jobs", "wards"
JOB_ROLES = (*SEE_ALL, "contractor", "crew")
CACHE_SECONDS = 300.0
_cache: dict[str, tuple[float, object]] = {}

# The layers' extents are kept on asset_layers by whoever writes their assets (migration 0012): no scan here.
_LAYERS = text("""
    SELECT l.id, l.name, l.title, l.attribution, l.synthetic, ST_XMin(e.g) AS minx, ST_YMin(e.g) AS miny,
           ST_XMax(e.g) AS maxx, ST_YMax(e.g) AS maxy
      FROM asset_layers l CROSS JOIN LATERAL (
        SELECT ST_Transform(ST_Segmentize(ST_MakeEnvelope(l.extent_xmin, l.extent_ymin, l.extent_xmax,
                                                          l.extent_ymax, :srid), 500), 4326) AS g) e
     ORDER BY l.name""")
_AREAS = text("""
    SELECT ST_XMin(g) AS minx, ST_YMin(g) AS miny, ST_XMax(g) AS maxx, ST_YMax(g) AS maxy FROM (
      SELECT ST_Transform(ST_Segmentize(ST_SetSRID(ST_Extent(geom)::geometry, :srid), 500), 4326) AS g
        FROM areas WHERE kind = :kind) e""")


@dataclass(frozen=True)
class Layer:
    """An asset layer as a collection."""

    id: int
    info: CollectionInfo


def _cached(key: str, compute: Callable[[], object]) -> object:
    # Layers and extents change only on import; five minutes of staleness saves a query per request.
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    value = compute()
    _cache[key] = (time.monotonic() + CACHE_SECONDS, value)
    return value


def _box(row, margin: float = 1e-4) -> tuple[float, float, float, float] | None:
    if row is None or row.minx is None:
        return None
    return (round(row.minx - margin, 6), round(row.miny - margin, 6), round(row.maxx + margin, 6),
            round(row.maxy + margin, 6))


def _layers(session: Session) -> dict[str, Layer]:
    def compute() -> dict[str, Layer]:
        out = {}
        for r in session.execute(_LAYERS, {"srid": get_settings().srid}):
            if r.name in (JOBS, WARDS):
                continue
            words = f"{r.title}. {r.attribution}".strip()
            out[r.name] = Layer(r.id, CollectionInfo(r.name, r.title, words, _box(r)))
        return out
    return _cached("layers", compute)  # type: ignore[return-value]


def _area_box(session: Session, kind: str) -> tuple[float, float, float, float] | None:
    return _cached(f"area:{kind}", lambda: _box(session.execute(  # type: ignore[return-value]
        _AREAS, {"srid": get_settings().srid, "kind": kind}).first()))


def assets_readable(who: Principal | None) -> bool:
    """Asset layers and wards: public by setting, else for any valid token."""
    return who is not None or get_settings().ogc_public_assets


def _wards_info(session: Session) -> CollectionInfo:
    return CollectionInfo(WARDS, "Wards", f"Electoral wards of {get_settings().council_name}",
                          _area_box(session, "ward"))


def _jobs_info(session: Session, who: Principal, temporal: bool = True) -> CollectionInfo:
    # The temporal extent is a scan of the open jobs (min created_at): only the collection documents show it.
    first = session.scalar(select(func.min(Job.created_at)).where(Job.status.in_(rules.OPEN_STATUSES), visible(who))) \
        if temporal else None
    return CollectionInfo(JOBS, "Open jobs", "Jobs not yet completed, closed or cancelled (datetime: created_at)",
                          _area_box(session, "boundary") or _area_box(session, "ward"), (first, None),
                          open_data=False)


def collection_infos(session: Session, who: Principal | None) -> list[CollectionInfo]:
    """The collections this caller may read."""
    out: list[CollectionInfo] = []
    if assets_readable(who):
        out += [layer.info for layer in _layers(session).values()]
        out.append(_wards_info(session))
    if who is not None and who.role in JOB_ROLES:
        out.append(_jobs_info(session, who))
    return out


def collection_info(session: Session, who: Principal | None, collection_id: str, *,
                    temporal: bool = True) -> CollectionInfo:
    """One collection, or 404 (unknown), 401 (needs a token) or 403 (this token may not); `temporal=False` when
    the caller (items, one item) does not show the collection's time extent, which costs a scan of open jobs."""
    if collection_id == JOBS:
        if who is None:
            raise OgcError(401, "Unauthorized", "the jobs collection needs a bearer token")
        if who.role not in JOB_ROLES:
            raise OgcError(403, "Forbidden", f"a {who.role} token may not read jobs")
        return _jobs_info(session, who, temporal)
    known = collection_id == WARDS or collection_id in _layers(session)
    if not known:
        raise OgcError(404, "NotFound", f"no collection {collection_id[:64]!r}")
    if not assets_readable(who):
        raise OgcError(401, "Unauthorized", "asset collections need a bearer token here")
    return _wards_info(session) if collection_id == WARDS else _layers(session)[collection_id].info


def _envelope(bbox, extent) -> tuple[float, float, float, float] | None:
    """The CRS84 bbox clipped to the collection's extent, or None when they do not overlap."""
    if extent is None:
        return None
    minx, miny = max(bbox[0], extent[0]), max(bbox[1], extent[1])
    maxx, maxy = min(bbox[2], extent[2]), min(bbox[3], extent[3])
    if minx > maxx or miny > maxy:
        return None
    return minx, miny, maxx, maxy


def offered_srids() -> list[int]:
    """The CRSs features can be read in (Part 2): CRS84 first, then the storage CRS."""
    storage = get_settings().srid
    return [WGS84] if storage == WGS84 else [WGS84, storage]


_DIALECT = postgresql.psycopg.dialect()


def _sql(clause) -> str:
    """SQL text of a condition (values written in: they are ids and constants, not the caller's words)."""
    return str(clause.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))


@lru_cache(maxsize=1024)
def _visible(who: Principal) -> str:
    """server.jobs.access.visible(who) as SQL text, made once per caller."""
    return _sql(visible(who))


@lru_cache(maxsize=1)
def _open_jobs() -> str:
    return _sql(Job.status.in_(rules.OPEN_STATUSES))


def _source(session: Session, who: Principal | None, info: CollectionInfo,
            srid: int) -> tuple[features.FeatureSql, list[str], dict]:
    """A collection's feature SQL, the conditions of its rows and the parameters of both; also readies the
    transaction for the statement that follows (_prepare)."""
    if info.id == JOBS:
        titles = _prepare(session, features.TITLES)
        return (features.jobs(srid), [_visible(who), _open_jobs()],
                {"words": features.job_words(tuple(titles or ()))})
    _prepare(session)
    if info.id == WARDS:
        return features.wards(srid), ["areas.kind = 'ward'"], {}
    return (features.assets(srid), ["assets.layer_id = %(layer_id)s"],
            {"layer_id": _layers(session)[info.id].id, "layer_name": info.id})


def _prepare(session: Session, also: str = "NULL"):
    """For this transaction: no JIT and no parallel workers, since a feature page's statement costs enough for
    the planner to JIT-compile it (~45 ms, more than it runs) and to start workers for its bbox scans (~20 ms
    each on a busy machine) for a thousand rows; and a plan made for this bbox every time. The driver prepares
    a statement run often, and PostgreSQL then settles on a generic plan, made without the bbox: one that
    suits the small bboxes it has seen (a GiST index scan) took minutes over a county-wide bbox of 1M jobs.
    In the same round trip, the value of the SQL `also` (returned)."""
    return session.connection().exec_driver_sql(
        "SELECT set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true), "
        f"set_config('plan_cache_mode', 'force_custom_plan', true), {also}").one()[3]


@dataclass(frozen=True)
class Page:
    """A page of features: their JSON array text, how many it holds and how many match in all."""

    features: str
    returned: int
    matched: int


def items(session: Session, who: Principal | None, info: CollectionInfo, *, bbox, when: Interval | None,
          limit: int, offset: int, srid: int = WGS84, bbox_srid: int = WGS84) -> Page:
    """A page of features (ordered by internal id, so paging is stable) and how many match; geometry in
    `srid`, the bbox in `bbox_srid`.

    One statement: the page's ids, their features as one JSON array text, and the count of every match only
    when the page cannot tell it (a full page, or an empty one after an offset): a short page from offset 0
    holds them all, and a short non-empty page ends the matches, so they number offset + returned."""
    storage, env = int(get_settings().srid), None
    if bbox is not None:
        if bbox_srid == WGS84:
            box = _envelope(bbox, info.bbox)
            if box is None:
                return Page("[]", 0, 0)
            env = f"ST_Transform(ST_Segmentize(ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326), 0.01), {storage})"
        else:  # already in the storage CRS (the only other one offered): no projection to go wrong
            box, env = bbox, f"ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, {storage})"
    src, where, params = _source(session, who, info, srid)
    params.update(limit=limit, offset=offset)
    if env is not None:
        params.update(zip(("x0", "y0", "x1", "y1"), map(float, box)))  # floats: float8 parameters
        where.append(f"ST_Intersects({src.table}.geom, {env})")
    if when is not None and info.id == JOBS:  # other collections have no time: datetime is ignored there
        if when.start is not None:
            where.append("jobs.created_at >= %(start)s")
            params["start"] = when.start
        if when.end is not None:
            where.append("jobs.created_at <= %(end)s")
            params["end"] = when.end
    matches = f"FROM {src.table} WHERE {' AND '.join(where)}"
    unknown = "count(*) = %(limit)s" + ("" if offset == 0 else " OR count(*) = 0")
    # The page's rows first, as they are (the subquery keeps the table's name, so the feature's SQL reads its
    # columns and joins from it): features are then made only for the rows returned, not the skipped ones.
    statement = f"""
        SELECT count(*), string_agg(f, ',' ORDER BY k), CASE WHEN {unknown} THEN (SELECT count(*) {matches}) END
          FROM (SELECT {src.order} AS k, {src.feature} AS f
                  FROM (SELECT * {matches} ORDER BY {src.order} LIMIT %(limit)s OFFSET %(offset)s) {src.table}
                       {src.joins}) page"""
    n, text_, matched = session.connection().exec_driver_sql(statement, params).one()
    return Page(f"[{text_ or ''}]", n, offset + n if matched is None else matched)


def one(session: Session, who: Principal | None, info: CollectionInfo, feature_id: str, srid: int = WGS84) -> str:
    """One feature's JSON text by its id (asset ref, job reference or ward code), or 404; geometry in `srid`."""
    src, where, params = _source(session, who, info, srid)
    found = session.connection().exec_driver_sql(
        f"SELECT {src.feature} FROM {src.table} {src.joins} WHERE {' AND '.join(where)} AND {src.fid} = %(fid)s "
        f"ORDER BY {src.order} LIMIT 1", {**params, "fid": feature_id}).scalar()
    if found is None:
        raise OgcError(404, "NotFound", f"no feature {feature_id[:64]!r} in {info.id}")
    return found
