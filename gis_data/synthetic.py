"""Deterministic synthetic assets: B&NES street lights along named roads, and points for scale benchmarks.

B&NES publishes no street-light inventory, so the `street_lights` layer is generated here and labelled
synthetic everywhere (data attribute, Asset.synthetic, AssetLayer.synthetic). Unit numbers follow one
council-like scheme: "<5-digit street code>/<3-digit column number>", e.g. "40213/007", numbered along
each street. Same inputs + same seed → the same lights, refs and attributes on every run.

    python -m gis_data.synthetic scale --n 1000000 --layer bench_lights
"""
from __future__ import annotations

import json
import math
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated

import typer
from shapely import LineString, MultiLineString, Point, prepared
from shapely.geometry.base import BaseGeometry
from shapely.ops import linemerge, unary_union

# lon/lat bounds of Bath & North East Somerset (OS boundary), for scale points.
BANES_BBOX = (-2.7079, 51.2731, -2.2785, 51.4395)

# (lamp type, weight, wattages); LED is most of a modern council stock.
LAMPS = [("LED", 60, (18, 24, 36, 54)), ("SON", 25, (50, 70, 100, 150)), ("CFL", 10, (36, 55)),
         ("SOX", 5, (35, 55, 90))]
# Column height by OS road classification (first word); default for local roads.
HEIGHTS = {"Primary": (10, 12), "A": (10, 12), "B": (8, 10), "Minor": (6, 8)}


@dataclass(frozen=True)
class SyntheticAsset:
    """One generated asset in the storage CRS (metres)."""

    ref: str
    x: float
    y: float
    name: str
    street: str
    attributes: dict


