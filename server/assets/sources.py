"""GIS import inputs: the layer manifest, file readers (GeoJSON, CSV) and row normalisation (no database)."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from shapely import remove_repeated_points
from shapely.geometry import MultiLineString, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from shapely.validation import explain_validity, make_valid

KINDS = ("area", "asset_layer", "generator")
GEOMETRIES = {"point": ("Point", "MultiPoint"), "line": ("LineString", "MultiLineString"),
              "polygon": ("Polygon", "MultiPolygon")}
EXAMPLES = 5


class SourceError(Exception):
    """A fatal problem with one source file (or the manifest): names the file and, where known, the row."""

    def __init__(self, file: str, message: str, row: str | None = None):
        self.file, self.row, self.message = file, row, message
        super().__init__(f"{file}{f' {row}' if row else ''}: {message}")


@dataclass
class Entry:
    """One manifest entry: a file (or generator) feeding one area kind or asset layer."""

    entry: str
    kind: str
    target: str
    raw: dict
    file: str | None = None
    format: str = "geojson"
    crs: int = 4326
    geometry: str = "point"
    location: dict = field(default_factory=dict)
    id: dict = field(default_factory=dict)
    ref_prefix: str = ""
    name: str | None = None
    attributes: dict | None = None
    street_from: str = "nearest"  # nearest | field (first non-empty street_field, else nearest) | none
    street_field: str | list[str] | None = None
    street_case: str | None = None  # title: "KING HENRY'S ROAD" -> "King Henry's Road"
    ward_from: str = "polygon"  # polygon | none
    title: str = ""
    snap_radius_m: float = 25.0
    street_radius_m: float = 200.0
    ward_radius_m: float = 500.0
    maintainer: str | None = None
    attribution: str = ""
    licence: str = ""
    synthetic: bool = False
    on_error: str = "stop"
    missing_location: str = "skip"  # skip | error
    generator: str | None = None
    params: dict = field(default_factory=dict)

    def stage(self, streets_layer: str) -> int:
        """Dependency order: boundary, wards, other areas, the streets layer, assets, generators."""
        if self.kind == "area":
            return {"boundary": 0, "ward": 1}.get(self.target, 2)
        if self.target == streets_layer:
            return 3
        return {"asset_layer": 4, "generator": 5}[self.kind]

    def entry_hash(self, version: str) -> str:
        """A hash of this entry's settings (and the importer version): a change forces a re-import."""
        return hashlib.sha256((version + json.dumps(self.raw, sort_keys=True, default=str)).encode()).hexdigest()


@dataclass
class Manifest:
    """The parsed manifest: entries in dependency order, plus the streets layer name."""

    entries: list[Entry]
    streets_layer: str
    path: Path


