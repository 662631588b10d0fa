"""The SQL side of snapping: where a point is (boundary, ward, street) and the assets near it."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from server.assets.snapping import Candidate
from server.config import get_settings


@dataclass(frozen=True)
class Place:
    """What the database knows about a point."""

    inside: bool
    ward_id: int | None
    ward: str | None
    street: str | None
    candidates: list[Candidate]
    layer_id: int | None
    ewkt: str  # the point in the storage CRS, ready to bind as a geometry parameter


# One round trip: boundary test, ward (containing, else nearest within 50 m for simplified
# polygon gaps), nearest named street, and the k nearest assets of the layer by KNN. Boundary and ward
# are tested on area_parts (areas cut into small pieces), not on the whole polygons.
# Two things keep the KNN on the GiST index (else PostgreSQL sorts the whole layer): the point CTE
# is NOT MATERIALIZED, and the inner ORDER BY is the distance alone — ties are broken outside.
LOCATE_SQL = """
    WITH p AS NOT MATERIALIZED (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid) AS g),
    lyr AS (SELECT id FROM asset_layers WHERE name = :layer),
    roads AS (SELECT id FROM asset_layers WHERE name = 'roads')
    SELECT
      ST_AsEWKT(p.g) AS ewkt,
      EXISTS (SELECT 1 FROM area_parts b WHERE b.kind = 'boundary' AND ST_Covers(b.geom, p.g)) AS inside,
      w.area_id AS ward_id, (SELECT name FROM areas WHERE id = w.area_id) AS ward,
      (SELECT s.name FROM (SELECT a.name, a.geom <-> p.g AS d FROM assets a, p
                            WHERE a.layer_id = (SELECT id FROM roads) AND a.name IS NOT NULL
                            ORDER BY a.geom <-> p.g LIMIT 4) s
        ORDER BY s.d, s.name LIMIT 1) AS street,
      (SELECT id FROM lyr) AS layer_id,
      (SELECT coalesce(json_agg(json_build_array(n.id, n.external_ref, n.d, n.name) ORDER BY n.d, n.id), '[]'::json)
         FROM (SELECT * FROM (SELECT a.id, a.external_ref, a.name, ST_Distance(a.geom, p.g) AS d FROM assets a, p
                               WHERE a.layer_id = (SELECT id FROM lyr)
                               ORDER BY a.geom <-> p.g LIMIT :k + 2) n0
                ORDER BY n0.d, n0.id LIMIT :k) n) AS candidates
      {extra}
    FROM p
    LEFT JOIN LATERAL (
      SELECT area_id FROM area_parts w WHERE w.kind = 'ward' AND ST_DWithin(w.geom, p.g, 50)
      ORDER BY ST_Distance(w.geom, p.g), area_id LIMIT 1) w ON true
    """
_LOCATE = text(LOCATE_SQL.format(extra=""))


def locate_statement(extra_columns: str):
    """_LOCATE with more output columns (a use case's own lookup riding on the same round trip)."""
    return text(LOCATE_SQL.format(extra=", " + extra_columns))


def locate(session: Session, lon: float, lat: float, layer: str | None, k: int = 3) -> Place:
    """Boundary, ward, street and the k nearest assets of `layer` (none when layer is None)."""
    return place_from_row(session.execute(_LOCATE, locate_params(lon, lat, layer, k)).one(), layer)


def locate_params(lon: float, lat: float, layer: str | None, k: int = 3) -> dict:
    """The bind parameters of _LOCATE (and of statements made by locate_statement)."""
    return {"lon": lon, "lat": lat, "srid": get_settings().srid, "layer": layer or "", "k": k}


def place_from_row(row, layer: str | None) -> Place:
    """A Place from a _LOCATE row."""
    cands = [Candidate(int(i), str(r), float(d), n) for i, r, d, n in row.candidates] if layer else []
    return Place(bool(row.inside), row.ward_id, row.ward, row.street, cands, row.layer_id, row.ewkt)


def hint_candidate(session: Session, layer_id: int, ref: str, lon: float, lat: float) -> Candidate | None:
    """The hinted asset on this layer with its distance from the point, or None if it is not on the layer."""
    row = session.execute(
        text(
            """SELECT a.id, a.external_ref, a.name,
                      ST_Distance(a.geom, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid)) AS d
                 FROM assets a WHERE a.layer_id = :layer_id AND a.external_ref = :ref"""
        ),
        {"lon": lon, "lat": lat, "srid": get_settings().srid, "layer_id": layer_id, "ref": ref},
    ).first()
    return Candidate(int(row.id), row.external_ref, float(row.d), row.name) if row else None
