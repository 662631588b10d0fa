"""Reports (one observation by one person) and their photos."""
from __future__ import annotations

import uuid
from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.config import get_settings
from server.db import Base

SRID = get_settings().srid
CHANNELS = ("field_app", "contact_centre", "open311", "web")


class Report(Base):
    """One report; client_id is the device's idempotency key."""

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    client_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    payload_hash: Mapped[str] = mapped_column(String(64))
    # category_code, ward_id and token_id are guarded from the referenced tables' side (migration 0006: a key
    # would lock the category's, the ward's and the token's row in every report's transaction).
    category_code: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False), nullable=False)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    location_provider: Mapped[str | None] = mapped_column(String(32))
    mock_location: Mapped[bool] = mapped_column(Boolean, default=False)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    asset_hint: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    answers: Mapped[dict] = mapped_column(JSONB, default=dict)
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    snap_distance_m: Mapped[float | None] = mapped_column(Float)
    runner_up_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    runner_up_distance_m: Mapped[float | None] = mapped_column(Float)
    snap_confidence: Mapped[float | None] = mapped_column(Float)
    ward_id: Mapped[int | None] = mapped_column(Integer)
    street: Mapped[str | None] = mapped_column(String(200))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    token_id: Mapped[int | None] = mapped_column(Integer)
    reporter: Mapped[dict] = mapped_column(JSONB, default=dict)
    external_id: Mapped[str | None] = mapped_column(String(100))
    # The first answer given for this client_id, replayed verbatim on a retry.
    response: Mapped[dict] = mapped_column(JSONB, default=dict)

    __table_args__ = (Index("ix_reports_job_id", "job_id"),)


class Photo(Base):
    """A verified, metadata-stripped image with a thumbnail, stored on disk."""

    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[str] = mapped_column(String(32), default="report")
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(500))
    thumb_path: Mapped[str] = mapped_column(String(500))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_photos_job_id", "job_id"),)
