"""Inbound contractor updates, deduplicated by (contractor, update_id)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base


class InboundUpdate(Base):
    """One update from a contractor, pushed or polled; the raw payload is kept."""

    __tablename__ = "inbound_updates"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contractor_id: Mapped[int] = mapped_column(ForeignKey("contractors.id"))
    update_id: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    raw: Mapped[dict] = mapped_column(JSONB)
    result: Mapped[str] = mapped_column(String(64), default="applied")
    detail: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (UniqueConstraint("contractor_id", "update_id", name="uq_inbound_contractor_update"),)


class WorkerHeartbeat(Base):
    """The last time each worker process said it was alive."""

    __tablename__ = "worker_heartbeats"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    info: Mapped[dict] = mapped_column(JSONB, default=dict)


class ImportRun(Base):
    """One GIS import of one manifest entry: counts and examples of what was skipped."""

    __tablename__ = "import_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry: Mapped[str] = mapped_column(String(100))
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
