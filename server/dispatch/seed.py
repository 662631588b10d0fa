"""Demo crews and contractors (idempotent): what `make run` and the tests start from.

Contractor secrets (api_key, webhook_secret) are generated here, once, and live only in the
contractors row: a re-run fills missing config keys and never rotates a secret.
"""
from __future__ import annotations

import secrets
from datetime import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.areas.models import Area
from server.areas.zones import sync_zones
from server.config import get_settings
from server.dispatch.models import Contractor, Crew
from server.geo import point_from_lonlat

STREET_LIGHTING_SLA = {"kind": "working_days", "days": 3, "cutoff": "15:00"}
CLEANSING_SKILLS = ["graffiti", "fly_tipping", "litter_bin", "dog_bin"]
SHIFT = (time(7, 0), time(19, 0))
# Where demo crews start and end their day (day plans): the council's Midland Road depot, Bath
# (position approximate, by the road of that name).
DEPOT = ("Midland Road depot", -2.3772, 51.3844)


def contractor_specs() -> list[dict]:
    """The demo contractors (base_url from the simulator port settings)."""
    s = get_settings()
    return [
        dict(name="street-lighting", title="Brightway Street Lighting Ltd", adapter="street_lighting",
             categories=["street_light"], sla_policy=STREET_LIGHTING_SLA,
             config={"base_url": f"http://127.0.0.1:{s.simulator_port}"}),
        dict(name="green-spaces", title="Green Spaces Grounds Maintenance", adapter="street_lighting",
             categories=["bench", "dog_bin"], sla_policy=None,
             config={"base_url": f"http://127.0.0.1:{s.green_spaces_simulator_port}"}),
    ]


CREWS = [
    dict(name="cleansing_north", title="Cleansing crew North (Bath north of the Avon)", team="cleansing",
         zone="bath-north", skills=CLEANSING_SKILLS),
    dict(name="cleansing_south", title="Cleansing crew South (south of the Avon)", team="cleansing",
         zone="bath-south", skills=CLEANSING_SKILLS),
    dict(name="highways", title="Highways crew", team="highways", zone=None, skills=["grit_bin", "bench", "pothole"]),
    dict(name="av_officer", title="Abandoned vehicle officer", team="enforcement", zone=None,
         skills=["abandoned_vehicle"], capacity=20),
]


def _secrets() -> dict[str, str]:
    return {"api_key": secrets.token_urlsafe(32), "webhook_secret": secrets.token_urlsafe(32)}


def seed_demo(session: Session) -> None:
    """Load crew zones and contractor areas, then add the demo contractors and crews that are missing.

    Existing rows keep what they have; only missing config keys and a missing crew zone are filled.
    """
    sync_zones(session)
    for spec in contractor_specs():
        row = session.scalar(select(Contractor).where(Contractor.name == spec["name"]))
        wanted = {**spec["config"], **_secrets()}
        if row is None:
            session.add(Contractor(**{**spec, "config": wanted}))
        elif any(k not in (row.config or {}) for k in wanted):
            row.config = {**wanted, **(row.config or {})}  # existing values (and secrets) win
    zones = dict(session.execute(select(Area.code, Area.id).where(Area.kind == "crew_zone")).all())
    for spec in CREWS:
        spec = dict(spec)
        zone = spec.pop("zone")
        row = session.scalar(select(Crew).where(Crew.name == spec["name"]))
        if row is None:
            row = Crew(shift_start=SHIFT[0], shift_end=SHIFT[1], zone_id=zones.get(zone) if zone else None,
                       **{"capacity": 10, **spec})
            session.add(row)
        elif zone and row.zone_id is None:
            row.zone_id = zones[zone]
        if row.depot is None:
            row.depot, row.depot_name = point_from_lonlat(DEPOT[1], DEPOT[2]), DEPOT[0]
    session.flush()