def load_manifest(path: Path) -> Manifest:
    """Read and validate the manifest; raises SourceError naming the bad entry."""
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError(where, f"cannot read manifest: {exc}") from exc
    defaults = doc.get("defaults") or {}
    entries, seen = [], set()
    names = set(Entry.__dataclass_fields__) - {"raw"}
    for i, item in enumerate(doc.get("entries") or [], 1):
        raw = {**defaults, **item}
        label = f"entry {i} ({raw.get('entry', '?')})"
        unknown = set(raw) - names
        if unknown:
            raise SourceError(where, f"unknown keys {sorted(unknown)}", label)
        try:
            e = Entry(raw=raw, **raw)
        except TypeError as exc:
            raise SourceError(where, str(exc), label) from exc
        problems = [p for p, bad in [
            (f"kind must be one of {KINDS}", e.kind not in KINDS),
            ("duplicate entry name", e.entry in seen),
            ("id takes field, const, derive, missing, pattern, transform",
             not isinstance(e.id, dict) or bool(set(e.id) - {"field", "const", "derive", "missing", "pattern",
                                                             "transform"})),
            (f"geometry must be one of {sorted(GEOMETRIES)}", e.geometry not in GEOMETRIES),
            ("on_error must be stop or continue", e.on_error not in ("stop", "continue")),
            ("format must be geojson or csv", e.format not in ("geojson", "csv")),
            ("file is required", e.kind != "generator" and not e.file),
            ("generator is required", e.kind == "generator" and not e.generator),
            ("street_from must be nearest, field or none", e.street_from not in ("nearest", "field", "none")),
            ("street_from: field needs street_field", e.street_from == "field" and not e.street_field),
        ] if bad]
        if problems:
            raise SourceError(where, "; ".join(problems), label)
        seen.add(e.entry)
        entries.append(e)
    by_layer: dict[str, list[Entry]] = {}
    for e in entries:
        if e.kind != "area":
            by_layer.setdefault(e.target, []).append(e)
    for layer, group in by_layer.items():
        prefixes = [e.ref_prefix for e in group]
        if len(group) > 1 and (not all(prefixes) or any(
                a != b and b.startswith(a) for a in prefixes for b in prefixes) or len(set(prefixes)) < len(group)):
            raise SourceError(where, f"entries sharing layer {layer!r} need distinct, non-overlapping ref_prefix")
    streets = doc.get("streets_layer", "roads")
    entries.sort(key=lambda e: e.stage(streets))  # stable: manifest order within a stage
    return Manifest(entries, streets, path)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Row:
    """One source row: where it is in the file, its properties and its geometry (None: no location)."""

    where: str
    props: dict[str, Any]
    geom: BaseGeometry | None


def parse_crs(name: str) -> int | None:
    """EPSG code of a GeoJSON `crs` name (CRS84 → 4326), or None if not understood."""
    n = name.strip().upper()
    if re.fullmatch(r"(URN:OGC:DEF:CRS:OGC:1\.3:|URN:OGC:DEF:CRS:OGC::|OGC:)?CRS84", n):
        return 4326
    m = re.fullmatch(r"(?:URN:OGC:DEF:CRS:EPSG:[\d.]*:|EPSG:{1,2}|HTTP://WWW\.OPENGIS\.NET/DEF/CRS/EPSG/0/)(\d+)", n)
    return int(m.group(1)) if m else None


def read_rows(entry: Entry, path: Path) -> tuple[int, list[Row]]:
    """Read a source file into rows; returns (source EPSG, rows). Raises SourceError on a malformed file."""
    if not path.is_file():
        raise SourceError(entry.file or str(path), "file not found")
    return (_read_geojson if entry.format == "geojson" else _read_csv)(entry, path)


