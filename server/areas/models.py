"""Area polygons (boundary, wards, crew zones, contractor service areas)."""
from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.config import get_settings
from server.db import Base

SRID = get_settings().srid
KINDS = ("boundary", "ward", "crew_zone", "contractor_area")


class Area(Base):
    """A named polygon of one kind."""

    __tablename__ = "areas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    geom = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False), nullable=False)
    attributes: Mapped[dict] = mapped_column(JSONB, default=dict)
    repaired: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (
        UniqueConstraint("kind", "code", name="uq_areas_kind_code"),
        Index("ix_areas_kind_geom", "kind", "geom", postgresql_using="gist"),
    )


class AreaPart(Base):
    """A piece of an area of at most 64 vertices (ST_Subdivide), for fast point-in-area tests by GiST.

    Written only by the database: a trigger on `areas` (migration 0004) keeps the parts in step.
    """

    __tablename__ = "area_parts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    geom = mapped_column(Geometry("POLYGON", srid=SRID, spatial_index=False), nullable=False)

    __table_args__ = (Index("ix_area_parts_kind_geom", "kind", "geom", postgresql_using="gist"),)
