"""Road graph and versioned day plans (tables of migration 0010)."""
from __future__ import annotations

from datetime import date, datetime

from geoalchemy2 import Geometry
from sqlalchemy import (BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String,
                        UniqueConstraint, func, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.config import get_settings
from server.db import Base

SRID = get_settings().srid


class RoadNode(Base):
    """A junction or dead end: segment ends snapped together; `main` = in the largest component."""

    __tablename__ = "road_nodes"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False), nullable=False)
    component: Mapped[int] = mapped_column(BigInteger)
    main: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_road_nodes_geom", "geom", postgresql_using="gist"),
        # Snapping looks only at the main component (KNN on this partial index).
        Index("ix_road_nodes_main_geom", "geom", postgresql_using="gist", postgresql_where=text("main")),
    )


class RoadEdge(Base):
    """A routable piece of a road segment; cost and reverse_cost in seconds (-1: not that way)."""

    __tablename__ = "road_edges"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    asset_id: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[int] = mapped_column(BigInteger)
    target: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[float] = mapped_column(Float)
    reverse_cost: Mapped[float] = mapped_column(Float)
    length_m: Mapped[float] = mapped_column(Float)
    road_class: Mapped[str] = mapped_column(String(100))
    speed_kmh: Mapped[float] = mapped_column(Float)
    geom = mapped_column(Geometry("LINESTRING", srid=SRID, spatial_index=False), nullable=False)

    __table_args__ = (
        Index("ix_road_edges_source", "source"),
        Index("ix_road_edges_target", "target"),
        Index("ix_road_edges_asset", "asset_id"),
    )


class DayPlan(Base):
    """One version of a day's plan for all crews; exactly one version per day is current."""

    __tablename__ = "day_plans"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer)
    current: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    totals: Mapped[dict] = mapped_column(JSONB, default=dict)

    __table_args__ = (
        UniqueConstraint("day", "version", name="uq_day_plans_day_version"),
        Index("ux_day_plans_current", "day", unique=True, postgresql_where=text("current")),
    )


class PlanStop(Base):
    """A job in a crew's ordered route within one plan version."""

    __tablename__ = "plan_stops"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("day_plans.id", ondelete="CASCADE"))
    crew_id: Mapped[int] = mapped_column(ForeignKey("crews.id"))
    seq: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    node_id: Mapped[int] = mapped_column(BigInteger)
    arrive_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    depart_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    travel_s: Mapped[int] = mapped_column(Integer)
    service_s: Mapped[int] = mapped_column(Integer)
    fixed: Mapped[bool] = mapped_column(Boolean, default=False)
    arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("plan_id", "job_id", name="uq_plan_stops_plan_job"),
        UniqueConstraint("plan_id", "crew_id", "seq", name="uq_plan_stops_plan_crew_seq"),
    )


class PlanRoute(Base):
    """A crew's route totals within one plan version."""

    __tablename__ = "plan_routes"
    plan_id: Mapped[int] = mapped_column(ForeignKey("day_plans.id", ondelete="CASCADE"), primary_key=True)
    crew_id: Mapped[int] = mapped_column(ForeignKey("crews.id"), primary_key=True)
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    travel_s: Mapped[int] = mapped_column(Integer)
    service_s: Mapped[int] = mapped_column(Integer)
    stops: Mapped[int] = mapped_column(Integer)


class PlanUnassigned(Base):
    """A job the plan could not fit, with the reason (it also waits on the supervisor's queue)."""

    __tablename__ = "plan_unassigned"
    plan_id: Mapped[int] = mapped_column(ForeignKey("day_plans.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(300))