def _read_geojson(entry: Entry, path: Path) -> tuple[int, list[Row]]:
    f = entry.file or str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SourceError(f, f"not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise SourceError(f, f"invalid JSON: {exc.msg}", f"line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(
            doc.get("features"), list):
        raise SourceError(f, "not a GeoJSON FeatureCollection")
    srid = 4326  # RFC 7946: no crs member means WGS84 lon/lat
    if doc.get("crs") is not None:
        name = ((doc["crs"] or {}).get("properties") or {}).get("name") if isinstance(doc["crs"], dict) else None
        srid = parse_crs(name) if isinstance(name, str) else None
        if srid is None:
            raise SourceError(f, f"unknown CRS {name if name else doc['crs']!r}")
    if srid != entry.crs:
        raise SourceError(f, f"file declares EPSG:{srid} but the manifest says EPSG:{entry.crs}")
    rows = []
    for i, feat in enumerate(doc["features"], 1):
        where = f"feature {i}"
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            raise SourceError(f, "not a GeoJSON Feature", where)
        g = feat.get("geometry")
        try:
            geom = shape(g) if g is not None else None
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise SourceError(f, f"malformed geometry: {exc}", where) from exc
        rows.append(Row(where, dict(feat.get("properties") or {}), geom))
    return srid, rows


_LATLON = re.compile(r"^\s*\(?\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)?\s*$")


def _read_csv(entry: Entry, path: Path) -> tuple[int, list[Row]]:
    from shapely.geometry import Point

    f, loc = entry.file or str(path), entry.location
    cols = [loc[k] for k in ("text", "lat", "lon", "x", "y") if k in loc]
    if not cols:
        raise SourceError(f, "manifest entry has no location columns (location: text | lat+lon | x+y)")
    rows = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in cols if c not in (reader.fieldnames or [])]
            if missing:
                raise SourceError(f, f"column(s) {missing} not found in the header")
            for rec in reader:
                where = f"line {reader.line_num}"
                props = {k: (v.strip() or None) if isinstance(v, str) else v for k, v in rec.items() if k is not None}
                if "text" in loc:
                    text = props.get(loc["text"])
                    m = _LATLON.match(text) if text else None
                    if text and not m:
                        raise SourceError(f, f"cannot read location {text!r} in column {loc['text']!r}", where)
                    a, b = (float(m.group(1)), float(m.group(2))) if m else (None, None)
                    xy = (b, a) if loc.get("order", "latlon") == "latlon" else (a, b)
                else:
                    kx, ky = ("lon", "lat") if "lon" in loc else ("x", "y")
                    try:
                        xy = tuple(float(props[loc[k]]) if props.get(loc[k]) else None for k in (kx, ky))
                    except ValueError as exc:
                        raise SourceError(f, f"non-numeric coordinate: {exc}", where) from exc
                geom = Point(xy) if None not in xy else None
                rows.append(Row(where, props, geom))
    except UnicodeDecodeError as exc:
        raise SourceError(f, f"not UTF-8 text: {exc.reason}") from exc
    except csv.Error as exc:
        raise SourceError(f, f"malformed CSV: {exc}") from exc
    return entry.crs, rows


@dataclass
class Record:
    """A row ready to load: stable ref, name, attributes, geometry (source CRS), source street."""

    ref: str
    derived: bool
    name: str | None
    attributes: dict
    geom: BaseGeometry
    street: str | None
    repaired: bool = False


@dataclass
class Prepared:
    """Normalised records and the counts the import summary reports."""

    records: list[Record]
    rows_read: int = 0
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # ref -> where each copy is
    without_id: int = 0
    without_id_examples: list[str] = field(default_factory=list)
    without_location: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    zero_length: list[str] = field(default_factory=list)  # lines of no length: dropped (RFC 7946 has no such line)


def _text(v: Any) -> str | None:
    """A property as id text: 237.0 → "237", blanks → None."""
    if v is None:
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        v = int(v) if v.is_integer() else v
    s = str(v).strip()
    return s or None


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower().replace("&", "and")).strip("-")


def _check_geometry(entry: Entry, row: Row, srid: int) -> tuple[BaseGeometry | None, bool]:
    """The row's geometry checked against the entry: repaired if invalid (a line: its zero-length parts and
    repeated points removed); None for a line of zero length (dropped); raises SourceError if unusable."""
    f, g = entry.file or entry.entry, row.geom
    if g.is_empty:
        raise SourceError(f, "empty geometry", row.where)
    want = GEOMETRIES[entry.geometry]
    if g.geom_type not in want:
        raise SourceError(f, f"expected {entry.geometry} geometry, got {g.geom_type}", row.where)
    minx, miny, maxx, maxy = g.bounds
    if not all(map(math.isfinite, (minx, miny, maxx, maxy))):
        raise SourceError(f, "non-finite coordinates", row.where)
    if srid == 4326 and not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise SourceError(f, f"coordinates out of range for EPSG:4326 ({minx:.1f}, {miny:.1f}): wrong CRS?", row.where)
    if entry.geometry == "line":
        return _line(g)
    if g.is_valid:
        return g, False
    why = explain_validity(g)
    fixed = make_valid(g)
    parts = [p for p in getattr(fixed, "geoms", [fixed]) if p.geom_type in want and not p.is_empty]
    fixed = unary_union(parts) if parts else None
    if fixed is None or fixed.is_empty or fixed.geom_type not in want:
        raise SourceError(f, f"invalid geometry that cannot be repaired ({why})", row.where)
    return fixed, True


