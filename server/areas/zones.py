"""Crew zones and contractor service areas from gis_data/zones.yaml, stored as unions of wards."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from server.config import get_settings

KINDS = {"crew_zones": "crew_zone", "contractor_areas": "contractor_area"}


class ZonesError(ValueError):
    """zones.yaml is malformed or does not fit the wards in the database."""


class AreaDef(BaseModel):
    """One zone or service area: a code, a name and its wards (names, or "all")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=100)
    name: str = Field(min_length=1, max_length=200)
    wards: list[str] | Literal["all"]

    @field_validator("wards")
    @classmethod
    def _some(cls, v):
        if v != "all" and not v:
            raise ValueError("list at least one ward, or write `all`")
        return v


class ZonesFile(BaseModel):
    """The whole zones.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    crew_zones: list[AreaDef] = Field(default_factory=list)
    contractor_areas: list[AreaDef] = Field(default_factory=list)


def load_zones(path: Path | None = None) -> ZonesFile:
    """Read and validate zones.yaml (ZonesError with the reason)."""
    path = Path(path or get_settings().zones_file)
    try:
        return ZonesFile.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ZonesError(f"{path}: {exc}") from exc


def resolve(zones: ZonesFile, wards: dict[str, str]) -> list[tuple[str, str, str, list[str]]]:
    """(kind, code, name, ward codes) per area; `wards` maps ward name → code. Pure; raises ZonesError.

    Crew zones must partition the wards: no ward in two zones, no ward in none.
    """
    by_name = {name.casefold(): code for name, code in wards.items()}
    out, problems = [], []
    for key, kind in KINDS.items():
        seen_codes: set[str] = set()
        for area in getattr(zones, key):
            if area.code in seen_codes:
                problems.append(f"{kind} {area.code!r} is defined twice")
            seen_codes.add(area.code)
            if area.wards == "all":
                codes = sorted(wards.values())
            else:
                unknown = [w for w in area.wards if w.casefold() not in by_name]
                if unknown:
                    problems.append(f"{kind} {area.code!r}: no ward named {', '.join(map(repr, unknown))}")
                codes = sorted({by_name[w.casefold()] for w in area.wards if w.casefold() in by_name})
            out.append((kind, area.code, area.name, codes))
    zone_of: dict[str, list[str]] = {}
    for kind, code, _, codes in out:
        if kind == "crew_zone":
            for w in codes:
                zone_of.setdefault(w, []).append(code)
    if zones.crew_zones:
        shared = {w: z for w, z in zone_of.items() if len(z) > 1}
        if shared:
            problems.append("wards in more than one crew zone: "
                            + "; ".join(f"{w} ({', '.join(z)})" for w, z in sorted(shared.items())))
        missing = sorted(set(wards.values()) - set(zone_of))
        if missing:
            problems.append(f"wards in no crew zone: {', '.join(missing)}")
    if problems:
        raise ZonesError("zones.yaml: " + "; ".join(problems))
    return out


def sync_zones(session: Session, path: Path | None = None) -> dict[str, int]:
    """Upsert every crew zone and contractor area (geometry = union of its wards); idempotent.

    Areas of these kinds no longer in the file are deleted unless a crew or job refers to them.
    """
    zones = load_zones(path)
    wards = dict(session.execute(text("SELECT name, code FROM areas WHERE kind = 'ward'")).all())
    if not wards:
        raise ZonesError("no wards in the database: import the GIS data before loading zones")
    changed = 0
    areas = resolve(zones, wards)
    for kind, code, name, codes in areas:
        attrs = json.dumps({"wards": codes, "source": "zones.yaml"})
        changed += len(session.execute(text("""
            INSERT INTO areas (kind, code, name, geom, attributes, repaired)
            SELECT :kind, :code, :name,
                   ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_Union(geom)), 3)), CAST(:attrs AS jsonb), false
              FROM areas WHERE kind = 'ward' AND code = ANY(:wards)
            ON CONFLICT (kind, code) DO UPDATE SET name = EXCLUDED.name, geom = EXCLUDED.geom,
                attributes = EXCLUDED.attributes
            WHERE (areas.name, areas.geom, areas.attributes)
                  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.geom, EXCLUDED.attributes)
            RETURNING id"""), {"kind": kind, "code": code, "name": name, "attrs": attrs, "wards": codes}).all())
    keep = [f"{k}:{c}" for k, c, _, _ in areas]
    removed = session.execute(text("""
        DELETE FROM areas a WHERE a.kind IN ('crew_zone', 'contractor_area') AND a.kind || ':' || a.code <> ALL(:keep)
           AND NOT EXISTS (SELECT 1 FROM crews c WHERE c.zone_id = a.id)
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.ward_id = a.id)"""), {"keep": keep}).rowcount
    session.flush()
    return {"areas": len(areas), "changed": changed, "removed": removed}
