"""Collections and features for OGC API Features: one per asset layer, open jobs and wards, in CRS84.

Who may read what: asset layers and wards are public when `ogc_public_assets` is set (otherwise any
valid token); open jobs need an adviser, supervisor or admin token, and a contractor or crew token
reads only the jobs it holds (server.jobs.access.visible).
A bbox is clipped to the collection's extent before it is projected, so a world-wide bbox never
reaches a projection outside the storage CRS's area.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from server.areas.models import Area
from server.assets.models import Asset
from server.config import get_settings
from server.deps import Principal
from server.jobs import rules
from server.jobs.access import SEE_ALL, visible
from server.jobs.models import Job
from server.jobs.views import count, summary_row, summary_select
from server.ogc.documents import CollectionInfo, feature
from server.ogc.params import WGS84, Interval, OgcError

JOBS, WARDS = "jobs", "wards"
JOB_ROLES = (*SEE_ALL, "contractor", "crew")
CACHE_SECONDS = 300.0
_cache: dict[str, tuple[float, object]] = {}

_LAYERS = text("""
    SELECT l.id, l.name, l.title, l.attribution, l.synthetic, ST_XMin(e.g) AS minx, ST_YMin(e.g) AS miny,
           ST_XMax(e.g) AS maxx, ST_YMax(e.g) AS maxy
      FROM asset_layers l LEFT JOIN LATERAL (
        SELECT ST_Transform(ST_Segmentize(ST_SetSRID(ST_Extent(a.geom)::geometry, :srid), 500), 4326) AS g
          FROM assets a WHERE a.layer_id = l.id) e ON true
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
    # Extents change only on import; five minutes of staleness costs nothing and saves a scan per request.
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


def _envelope(bbox, extent, srid: int):
    """The bbox clipped to the extent and projected, or None when they do not overlap."""
    if extent is None:
        return None
    minx, miny = max(bbox[0], extent[0]), max(bbox[1], extent[1])
    maxx, maxy = min(bbox[2], extent[2]), min(bbox[3], extent[3])
    if minx > maxx or miny > maxy:
        return None
    return func.ST_Transform(func.ST_Segmentize(func.ST_MakeEnvelope(minx, miny, maxx, maxy, WGS84), 0.01), srid)


def offered_srids() -> list[int]:
    """The CRSs features can be read in (Part 2): CRS84 first, then the storage CRS."""
    storage = get_settings().srid
    return [WGS84] if storage == WGS84 else [WGS84, storage]


def _geojson(geom, srid: int):
    """SQL: GeoJSON text in `srid` (6 decimals for degrees, 2 for metres), polygons wound as RFC 7946 says:
    exterior rings counter-clockwise, holes clockwise (ST_ForcePolygonCCW does both), after the projection."""
    # options 0: no "crs" member (RFC 7946 has none; the Content-Crs header names the CRS instead).
    return func.ST_AsGeoJSON(func.ST_ForcePolygonCCW(func.ST_Transform(geom, srid)), 6 if srid == WGS84 else 2, 0)


def _query(session: Session, who: Principal | None, info: CollectionInfo, srid: int = WGS84):
    """(select of rows, geometry column, id column, row → feature) for a collection, geometry in `srid`."""
    if info.id == JOBS:
        q = summary_select().where(visible(who), Job.status.in_(rules.OPEN_STATUSES))
        if srid != WGS84:
            q = q.add_columns(_geojson(func.ST_PointOnSurface(Job.geom), srid).label("geometry"))
        return q, Job.geom, Job.reference, Job.id, _job_feature
    if info.id == WARDS:
        q = select(Area.id, Area.code, Area.name, Area.attributes, _geojson(Area.geom, srid).label("geometry")) \
            .where(Area.kind == "ward")
        return q, Area.geom, Area.code, Area.id, _ward_feature
    layer = _layers(session)[info.id]
    q = (select(Asset.id, Asset.external_ref, Asset.name, Asset.attributes, Asset.maintainer, Asset.street,
                Asset.synthetic, Area.name.label("ward"), _geojson(Asset.geom, srid).label("geometry"))
         .outerjoin(Area, Area.id == Asset.ward_id).where(Asset.layer_id == layer.id))
    return q, Asset.geom, Asset.external_ref, Asset.id, lambda r: _asset_feature(info.id, r)


def items(session: Session, who: Principal | None, info: CollectionInfo, *, bbox, when: Interval | None,
          limit: int, offset: int, srid: int = WGS84, bbox_srid: int = WGS84) -> tuple[list[dict], int]:
    """A page of features (ordered by internal id, so paging is stable) and how many match; geometry in
    `srid`, the bbox in `bbox_srid`."""
    q, geom, _, order, to_feature = _query(session, who, info, srid)
    if bbox is not None:
        storage = get_settings().srid
        if bbox_srid == WGS84:
            env = _envelope(bbox, info.bbox, storage)
            if env is None:
                return [], 0
        else:  # already in the storage CRS (the only other one offered): no projection to go wrong
            env = func.ST_MakeEnvelope(*bbox, storage)
        q = q.where(func.ST_Intersects(geom, env))
    if when is not None and info.id == JOBS:  # other collections have no time: datetime is ignored there
        if when.start is not None:
            q = q.where(Job.created_at >= when.start)
        if when.end is not None:
            q = q.where(Job.created_at <= when.end)
    keys = q.with_only_columns(order)
    matched = count(session, keys)
    if offset >= matched:
        return [], matched
    # Page on the bare ids first: GeoJSON is then made only for the rows returned, not the skipped ones.
    page = session.scalars(keys.order_by(order).limit(limit).offset(offset)).all()
    rows = session.execute(q.where(order.in_(page)).order_by(order)).all()
    return [to_feature(r) for r in rows], matched


def one(session: Session, who: Principal | None, info: CollectionInfo, feature_id: str, srid: int = WGS84) -> dict:
    """One feature by its id (asset ref, job reference or ward code), or 404; geometry in `srid`."""
    q, _, id_col, order, to_feature = _query(session, who, info, srid)
    row = session.execute(q.where(id_col == feature_id).order_by(order).limit(1)).first()
    if row is None:
        raise OgcError(404, "NotFound", f"no feature {feature_id[:64]!r} in {info.id}")
    return to_feature(row)


def _asset_feature(layer: str, r) -> dict:
    props = {"ref": r.external_ref, "name": r.name, "layer": layer, "ward": r.ward, "street": r.street,
             "maintainer": r.maintainer, "synthetic": r.synthetic}
    for key, value in (r.attributes or {}).items():
        props.setdefault(key, value)
    return feature(r.external_ref, json.loads(r.geometry), props)


def _ward_feature(r) -> dict:
    return feature(r.code, json.loads(r.geometry), {"code": r.code, "name": r.name, **(r.attributes or {})})


def _job_feature(row) -> dict:
    s = summary_row(row)
    asset, assignee = s.pop("asset") or {}, s.pop("assignee") or {}
    lon, lat = s.pop("lon"), s.pop("lat")
    props = {**s, "asset_layer": asset.get("layer"), "asset_ref": asset.get("ref"),
             "assignee_kind": assignee.get("kind"), "assignee": assignee.get("title")}
    projected = row._mapping.get("geometry")  # only when another CRS than CRS84 was asked for
    geometry = json.loads(projected) if projected else {"type": "Point", "coordinates": [lon, lat]}
    return feature(s["reference"], geometry, props)