def _line(g: BaseGeometry) -> tuple[BaseGeometry | None, bool]:
    """A line without zero-length parts or repeated points (repaired), or None when nothing has a length."""
    parts = list(getattr(g, "geoms", [g]))
    with_length = [part for part in parts if part.length > 0]
    if not with_length:
        return None, False
    kept = [remove_repeated_points(part) for part in with_length]
    repaired = len(with_length) < len(parts) or any(len(k.coords) < len(w.coords) for k, w in zip(kept, with_length))
    return (kept[0] if g.geom_type == "LineString" else MultiLineString(kept)), repaired


def derived_ref(geom: BaseGeometry, props: dict, fields: Iterable[str] | None) -> str:
    """A stable ref from rounded coordinates and chosen attributes (deterministic across runs)."""
    c = geom.representative_point() if geom.geom_type != "Point" else geom
    keys = sorted(props) if fields is None else list(fields)
    basis = json.dumps([round(c.x, 6), round(c.y, 6), [[k, props.get(k)] for k in keys]], default=str)
    return "D" + hashlib.sha1(basis.encode()).hexdigest()[:10].upper()


def prepare(entry: Entry, srid: int, rows: list[Row]) -> Prepared:
    """Normalise rows into records: ids (with duplicate and derived refs), names, attributes, checked geometry."""
    f, spec = entry.file or entry.entry, entry.id
    out = Prepared([], rows_read=len(rows))
    seen: dict[str, list[str]] = {}
    loc_cols = set(entry.location.values()) - {"latlon", "lonlat"}
    null = {str(v) for v in spec.get("missing", [])}
    pattern = re.compile(spec["pattern"]) if spec.get("pattern") else None
    fmt = string.Formatter()
    for row in rows:
        if row.geom is None:
            if entry.missing_location == "error":
                raise SourceError(f, "row has no location", row.where)
            out.without_location.append(row.where)
            continue
        geom, repaired = _check_geometry(entry, row, srid)
        if geom is None:  # a line of zero length: no feature to draw or snap to
            out.zero_length.append(row.where)
            continue
        p = row.props
        ref = _text(spec["const"]) if "const" in spec else _text(p.get(spec["field"])) if "field" in spec else None
        if ref is not None and (ref in null or (pattern and not pattern.match(ref))):
            ref = None
        if ref is not None and spec.get("transform") == "slug":
            ref = _slug(ref)
        derived = ref is None
        if derived:
            out.without_id += 1
            if len(out.without_id_examples) < EXAMPLES:
                out.without_id_examples.append(row.where)
            ref = derived_ref(geom, p, spec.get("derive"))
        ref = entry.ref_prefix + ref
        where = seen.setdefault(ref, [])
        where.append(row.where)
        if len(where) > 1:  # keep it, with a stable disambiguated ref (file order decides which is ~2)
            out.duplicates[ref] = where
            ref = f"{ref}~{len(where)}"
        if entry.name and "{" in entry.name:
            vals = {k: (p.get(k) if p.get(k) is not None else "") for _, k, _, _ in fmt.parse(entry.name) if k}
            name = " ".join(entry.name.format(**vals).split()) or None
        else:
            name = entry.name
        if entry.attributes is None:
            attrs = {k: v for k, v in p.items() if k not in loc_cols}
        else:
            attrs = {out_k: p.get(src) for out_k, src in entry.attributes.items()}
        street = None
        if entry.street_from == "field":
            fields = [entry.street_field] if isinstance(entry.street_field, str) else entry.street_field
            street = next((str(p[k]).strip() for k in fields if _text(p.get(k))), None)
            if street and entry.street_case == "title":
                street = string.capwords(street)
        if repaired:
            out.repaired.append(f"{row.where} ({ref})")
        out.records.append(Record(ref, derived, name, attrs, geom, street, repaired))
    return out
