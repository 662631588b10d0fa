"""Crews and contractors: who does the work."""
from __future__ import annotations

import uuid
from datetime import datetime, time

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Time, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.config import get_settings
from server.db import Base

SRID = get_settings().srid


class Contractor(Base):
    """An outside organisation reached through a contractor adapter."""

    __tablename__ = "contractors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    adapter: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict] = mapped_column(JSONB, default=dict)
    # Contract SLA overrides the category's policy, e.g. {"kind": "working_days", "days": 3}.
    sla_policy: Mapped[dict | None] = mapped_column(JSONB)
    categories: Mapped[list[str]] = mapped_column(ARRAY(String), default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where polling got to (the adapter's opaque cursor), stored in the same commit as the updates.
    poll_cursor: Mapped[str | None] = mapped_column(String(1000))
    polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Crew(Base):
    """An in-house team working from the field app."""

    __tablename__ = "crews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(100))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    skills: Mapped[list[str]] = mapped_column(ARRAY(String), default=list)
    shift_start: Mapped[time] = mapped_column(Time, default=time(7, 0))
    shift_end: Mapped[time] = mapped_column(Time, default=time(17, 0))
    capacity: Mapped[int] = mapped_column(Integer, default=10)
    last_position = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    # Where the crew's day starts and ends (day plans need it; migration 0010).
    depot = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    depot_name: Mapped[str | None] = mapped_column(String(200))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class StatusRequest(Base):
    """A status change sent by a crew (or supervisor) with a client_id: answered once, replayed on retry."""

    __tablename__ = "status_requests"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    payload_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
