"""GIS import: manifest entries into areas and asset layers, one transaction per entry, idempotent."""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import shapely
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from server.assets.sources import (EXAMPLES, Entry, Manifest, Prepared, Record, SourceError, file_sha256,
                                   load_manifest, prepare, read_rows)
from server.config import get_settings
from server.db import get_engine

# Bump when the importer's output for the same input changes: every entry is then re-imported once.
IMPORTER_VERSION = "2"  # 2: zero-length lines dropped, repeated points removed
GEOMETRY_TYPES = {"point": "Point", "line": "LineString", "polygon": "Polygon"}
LOCK_KEY = 0x6B65726273  # pg advisory lock: one import at a time per database


class ImportFailed(Exception):
    """An entry with on_error: stop failed; `summaries` holds every entry handled so far."""

    def __init__(self, summary: "EntrySummary", summaries: list["EntrySummary"]):
        self.summary, self.summaries = summary, summaries
        super().__init__(f"import of {summary.entry!r} failed: {summary.error}")


@dataclass
class EntrySummary:
    """What one manifest entry's import did (stored in ImportRun.summary)."""

    entry: str
    kind: str
    target: str
    file: str | None
    status: str = "pending"  # imported | skipped | failed
    rows_read: int = 0
    imported: int = 0
    inserted: int = 0
    updated: int = 0
    removed: int = 0
    stale_kept: int = 0
    duplicate_ids: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    without_id: int = 0
    without_id_examples: list[str] = field(default_factory=list)
    without_location: int = 0
    without_location_examples: list[str] = field(default_factory=list)
    repaired: int = 0
    repaired_examples: list[str] = field(default_factory=list)
    zero_length_dropped: int = 0
    zero_length_examples: list[str] = field(default_factory=list)
    error: str | None = None
    error_file: str | None = None
    error_row: str | None = None
    seconds: float = 0.0
    source_sha256: str | None = None
    entry_hash: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def import_all(*, manifest: Path | None = None, data_dir: Path | None = None, only: list[str] | None = None,
               console: Console | None = None, force: bool = False) -> list[EntrySummary]:
    """Import the manifest's entries (or `only` these entries/targets) in dependency order (gis_data/manifest.yaml)."""
    s = get_settings()
    path, data_dir = Path(manifest or s.gis_manifest), Path(data_dir or s.gis_data_dir)
    try:
        m = load_manifest(path)
    except SourceError as exc:
        bad = EntrySummary("manifest", "manifest", "", str(path), status="failed", error=str(exc))
        raise ImportFailed(bad, [bad]) from exc
    wanted = set(only or [])
    unknown = wanted - {e.entry for e in m.entries} - {e.target for e in m.entries}
    if unknown:
        bad = EntrySummary("manifest", "manifest", "", str(path), status="failed",
                           error=f"no entry or target named {sorted(unknown)}")
        raise ImportFailed(bad, [bad])
    entries = [e for e in m.entries if not wanted or e.entry in wanted or e.target in wanted]
    engine, done = get_engine(), []
    console = console or Console(stderr=True)
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with engine.connect() as lock, Progress(*columns, console=console) as progress:
        lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
        lock.commit()  # the lock is session-level; don't sit idle in a transaction meanwhile
        overall = progress.add_task("GIS import", total=len(entries))
        try:
            for e in entries:
                summary = _run_entry(engine, m, e, data_dir, force, progress)
                done.append(summary)
                progress.advance(overall)
                if summary.status == "failed" and e.on_error == "stop":
                    raise ImportFailed(summary, done)
            _reenrich_if_base_changed(engine, m, done)
            if any(e.target == m.streets_layer for e in entries) and not any(
                    s.status == "failed" and s.target == m.streets_layer for s in done):
                done.append(_road_network(engine, m, force, progress))
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            lock.commit()
    return done


