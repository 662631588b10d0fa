"""GeoJSON features as JSON text written by PostgreSQL: the SQL of one feature per collection (jobs, asset
layers, wards).

A 1,000-feature page used to be rows → dicts → JSON in Python (two thirds of the request's time); here each
row becomes its feature's JSON text in the statement that reads it, and the router passes a page through as
bytes. The features say exactly what the Python code said (tests/server/test_ogc_features.py checks them,
value for value, against the jobs API's own summary rows and against known places and times):

- ids and properties as before, in the same order, compact; times as Python's datetime.isoformat() writes
  them (microseconds only when there are some, the session's UTC offset as +HH:MM);
- geometry from ST_AsGeoJSON: CRS84 with 6 decimals, or the storage CRS with 2, polygons wound as RFC 7946 says;
- job status words from server.jobs.rules (describe_status, open311_status), computed in Python for every
  status and every crew and contractor title and passed in as one JSON parameter: the words keep one source.

Plain SQL text with psycopg parameters (%(name)s), kept per collection and CRS: a page's statement is then
a few string joins, not an expression tree to build and compile on every request. The job columns are
written out here rather than taken from server.jobs.views.summary_select, whose rows are shaped for Python.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from server.jobs import rules
from server.ogc.params import WGS84

# Python's datetime.isoformat() of an aware datetime: a fraction only when it is not zero, offset +HH:MM.
_ISO = 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM'
ASSET_KEYS = ("ref", "name", "layer", "ward", "street", "maintainer", "synthetic")
WARD_KEYS = ("code", "name")


@dataclass(frozen=True)
class FeatureSql:
    """One feature's JSON text as an SQL expression over `table` and the outer joins after it (`joins`)."""

    table: str
    joins: str
    feature: str
    fid: str  # the feature id's column
    order: str  # the internal id: pages are stable in its order


def _text(sql: str) -> str:
    """A JSON string (or null) for a text value."""
    return f"coalesce(to_json({sql})::text, 'null')"


def _number(sql: str) -> str:
    """A JSON number or boolean (or null): their SQL text is their JSON text."""
    return f"coalesce(({sql})::text, 'null')"


def _iso(sql: str) -> str:
    """A timestamptz as server.jobs.service.iso() writes it (null stays null)."""
    return f"""coalesce('"' || replace(to_char({sql}, '{_ISO}'), '.000000', '') || '"', 'null')"""


def _members(pairs: list[tuple[str, str]]) -> list[str]:
    """The parts of '{"k1":v1,"k2":v2' — an object's opening and members, not closed (so more may follow)."""
    parts = []
    for i, (key, value) in enumerate(pairs):
        assert key.replace("_", "").isalnum(), key  # written into the statement as it is
        parts += [f"""'{"{" if i == 0 else ","}"{key}":'""", value]
    return parts


def _object(pairs: list[tuple[str, str]]) -> list[str]:
    return [*_members(pairs), "'}'"]


def _then(members: list[str], extra: str) -> list[str]:
    """Close the object opened by `members` with the members of the jsonb object `extra`, if it has any."""
    return [*members, f"coalesce(',' || substr(nullif({extra}, '{{}}'::jsonb)::text, 2), '}}')"]


def _object_or_empty(sql: str) -> str:
    """The jsonb value if it is an object, else {} (the code this replaces used `attributes or {}`)."""
    return f"CASE WHEN jsonb_typeof({sql}) = 'object' THEN {sql} ELSE '{{}}'::jsonb END"


def _feature(fid: str, geometry: str, properties: list[str]) -> str:
    """A GeoJSON feature's text, members in the order documents.feature() gave them: one concat() of its parts
    (every part is a non-null text; one call builds the string, where a chain of || copies it at each step)."""
    parts = ["""'{"type":"Feature","id":'""", _text(fid), """',"geometry":'""", f"coalesce({geometry}, 'null')",
             """',"properties":'""", *properties, "'}'"]
    return f"concat({', '.join(parts)})"


def geojson(sql: str, srid: int) -> str:
    """GeoJSON text in `srid` (6 decimals for degrees, 2 for metres), polygons wound as RFC 7946 says:
    exterior rings counter-clockwise, holes clockwise (ST_ForcePolygonCCW does both), after the projection."""
    # options 0: no "crs" member (RFC 7946 has none; the Content-Crs header names the CRS instead).
    return f"ST_AsGeoJSON(ST_ForcePolygonCCW(ST_Transform({sql}, {int(srid)})), {6 if srid == WGS84 else 2}, 0)"


# The assignee titles job_words() needs, as one column beside other values (service._prepare).
TITLES = "(SELECT array_agg(title ORDER BY title) FROM (SELECT title FROM crews UNION SELECT title FROM contractors) t)"


