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


# One round trip: boundary test, ward (containing, else nearest within 50 m for simplified
# polygon gaps), nearest named street, and the two nearest assets of the layer by KNN.
_LOCATE = text(
    """
    WITH p AS (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid) AS g),
    lyr AS (SELECT id FROM asset_layers WHERE name = :layer),
    roads AS (SELECT id FROM asset_layers WHERE name = 'roads')
    SELECT
      EXISTS (SELECT 1 FROM areas b, p WHERE b.kind = 'boundary' AND ST_Covers(b.geom, p.g)) AS inside,
      w.id AS ward_id, w.name AS ward,
      (SELECT a.name FROM assets a, p WHERE a.layer_id = (SELECT id FROM roads) AND a.name IS NOT NULL
         ORDER BY a.geom <-> p.g LIMIT 1) AS street,
      (SELECT id FROM lyr) AS layer_id,
      (SELECT coalesce(json_agg(json_build_array(n.id, n.external_ref, n.d)), '[]'::json) FROM (
         SELECT a.id, a.external_ref, ST_Distance(a.geom, p.g) AS d FROM assets a, p
          WHERE a.layer_id = (SELECT id FROM lyr)
          ORDER BY a.geom <-> p.g LIMIT :k) n) AS candidates
    FROM p
    LEFT JOIN LATERAL (
      SELECT id, name FROM areas w WHERE w.kind = 'ward' AND ST_DWithin(w.geom, p.g, 50)
      ORDER BY ST_Distance(w.geom, p.g), id LIMIT 1) w ON true
    """
)


def locate(session: Session, lon: float, lat: float, layer: str | None, k: int = 3) -> Place:
    """Boundary, ward, street and the k nearest assets of `layer` (none when layer is None)."""
    row = session.execute(
        _LOCATE, {"lon": lon, "lat": lat, "srid": get_settings().srid, "layer": layer or "", "k": k}
    ).one()
    cands = [Candidate(int(i), str(r), float(d)) for i, r, d in row.candidates] if layer else []
    return Place(bool(row.inside), row.ward_id, row.ward, row.street, cands, row.layer_id)


def hint_candidate(session: Session, layer_id: int, ref: str, lon: float, lat: float) -> Candidate | None:
    """The hinted asset on this layer with its distance from the point, or None if it is not on the layer."""
    row = session.execute(
        text(
            """SELECT a.id, a.external_ref,
                      ST_Distance(a.geom, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid)) AS d
                 FROM assets a WHERE a.layer_id = :layer_id AND a.external_ref = :ref"""
        ),
        {"lon": lon, "lat": lat, "srid": get_settings().srid, "layer_id": layer_id, "ref": ref},
    ).first()
    return Candidate(int(row.id), row.external_ref, float(row.d)) if row else None