def _components(lines: list[BaseGeometry]) -> list[list[LineString]]:
    """Same-named lines grouped into connected streets (shared endpoints within 0.5 m), merged where possible."""
    parts: list[LineString] = []
    for g in lines:
        parts.extend(getattr(g, "geoms", [g]))
    merged = linemerge(MultiLineString(parts)) if len(parts) > 1 else parts[0]
    merged = list(getattr(merged, "geoms", [merged]))
    parent = list(range(len(merged)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[int, int], int] = {}
    for i, line in enumerate(merged):
        for x, y in (line.coords[0], line.coords[-1]):
            key = (round(x * 2), round(y * 2))
            if key in owner:
                parent[find(i)] = find(owner[key])
            else:
                owner[key] = i
    groups: dict[int, list[LineString]] = defaultdict(list)
    for i, line in enumerate(merged):
        groups[find(i)].append(line)
    comps = [sorted(g, key=lambda ln: (round(ln.bounds[0], 1), round(ln.bounds[1], 1))) for g in groups.values()]
    return sorted(comps, key=lambda c: (round(min(ln.bounds[0] for ln in c), 1),
                                        round(min(ln.bounds[1] for ln in c), 1)))


def _street_code(key: str, taken: set[int]) -> int:
    """A stable 5-digit code from the street's key; collisions probe upwards (in sorted key order)."""
    code = 10000 + zlib.crc32(key.encode()) % 90000
    while code in taken:
        code = 10000 + (code - 10000 + 1) % 90000
    taken.add(code)
    return code


def street_lights(*, roads: Iterable[tuple], wards: Iterable[tuple[str, BaseGeometry]],
                  params: dict) -> Iterator[SyntheticAsset]:
    """Lights every spacing_m along each named road inside the listed wards, alternating sides by offset_m.

    roads: (ref, name, line geometry in metres[, classification]); wards: (code, polygon in metres).
    """
    seed = params.get("seed", 27700)
    lo, hi = params.get("spacing_m", (30, 40))
    offset = float(params.get("offset_m", 4))
    wanted = set(params.get("wards") or [])
    area = unary_union([g for code, g in wards if not wanted or code in wanted])
    inside = prepared.prep(area)
    by_name: dict[str, list[BaseGeometry]] = defaultdict(list)
    klass: dict[str, str] = {}
    for ref, name, geom, *rest in roads:
        if name and inside.intersects(geom):
            by_name[name].append(geom)
            klass.setdefault(name, (rest[0] if rest else None) or "Local Road")
    taken: set[int] = set()
    for name in sorted(by_name):
        for ci, comp in enumerate(_components(by_name[name])):
            key = f"{name}|{ci}"
            code = _street_code(key, taken)
            rng = random.Random(f"{seed}:{key}")
            heights = HEIGHTS.get(klass[name].split()[0], (5, 6))
            column, side = 0, 1
            for line in comp:
                d = rng.uniform(5, lo / 2)
                while d < line.length:
                    a, b = line.interpolate(max(d - 1, 0)), line.interpolate(min(d + 1, line.length))
                    dx, dy = b.x - a.x, b.y - a.y
                    norm = math.hypot(dx, dy) or 1.0
                    p = line.interpolate(d)
                    x, y = p.x - dy / norm * offset * side, p.y + dx / norm * offset * side
                    side = -side
                    d += rng.uniform(lo, hi)
                    lamp, _, watts = rng.choices(LAMPS, weights=[w for _, w, _ in LAMPS])[0]
                    attrs = {"synthetic": True, "lamp_type": lamp, "wattage": rng.choice(watts),
                             "column_height_m": rng.choice(heights)}
                    if not inside.contains(Point(x, y)):
                        continue
                    column += 1
                    ref = f"{code:05d}/{column:03d}"
                    yield SyntheticAsset(ref, round(x, 2), round(y, 2), f"{name} column {column}", name,
                                         {**attrs, "street_code": f"{code:05d}", "column_no": column})


def generate_scale_points(n: int, seed: int = 1, bbox: tuple[float, float, float, float] = BANES_BBOX
                          ) -> Iterator[tuple[str, float, float]]:
    """Yield n synthetic assets (ref, lon, lat), uniformly in bbox (lon/lat), streamable and deterministic."""
    rng = random.Random(seed)
    minx, miny, maxx, maxy = bbox
    width = max(7, len(str(n)))
    for i in range(1, n + 1):
        yield f"BL-{i:0{width}d}", round(rng.uniform(minx, maxx), 6), round(rng.uniform(miny, maxy), 6)


def load_scale_layer(n: int, *, layer: str = "bench_lights", seed: int = 1,
                     bbox: tuple[float, float, float, float] = BANES_BBOX, replace: bool = True) -> float:
    """Load n scale points into `layer` (synthetic) via COPY; returns seconds taken."""
    from sqlalchemy import text

    from server.config import get_settings
    from server.db import get_engine

    t0 = time.perf_counter()
    with get_engine().begin() as conn:
        layer_id = conn.execute(text("""
            INSERT INTO asset_layers (name, title, geometry_type, source, attribution, synthetic, snap_radius_m,
                                      imported_at)
            VALUES (:n, :t, 'Point', 'gis_data.synthetic:generate_scale_points', :a, true, 15, now())
            ON CONFLICT (name) DO UPDATE SET title = EXCLUDED.title, imported_at = now() RETURNING id"""),
            {"n": layer, "t": f"Benchmark points (synthetic, {n:,})",
             "a": "Synthetic benchmark data generated by Kerbside. Not real council assets."}).scalar_one()
        if replace:
            conn.execute(text("DELETE FROM assets WHERE layer_id = :l"), {"l": layer_id})
        conn.execute(text("CREATE TEMP TABLE _scale (ref text, lon float8, lat float8) ON COMMIT DROP"))
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy("COPY _scale (ref, lon, lat) FROM STDIN") as cp:
                for row in generate_scale_points(n, seed, bbox):
                    cp.write_row(row)
        conn.execute(text(f"""
            INSERT INTO assets (layer_id, external_ref, ref_derived, geom, attributes, maintainer, synthetic)
            SELECT :l, ref, false, ST_Transform(ST_SetSRID(ST_MakePoint(lon, lat), 4326), {int(get_settings().srid)}),
                   CAST(:attrs AS jsonb), 'street_lighting', true FROM _scale
            ON CONFLICT (layer_id, external_ref) DO NOTHING"""),
                     {"l": layer_id, "attrs": json.dumps({"synthetic": True})})
        conn.execute(text("SELECT kerbside_layer_extent(:l)"), {"l": layer_id})  # what /ogc shows as its extent
    with get_engine().connect() as conn:
        conn.execute(text("ANALYZE assets"))
    return time.perf_counter() - t0


cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Synthetic GIS data for demos and benchmarks")


@cli.callback()
def _main() -> None:
    """Synthetic GIS data for demos and benchmarks."""


@cli.command()
def scale(n: Annotated[int, typer.Option("--n", min=1, help="number of points")] = 1_000_000,
          layer: Annotated[str, typer.Option(help="asset layer name")] = "bench_lights",
          seed: Annotated[int, typer.Option(help="random seed")] = 1,
          keep: Annotated[bool, typer.Option("--keep", help="keep the layer's existing rows")] = False) -> None:
    """Load N synthetic points into a benchmark layer (not part of the normal import)."""
    secs = load_scale_layer(n, layer=layer, seed=seed, replace=not keep)
    typer.echo(f"loaded {n:,} points into {layer!r} in {secs:.1f} s", err=True)


if __name__ == "__main__":
    cli()
