"""Jobs (the work) and their append-only event history."""
from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.config import get_settings
from server.db import Base

SRID = get_settings().srid


class Job(Base):
    """A unit of work on an asset or a place, with an SLA clock."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    # category_code and ward_id refer to categories and areas, guarded from those tables' side (migration
    # 0006: a key here would lock the category's and the ward's row in every report's transaction).
    category_code: Mapped[str] = mapped_column(String(64))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False), nullable=False)
    ward_id: Mapped[int | None] = mapped_column(Integer)
    street: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    triage_reason: Mapped[str | None] = mapped_column(String(200))
    crew_id: Mapped[int | None] = mapped_column(ForeignKey("crews.id"))
    contractor_id: Mapped[int | None] = mapped_column(ForeignKey("contractors.id"))
    contractor_ref: Mapped[str | None] = mapped_column(String(100))
    sla_policy: Mapped[dict] = mapped_column(JSONB, default=dict)
    sla_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    on_hold_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the job crosses the at-risk share of its allowed time (kept with due_at, for the sweep).
    risk_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    at_risk_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    demand_count: Mapped[int] = mapped_column(Integer, default=1)
    # Why an open job is waiting for a supervisor (no rule matched, no crew on shift, rejected…).
    queue_reason: Mapped[str | None] = mapped_column(String(300))
    flags: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    dispatch_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_contractor_update_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_jobs_geom", "geom", postgresql_using="gist"),
        Index("ix_jobs_open_asset", "asset_id", "category_code", postgresql_where="status NOT IN ('completed','closed','cancelled','duplicate')"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_due_at", "due_at"),
        # The SLA sweep reads only jobs not yet flagged whose deadline has come (partial indexes).
        Index("ix_jobs_risk_pending", "risk_at", postgresql_where="at_risk_at IS NULL"),
        Index("ix_jobs_breach_pending", "due_at", postgresql_where="breached_at IS NULL"),
        # A crew's jobs (GET /me/jobs, and counting open jobs against capacity at dispatch).
        Index("ix_jobs_crew_id", "crew_id", postgresql_where="crew_id IS NOT NULL"),
        # Lists and searches at a million jobs (migration 0020): newest first (GET /jobs), a contractor's own
        # (GET /contractor/jobs), and the contact centre's find by asset, contractor's reference or street.
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_contractor_updated", "contractor_id", "updated_at", "id",
              postgresql_where="contractor_id IS NOT NULL"),
        Index("ix_jobs_asset_id", "asset_id", postgresql_where="asset_id IS NOT NULL"),
        Index("ix_jobs_contractor_ref_lower", text("lower(contractor_ref)"),
              postgresql_where="contractor_ref IS NOT NULL"),
        Index("ix_jobs_street_trgm", "street", postgresql_using="gin", postgresql_ops={"street": "gin_trgm_ops"}),
        # The dispatch queue: jobs waiting for a supervisor, soonest due first (migration 0021).
        Index("ix_jobs_queued", "due_at", "id", postgresql_where="status = 'triage' OR queue_reason IS NOT NULL"),
    )


class JobEvent(Base):
    """One change to a job: who, what, when, where, before/after. Never updated or deleted."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str] = mapped_column(String(32))
    geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    before: Mapped[dict | None] = mapped_column(JSONB)
    after: Mapped[dict | None] = mapped_column(JSONB)
    data: Mapped[dict] = mapped_column(JSONB, default=dict)
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)
