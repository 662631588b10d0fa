"""Demo crews and contractors (idempotent): what `make run` and the tests start from."""
from __future__ import annotations

from datetime import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.dispatch.models import Contractor, Crew

CONTRACTORS = [
    dict(name="street-lighting", title="Brightway Street Lighting Ltd", adapter="street_lighting",
         categories=["street_light"], sla_policy={"kind": "working_days", "days": 3, "cutoff": "15:00"},
         config={"base_url": "http://127.0.0.1:8100"}),
    dict(name="green-spaces", title="Green Spaces Grounds Maintenance", adapter="street_lighting",
         categories=["bench", "dog_bin"], sla_policy=None, config={"base_url": "http://127.0.0.1:8101"}),
]

CREWS = [
    dict(name="cleansing_north", title="Cleansing crew North (Bath north of the Avon)", team="cleansing",
         skills=["graffiti", "fly_tipping", "litter_bin", "dog_bin"]),
    dict(name="cleansing_south", title="Cleansing crew South (Bath south of the Avon)", team="cleansing",
         skills=["graffiti", "fly_tipping", "litter_bin", "dog_bin"]),
    dict(name="highways", title="Highways crew", team="highways", skills=["grit_bin", "bench", "pothole"]),
    dict(name="av_officer", title="Abandoned vehicle officer", team="enforcement", skills=["abandoned_vehicle"],
         capacity=20),
]


def seed_demo(session: Session) -> None:
    """Insert the demo contractors and crews that are missing; leaves existing rows alone."""
    for spec in CONTRACTORS:
        if session.scalar(select(Contractor).where(Contractor.name == spec["name"])) is None:
            session.add(Contractor(**spec))
    for spec in CREWS:
        if session.scalar(select(Crew).where(Crew.name == spec["name"])) is None:
            session.add(Crew(shift_start=time(7, 0), shift_end=time(19, 0), **{"capacity": 10, **spec}))
    session.flush()
