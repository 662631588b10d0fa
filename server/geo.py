"""WGS84 in the API, a projected CRS in the database: the conversions in one place."""
from __future__ import annotations

from sqlalchemy import func

from server.config import get_settings

WGS84 = 4326


def srid() -> int:
    """The projected SRID that geometry is stored in."""
    return get_settings().srid


def point_from_lonlat(lon: float, lat: float):
    """SQL expression: a WGS84 point transformed into the storage CRS."""
    return func.ST_Transform(func.ST_SetSRID(func.ST_MakePoint(lon, lat), WGS84), srid())


def lonlat_of(geom):
    """SQL expressions (lon, lat) of a stored geometry's point (or its point on surface)."""
    g = func.ST_Transform(func.ST_PointOnSurface(geom), WGS84)
    return func.ST_X(g), func.ST_Y(g)


def as_geojson(geom):
    """SQL expression: a stored geometry as WGS84 GeoJSON text (6 decimal places)."""
    return func.ST_AsGeoJSON(func.ST_Transform(geom, WGS84), 6)