def _road_network(engine: Engine, m: Manifest, force: bool, progress: Progress) -> EntrySummary:
    """Build the routable graph from the streets layer (skipped when the layer and settings are unchanged)."""
    from server.planning.graph import build_graph

    task = progress.add_task("road_network", total=1)
    summary = EntrySummary("road_network", "graph", "road_edges", None)
    try:
        with engine.begin() as conn:
            g = build_graph(conn, m.streets_layer, force=force)
            summary.status, summary.seconds, summary.source_sha256 = g["status"], g["seconds"], g["source_sha256"]
            summary.rows_read, summary.imported = g["segments"], g["edges"]
            share = f"{g['main_share']:.2%}"
            summary.notes = [
                f"{g['nodes']} nodes, {g['edges']} edges from {g['segments']} segments "
                f"({g['t_junction_splits']} splits at T-junctions, node tolerance {g['node_tolerance_m']} m, "
                f"{g['one_way_edges']} one-way edges)",
                f"{g['components']} connected components; the largest holds {g['main_segments']} segments ({share})"
                + ("" if g["main_ok"] else " — below the 99 % planning needs"),
            ]
            if g["other_components"]:
                summary.notes.append(f"{g['other_segments']} segments outside it: " + ", ".join(
                    f"{c.get('street') or 'asset ' + str(c['example_asset_id'])} ({c['segments']} seg, {c['metres']:.0f} m)"
                    for c in g["other_components"][:8]) + ("…" if len(g["other_components"]) > 8 else ""))
            if g["status"] == "imported":
                conn.execute(text("INSERT INTO import_runs (entry, source_sha256, summary) "
                                  "VALUES ('road_network', :s, CAST(:b AS jsonb))"),
                             {"s": g["source_sha256"], "b": json.dumps(g)})
    except SQLAlchemyError as exc:
        summary.status = "failed"
        summary.error = f"road network: database error: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
    progress.update(task, completed=1)
    return summary