@lru_cache(maxsize=16)
def job_words(titles: tuple[str, ...]) -> str:
    """Parameter `words` of jobs() (JSON text): {status: {assignee title, or "" for none: words}}, for every
    status and each title (TITLES: crews' and contractors', read with each request, so a new title is there)."""
    return json.dumps({s: {"": rules.describe_status(s), **{t: rules.describe_status(s, t) for t in titles if t}}
                       for s in rules.STATUSES})


def _open311_status() -> str:
    """The Open311 status of an open job as JSON text: one value for every open status (as now), else a CASE."""
    said = {s: json.dumps(rules.open311_status(s)) for s in rules.OPEN_STATUSES}
    assert not any("'" in k + v for k, v in said.items())  # written into the statement as they are
    if len(set(said.values())) == 1:
        return f"'{next(iter(said.values()))}'"
    return "CASE jobs.status " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in said.items()) + " ELSE 'null' END"


@lru_cache(maxsize=8)
def jobs(srid: int) -> FeatureSql:
    """Open jobs (only: see _open311_status): the jobs API's list row, asset and assignee flattened; parameter
    `words` (job_words())."""
    # Python's truthiness, as the list row has it: a name that is neither null nor empty.
    title = "CASE WHEN c.name <> '' THEN c.title WHEN cr.name <> '' THEN cr.title END"
    kind = "CASE WHEN c.name <> '' THEN 'contractor' WHEN cr.name <> '' THEN 'crew' END"
    props = _object([
        ("reference", _text("jobs.reference")), ("category", _text("jobs.category_code")),
        ("status", _text("jobs.status")),
        # A jsonb string's text is its JSON text already.
        ("status_in_words", f"coalesce((%(words)s::jsonb -> jobs.status -> coalesce({title}, ''))::text, 'null')"),
        ("open311_status", _open311_status()),
        ("priority", _text("jobs.priority")), ("ward", _text("w.name")), ("street", _text("jobs.street")),
        ("contractor_ref", _text("jobs.contractor_ref")), ("due_at", _iso("jobs.due_at")),
        ("demand_count", _number("jobs.demand_count")), ("triage_reason", _text("jobs.triage_reason")),
        ("created_at", _iso("jobs.created_at")), ("updated_at", _iso("jobs.updated_at")),
        ("resolved_at", _iso("jobs.resolved_at")),
        ("asset_layer", _text("CASE WHEN a.external_ref <> '' THEN l.name END")),
        ("asset_ref", _text("CASE WHEN a.external_ref <> '' THEN a.external_ref END")),
        ("assignee_kind", _text(kind)), ("assignee", _text(title))])
    # In CRS84 a job has always been its point (on surface) to 6 decimals, like the jobs API's lat/lon.
    geometry = ("ST_AsGeoJSON(ST_Transform(ST_PointOnSurface(jobs.geom), 4326), 6, 0)" if srid == WGS84
                else geojson("ST_PointOnSurface(jobs.geom)", srid))
    joins = ("LEFT JOIN assets a ON a.id = jobs.asset_id LEFT JOIN asset_layers l ON l.id = a.layer_id "
             "LEFT JOIN areas w ON w.id = jobs.ward_id LEFT JOIN crews cr ON cr.id = jobs.crew_id "
             "LEFT JOIN contractors c ON c.id = jobs.contractor_id")
    return FeatureSql("jobs", joins, _feature("jobs.reference", geometry, props), "jobs.reference", "jobs.id")


@lru_cache(maxsize=8)
def assets(srid: int) -> FeatureSql:
    """Assets of one layer: its own fields, then the source's attributes except those named like a field (the
    field wins); parameter `layer_name`."""
    members = _members([
        ("ref", _text("assets.external_ref")), ("name", _text("assets.name")),
        ("layer", _text("%(layer_name)s::text")), ("ward", _text("w.name")), ("street", _text("assets.street")),
        ("maintainer", _text("assets.maintainer")), ("synthetic", _number("assets.synthetic"))])
    extra = f"{_object_or_empty('assets.attributes')} - '{{{','.join(ASSET_KEYS)}}}'::text[]"
    return FeatureSql("assets", "LEFT JOIN areas w ON w.id = assets.ward_id",
                      _feature("assets.external_ref", geojson("assets.geom", srid), _then(members, extra)),
                      "assets.external_ref", "assets.id")


@lru_cache(maxsize=8)
def wards(srid: int) -> FeatureSql:
    """Wards: code and name, then their attributes (an attribute named code or name gives that value, in place)."""
    attrs = _object_or_empty("areas.attributes")
    members = _members([(k, f"coalesce(({attrs} -> '{k}')::text, to_json(areas.{k})::text, 'null')")
                        for k in WARD_KEYS])
    extra = f"{attrs} - '{{{','.join(WARD_KEYS)}}}'::text[]"
    return FeatureSql("areas", "", _feature("areas.code", geojson("areas.geom", srid), _then(members, extra)),
                      "areas.code", "areas.id")
