"""API tokens: stored hashed, with a role and an optional contractor or crew scope."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base

ROLES = ("field_worker", "crew", "advisor", "supervisor", "contractor", "admin", "open311_client")
# An Open311 front end (FixMyStreet…): creates requests and posts citizen updates through /open311 only.
# Its token's name is the client's name ("fixmystreet"); the client, not the token, owns its requests.
OPEN311_CLIENT = "open311_client"


class ApiToken(Base):
    """A bearer token; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    contractor_id: Mapped[int | None] = mapped_column(ForeignKey("contractors.id"))
    crew_id: Mapped[int | None] = mapped_column(ForeignKey("crews.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