def _run_entry(engine: Engine, m: Manifest, e: Entry, data_dir: Path, force: bool, progress: Progress) -> EntrySummary:
    t0 = time.perf_counter()
    summary = EntrySummary(e.entry, e.kind, e.target, e.file, entry_hash=e.entry_hash(IMPORTER_VERSION))
    task = progress.add_task(e.entry, total=None)
    try:
        with engine.connect() as conn:
            summary.source_sha256 = (_generator_sha(conn, m, e) if e.kind == "generator"
                                     else file_sha256(_path(e, data_dir)))
            last = conn.execute(text(
                "SELECT summary FROM import_runs WHERE entry = :e AND summary->>'status' = 'imported' "
                "ORDER BY id DESC LIMIT 1"), {"e": e.entry}).scalar()
            if (not force and last and last.get("source_sha256") == summary.source_sha256
                    and last.get("entry_hash") == summary.entry_hash and _target_count(conn, e) == last["imported"]):
                keep = {k: v for k, v in last.items() if k in EntrySummary.__dataclass_fields__}
                summary = EntrySummary(**{**keep, "status": "skipped", "inserted": 0, "updated": 0, "removed": 0,
                                          "seconds": round(time.perf_counter() - t0, 3)})
                progress.update(task, total=1, completed=1, description=f"{e.entry} (unchanged)")
                return summary
            if e.kind == "generator":
                srid, prepared = get_settings().srid, _generate(conn, m, e)
            else:
                srid, rows = read_rows(e, _path(e, data_dir))
                if not rows:
                    raise SourceError(e.file or e.entry, "no rows")
                progress.update(task, total=len(rows))
                prepared = prepare(e, srid, rows)
        _fill(summary, prepared)
        progress.update(task, completed=summary.rows_read // 2)
        with engine.begin() as conn:
            if not conn.execute(text("SELECT 1 FROM spatial_ref_sys WHERE srid = :s"), {"s": srid}).first():
                raise SourceError(e.file or e.entry, f"unknown CRS EPSG:{srid}")
            _load(conn, m, e, srid, prepared, summary)
            summary.status = "imported"
            summary.seconds = round(time.perf_counter() - t0, 3)
            _record(conn, e, summary)
        progress.update(task, completed=summary.rows_read or 1, total=summary.rows_read or 1)
    except (SourceError, OSError, SQLAlchemyError) as exc:
        summary.status, summary.seconds = "failed", round(time.perf_counter() - t0, 3)
        if isinstance(exc, SourceError):
            summary.error, summary.error_file, summary.error_row = str(exc), exc.file, exc.row
        elif isinstance(exc, SQLAlchemyError):
            summary.error = f"{e.file or e.entry}: database error: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
        else:
            summary.error = f"{e.file or e.entry}: {exc.strerror or exc}"
        summary.error_file = summary.error_file or e.file
        with engine.begin() as conn:
            _record(conn, e, summary)
        progress.update(task, description=f"{e.entry} [red]failed[/]")
    return summary


def _path(e: Entry, data_dir: Path) -> Path:
    return data_dir / (e.file or "")


def _fill(summary: EntrySummary, p: Prepared) -> None:
    summary.rows_read, summary.imported = p.rows_read, len(p.records)
    summary.duplicate_ids = sum(len(w) - 1 for w in p.duplicates.values())
    summary.duplicate_examples = [f"{ref} ×{len(w)} ({', '.join(w)}; kept as {ref}~2…)"
                                  for ref, w in list(p.duplicates.items())[:EXAMPLES]]
    summary.without_id, summary.without_id_examples = p.without_id, p.without_id_examples
    summary.without_location, summary.without_location_examples = len(p.without_location), p.without_location[:EXAMPLES]
    summary.repaired, summary.repaired_examples = len(p.repaired), p.repaired[:EXAMPLES]
    summary.zero_length_dropped, summary.zero_length_examples = len(p.zero_length), p.zero_length[:EXAMPLES]


def _record(conn: Connection, e: Entry, summary: EntrySummary) -> None:
    body = {**summary.to_dict(), "licence": e.licence, "attribution": e.attribution}
    conn.execute(text("INSERT INTO import_runs (entry, source_sha256, summary) VALUES (:e, :s, CAST(:b AS jsonb))"),
                 {"e": e.entry, "s": summary.source_sha256, "b": json.dumps(body)})


def _target_count(conn: Connection, e: Entry) -> int:
    if e.kind == "area":
        return conn.execute(text("SELECT count(*) FROM areas WHERE kind = :k"), {"k": e.target}).scalar_one()
    return conn.execute(text(
        "SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
        "WHERE l.name = :n AND starts_with(a.external_ref, :p)"), {"n": e.target, "p": e.ref_prefix}).scalar_one()


def _generator_fn(e: Entry):
    module, _, name = (e.generator or "").partition(":")
    return getattr(importlib.import_module(module), name)


def _generator_sha(conn: Connection, m: Manifest, e: Entry) -> str:
    """The generator's code plus a digest of its inputs (named roads and wards as stored)."""
    digest = conn.execute(text(
        "SELECT md5(coalesce(string_agg(a.external_ref || a.name || md5(ST_AsBinary(a.geom)), ',' "
        "ORDER BY a.external_ref), '')) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
        "WHERE l.name = :roads AND a.name IS NOT NULL"), {"roads": m.streets_layer}).scalar_one()
    wards = conn.execute(text("SELECT md5(coalesce(string_agg(code || md5(ST_AsBinary(geom)), ',' ORDER BY code), "
                              "'')) FROM areas WHERE kind = 'ward'")).scalar_one()
    src = inspect.getsource(inspect.getmodule(_generator_fn(e)))
    return hashlib.sha256(f"{src}\n{digest}\n{wards}".encode()).hexdigest()


def _generate(conn: Connection, m: Manifest, e: Entry) -> Prepared:
    roads = [(r, n, shapely.from_wkb(bytes(g)), c) for r, n, g, c in conn.execute(text(
        "SELECT a.external_ref, a.name, ST_AsBinary(a.geom), a.attributes->>'classification' "
        "FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
        "WHERE l.name = :roads AND a.name IS NOT NULL ORDER BY a.external_ref"), {"roads": m.streets_layer})]
    wards = [(c, shapely.from_wkb(bytes(g))) for c, g in conn.execute(text(
        "SELECT code, ST_AsBinary(geom) FROM areas WHERE kind = 'ward' ORDER BY code"))]
    if not roads or not wards:
        raise SourceError(e.entry, f"generator needs the {m.streets_layer!r} layer and the wards imported first")
    records = [Record(e.ref_prefix + a.ref, False, a.name, a.attributes, shapely.Point(a.x, a.y), a.street)
               for a in _generator_fn(e)(roads=roads, wards=wards, params=e.params)]
    return Prepared(records, rows_read=len(records))


def _copy_records(conn: Connection, records: list[Record]) -> None:
    conn.execute(text("CREATE TEMP TABLE _imp (ref text PRIMARY KEY, ref_derived boolean, name text, "
                      "attributes jsonb, wkb text, street text, repaired boolean) ON COMMIT DROP"))
    wkbs = shapely.to_wkb([r.geom for r in records], hex=True) if records else []
    with conn.connection.driver_connection.cursor() as cur:
        with cur.copy("COPY _imp (ref, ref_derived, name, attributes, wkb, street, repaired) FROM STDIN") as cp:
            for r, w in zip(records, wkbs):
                cp.write_row((r.ref, r.derived, r.name, json.dumps(r.attributes, default=str), w, r.street,
                              r.repaired))
    conn.execute(text("ANALYZE _imp"))


def _referenced_guard(conn: Connection, table: str, alias: str) -> str:
    """NOT EXISTS clauses for every foreign key pointing at `table` (so referenced rows are kept, not deleted)."""
    fks = conn.execute(text(
        "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c JOIN pg_attribute a "
        "ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] WHERE c.contype = 'f' "
        "AND c.confrelid = CAST(:t AS regclass) ORDER BY 1, 2"), {"t": table}).all()
    return "".join(f" AND NOT EXISTS (SELECT 1 FROM {t} x WHERE x.{col} = {alias}.id)" for t, col in fks)


def _load(conn: Connection, m: Manifest, e: Entry, srid: int, p: Prepared, summary: EntrySummary) -> None:
    conn.execute(text("SET LOCAL jit = off"))  # JIT costs more than it saves on these short statements
    _copy_records(conn, p.records)
    geom = f"ST_Transform(ST_SetSRID(CAST(i.wkb AS geometry), {int(srid)}), {int(get_settings().srid)})"
    if e.kind == "area":
        rows = conn.execute(text(f"""
            WITH src AS (SELECT i.*, {geom} AS g FROM _imp i)
            INSERT INTO areas (kind, code, name, geom, attributes, repaired)
            SELECT :kind, ref, coalesce(name, ref),
                   ST_Multi(ST_CollectionExtract(CASE WHEN ST_IsValid(g) THEN g ELSE ST_MakeValid(g) END, 3)),
                   attributes, repaired OR NOT ST_IsValid(g) FROM src
            ON CONFLICT (kind, code) DO UPDATE SET name = EXCLUDED.name, geom = EXCLUDED.geom,
                attributes = EXCLUDED.attributes, repaired = EXCLUDED.repaired
            WHERE (areas.name, areas.geom, areas.attributes, areas.repaired)
                  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.geom, EXCLUDED.attributes, EXCLUDED.repaired)
            RETURNING (xmax = 0)"""), {"kind": e.target}).scalars().all()
        scope, params = "a.kind = :kind", {"kind": e.target}
        table = "areas"
    else:
        layer_id = _upsert_layer(conn, m, e, summary)
        rows = conn.execute(text(f"""
            INSERT INTO assets (layer_id, external_ref, ref_derived, geom, name, attributes, maintainer, street,
                                synthetic)
            SELECT :layer, i.ref, i.ref_derived, {geom}, i.name, i.attributes, :maint, i.street, :syn FROM _imp i
            ON CONFLICT (layer_id, external_ref) DO UPDATE SET ref_derived = EXCLUDED.ref_derived,
                geom = EXCLUDED.geom, name = EXCLUDED.name, attributes = EXCLUDED.attributes,
                maintainer = EXCLUDED.maintainer, synthetic = EXCLUDED.synthetic,
                street = coalesce(EXCLUDED.street, assets.street), updated_at = now()
            WHERE (assets.ref_derived, assets.geom, assets.name, assets.attributes, assets.maintainer, assets.synthetic)
                  IS DISTINCT FROM (EXCLUDED.ref_derived, EXCLUDED.geom, EXCLUDED.name, EXCLUDED.attributes,
                                    EXCLUDED.maintainer, EXCLUDED.synthetic)
               OR (EXCLUDED.street IS NOT NULL AND EXCLUDED.street IS DISTINCT FROM assets.street)
            RETURNING (xmax = 0)"""), {"layer": layer_id, "maint": e.maintainer, "syn": e.synthetic}).scalars().all()
        scope = "a.layer_id = :layer AND starts_with(a.external_ref, :prefix)"
        params, table = {"layer": layer_id, "prefix": e.ref_prefix}, "assets"
    summary.inserted = sum(1 for r in rows if r)
    summary.updated = len(rows) - summary.inserted
    stale = f"FROM {table} a WHERE {scope} AND NOT EXISTS (SELECT 1 FROM _imp i WHERE i.ref = a.{_key(table)})"
    n_stale = conn.execute(text(f"SELECT count(*) {stale}"), params).scalar_one()
    summary.removed = conn.execute(text(f"DELETE {stale}{_referenced_guard(conn, table, 'a')}"), params).rowcount
    summary.stale_kept = n_stale - summary.removed
    if summary.inserted > 500:  # fresh statistics, or the planner picks nested loops for the enrichment
        conn.execute(text(f"ANALYZE {table}"))
    if e.kind != "area":
        enrich(conn, m, e, params["layer"], only_imported=True)
        # The layer's extent as it now stands (every entry of the layer, not only this one's rows): /ogc reads it.
        conn.execute(text("SELECT kerbside_layer_extent(:layer)"), {"layer": params["layer"]})


def _key(table: str) -> str:
    return "code" if table == "areas" else "external_ref"


def _upsert_layer(conn: Connection, m: Manifest, e: Entry, summary: EntrySummary) -> int:
    group = [x for x in m.entries if x.kind != "area" and x.target == e.target]
    shas = dict(conn.execute(text(
        "SELECT DISTINCT ON (entry) entry, source_sha256 FROM import_runs WHERE entry = ANY(:names) "
        "AND summary->>'status' = 'imported' ORDER BY entry, id DESC"), {"names": [x.entry for x in group]}).all())
    shas[e.entry] = summary.source_sha256
    combined = shas[e.entry] if len(group) == 1 else hashlib.sha256(
        "".join(f"{k}:{v}\n" for k, v in sorted(shas.items())).encode()).hexdigest()
    return conn.execute(text("""
        INSERT INTO asset_layers (name, title, geometry_type, source, attribution, synthetic, snap_radius_m,
                                  source_sha256, imported_at)
        VALUES (:name, :title, :gt, :source, :attr, :syn, :snap, :sha, now())
        ON CONFLICT (name) DO UPDATE SET title = EXCLUDED.title, geometry_type = EXCLUDED.geometry_type,
            source = EXCLUDED.source, attribution = EXCLUDED.attribution, synthetic = EXCLUDED.synthetic,
            snap_radius_m = EXCLUDED.snap_radius_m, source_sha256 = EXCLUDED.source_sha256, imported_at = now()
        RETURNING id"""), {
        "name": e.target, "title": next((x.title for x in group if x.title), e.target)[:200],
        "gt": GEOMETRY_TYPES[e.geometry], "source": "; ".join(x.file or x.generator or "" for x in group)[:500],
        "attr": " ".join(dict.fromkeys(x.attribution for x in group if x.attribution))[:500],
        "syn": any(x.synthetic for x in group), "snap": e.snap_radius_m, "sha": combined}).scalar_one()


def enrich(conn: Connection, m: Manifest, e: Entry, layer_id: int, *, only_imported: bool = False) -> None:
    """Set ward_id (containing ward, else nearest within ward_radius_m) and street (from the nearest road)."""
    scope = "a.layer_id = :layer AND starts_with(a.external_ref, :prefix)"
    if only_imported:
        scope += " AND EXISTS (SELECT 1 FROM _imp i WHERE i.ref = a.external_ref)"
    p = {"layer": layer_id, "prefix": e.ref_prefix, "wr": e.ward_radius_m, "sr": e.street_radius_m,
         "roads": m.streets_layer}
    if e.ward_from == "polygon":
        # Containment first, ward by ward (PostGIS then reuses each prepared ward polygon); the nearest ward
        # only for the few points just outside every ward (the simplified polygons leave slivers at the edge).
        conn.execute(text(f"""
            WITH inside AS (SELECT DISTINCT ON (a.id) a.id, w.id AS ward FROM areas w
                            JOIN assets a ON a.geom && w.geom AND ST_Intersects(w.geom, ST_PointOnSurface(a.geom))
                            WHERE w.kind = 'ward' AND {scope} ORDER BY a.id, w.code),
            c AS (SELECT a.id, coalesce(i.ward, (SELECT w.id FROM areas w WHERE w.kind = 'ward'
                                                   AND ST_DWithin(w.geom, ST_PointOnSurface(a.geom), :wr)
                                                 ORDER BY ST_Distance(w.geom, ST_PointOnSurface(a.geom)), w.code
                                                 LIMIT 1)) AS ward
                  FROM assets a LEFT JOIN inside i ON i.id = a.id WHERE {scope})
            UPDATE assets a SET ward_id = c.ward, updated_at = now() FROM c
            WHERE a.id = c.id AND a.ward_id IS DISTINCT FROM c.ward"""), p)
    if e.street_from != "none":
        # Rows with a street from the source keep it; the rest get the nearest named road.
        own = ""
        if e.street_from == "field":
            own = (" AND EXISTS (SELECT 1 FROM _imp i WHERE i.ref = a.external_ref AND i.street IS NULL)"
                   if only_imported else " AND a.street IS NULL")
        # Roads themselves look for a road named in the source; everything else takes the street of the
        # nearest road (its name, number, or the named road an unnamed track leads off). Ties (up to six
        # segments meet at one junction) go to the first street name, so every run agrees.
        pool = "r.name" if e.target == m.streets_layer else "r.street"
        near = f"r.layer_id = (SELECT id FROM asset_layers WHERE name = :roads) AND {pool} IS NOT NULL"
        conn.execute(text(f"""
            WITH c AS (SELECT a.id, (SELECT {pool} FROM assets r WHERE {near} AND ST_DWithin(r.geom, a.geom, n.d + 1e-6)
                                     ORDER BY {pool}, r.external_ref LIMIT 1) AS street
                       FROM assets a LEFT JOIN LATERAL (
                           SELECT r.geom <-> a.geom AS d FROM assets r WHERE {near} AND ST_DWithin(r.geom, a.geom, :sr)
                           ORDER BY r.geom <-> a.geom LIMIT 1) n ON true
                       WHERE {scope}{own})
            UPDATE assets a SET street = c.street, updated_at = now() FROM c
            WHERE a.id = c.id AND a.street IS DISTINCT FROM c.street"""), p)


def _reenrich_if_base_changed(engine: Engine, m: Manifest, done: list[EntrySummary]) -> None:
    """If wards or roads changed in this run, refresh ward/street of asset entries that were not re-imported."""
    base = {e.entry for e in m.entries if e.stage(m.streets_layer) <= 3}
    if not any(s.entry in base and s.status == "imported" and (s.inserted or s.updated or s.removed) for s in done):
        return
    fresh = {s.entry for s in done if s.status == "imported"}
    with engine.begin() as conn:
        layers = dict(conn.execute(text("SELECT name, id FROM asset_layers")).all())
        for e in m.entries:
            if e.kind != "area" and e.entry not in fresh and e.target in layers:
                enrich(conn, m, e, layers[e.target])
