"""The SQL side of snapping: where a point is (boundary, ward, street) and the assets near it."""
from __future__ import annotations

import re
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


# One round trip: boundary test and ward (one scan of the area parts), nearest named street and the layer's 3
# nearest assets (kerbside_locate, migrations 0004 and 0019: a PL/pgSQL function so its plan is made once per
# connection).
LOCATE_SQL = "SELECT {extra} FROM kerbside_locate(:lon, :lat, :srid, :layer) l"
_LOCATE = text(LOCATE_SQL.format(extra="l.*"))


def locate_statement(extra_columns: str):
    """_LOCATE with more output columns (a use case's own lookup riding on the same round trip)."""
    return text(LOCATE_SQL.format(extra="l.*, " + extra_columns))


def locate(session: Session, lon: float, lat: float, layer: str | None) -> Place:
    """Boundary, ward, street and the 3 nearest assets of `layer` (none when layer is None)."""
    return place_from_row(session.execute(_LOCATE, locate_params(lon, lat, layer)).one(), layer)


def locate_params(lon: float, lat: float, layer: str | None) -> dict:
    """The bind parameters of _LOCATE (and of statements made by locate_statement)."""
    return {"lon": lon, "lat": lat, "srid": get_settings().srid, "layer": layer or ""}


def explain_locate(session: Session, lon: float, lat: float, layer: str, *, analyze: bool = False) -> list[str]:
    """The plan kerbside_locate's query gets (generic, as inside the function), from its installed source.

    EXPLAIN cannot see inside a function, so this prepares the function's query with the same plan mode and the
    same parameters: its arguments, and the point it works out from them first (migration 0023).
    Run inside a transaction: it sets plan_cache_mode for that transaction only.
    """
    src = session.execute(text("SELECT prosrc FROM pg_proc WHERE proname = 'kerbside_locate'")).scalar_one()
    query = src[src.index("RETURN QUERY") + len("RETURN QUERY"):src.rindex("END")].strip().rstrip(";")
    point = re.search(r"p_point geometry := (.*?);", src).group(1)  # the function's own expression for its point
    names = ("p_lon", "p_lat", "p_srid", "p_layer", "p_point")
    for i, name in enumerate(names, start=1):
        query = re.sub(rf"\b{name}\b", f"${i}", query)
    session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    session.execute(text("PREPARE kerbside_locate_q(float8, float8, integer, text, geometry) AS "
                         + query.replace(":", r"\:")))
    try:
        # EXPLAIN EXECUTE takes no bind parameters: the arguments are literals (numbers, a quoted name), and the
        # point is the function's expression for it, over those numbers.
        values = dict(zip(names, (repr(float(lon)), repr(float(lat)), str(int(get_settings().srid)),
                                  "'" + layer.replace("'", "''") + "'")))
        point = re.sub(r"\b(p_lon|p_lat|p_srid)\b", lambda m: values[m.group(1)], point)
        args = ", ".join([*values.values(), point])
        return [r[0] for r in session.execute(
            text(f"EXPLAIN {'(ANALYZE) ' if analyze else ''}EXECUTE kerbside_locate_q({args})"))]
    finally:
        session.execute(text("DEALLOCATE kerbside_locate_q"))


def place_from_row(row, layer: str | None) -> Place:
    """A Place from a _LOCATE row."""
    cands = [Candidate(int(i), str(r), float(d), n) for i, r, d, n in row.candidates] if layer else []
    return Place(bool(row.inside), row.ward_id, row.ward, row.street, cands, row.layer_id, row.ewkt)


# The hinted asset on a layer with its distance from the point (a report naming its asset).
HINT = text(
    """SELECT a.id, a.external_ref, a.name,
              ST_Distance(a.geom, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid)) AS d
         FROM assets a WHERE a.layer_id = :layer_id AND a.external_ref = :ref"""
)


def hint_params(layer_id: int, ref: str, lon: float, lat: float) -> dict:
    """The bind parameters of HINT."""
    return {"lon": lon, "lat": lat, "srid": get_settings().srid, "layer_id": layer_id, "ref": ref}


def candidate_from_row(row) -> Candidate | None:
    """A Candidate from a HINT row (None when the asset is not on the layer)."""
    return Candidate(int(row.id), row.external_ref, float(row.d), row.name) if row else None

