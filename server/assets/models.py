"""Asset layers and assets (lamp columns, bins, benches, road segments)."""
from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint,
                        func, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.config import get_settings
from server.db import Base

SRID = get_settings().srid


class AssetLayer(Base):
    """A named layer of assets from one source file (or generator)."""

    __tablename__ = "asset_layers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    geometry_type: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(500))
    attribution: Mapped[str] = mapped_column(String(500), default="")
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    snap_radius_m: Mapped[float] = mapped_column(Float, default=25.0)
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    imported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The extent of the layer's assets in the storage CRS (null when it has none), kept by the database function
    # kerbside_layer_extent(id) (migration 0012), which whoever writes a layer's assets calls; read by /ogc.
    extent_xmin: Mapped[float | None] = mapped_column(Float)
    extent_ymin: Mapped[float | None] = mapped_column(Float)
    extent_xmax: Mapped[float | None] = mapped_column(Float)
    extent_ymax: Mapped[float | None] = mapped_column(Float)


class Asset(Base):
    """One physical thing with a stable external reference and a place."""

    __tablename__ = "assets"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("asset_layers.id", ondelete="CASCADE"))
    external_ref: Mapped[str] = mapped_column(String(100))
    ref_derived: Mapped[bool] = mapped_column(Boolean, default=False)
    geom = mapped_column(Geometry(srid=SRID, spatial_index=False), nullable=False)
    name: Mapped[str | None] = mapped_column(String(300))
    attributes: Mapped[dict] = mapped_column(JSONB, default=dict)
    maintainer: Mapped[str | None] = mapped_column(String(100))
    ward_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    street: Mapped[str | None] = mapped_column(String(200))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("layer_id", "external_ref", name="uq_assets_layer_ref"),
        # btree_gist: KNN within one layer uses a single index scan.
        Index("ix_assets_layer_geom", "layer_id", "geom", postgresql_using="gist"),
        # The contact centre's find: an asset by its reference in any case (migration 0020).
        Index("ix_assets_external_ref_lower", text("lower(external_ref)")),
    )
