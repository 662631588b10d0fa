"""Request and response shapes for report intake."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from server.datetimes import IsoDatetime
from server.notifications.schemas import ContactIn

# Anything that a browser would treat as markup. Descriptions are plain text.
_TAG = re.compile(r"<\s*[a-zA-Z!/?]")
MAX_FUTURE = timedelta(minutes=10)
MAX_AGE = timedelta(days=60)


class ReportIn(BaseModel):
    """A report from the field app or the contact centre."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    client_id: uuid.UUID = Field(description="UUID made on the device; the idempotency key")
    category: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, strict=True)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, strict=True)
    accuracy_m: float | None = Field(None, ge=0, le=10_000, allow_inf_nan=False, strict=True)
    observed_at: IsoDatetime
    location_provider: Literal["gps", "network", "fused", "manual", "map", "unknown"] | None = None
    mock_location: StrictBool = False
    asset_ref: str | None = Field(None, min_length=1, max_length=100)
    description: str = Field("", max_length=4000)
    answers: dict[str, Any] = Field(default_factory=dict)
    # Kept apart from the report (reporter_contacts) and left out of the idempotency hash: a retry that adds
    # or drops a contact is the same report.
    contact: ContactIn | None = Field(None, exclude=True,
                                      description="the reporter's contact and choice of updates (optional)")

    @field_validator("observed_at")
    @classmethod
    def _plausible_time(cls, v: datetime) -> datetime:
        now = datetime.now(timezone.utc)
        if v > now + MAX_FUTURE:
            raise ValueError("observed_at is in the future; check the device clock")
        if v < now - MAX_AGE:
            raise ValueError(f"observed_at is more than {MAX_AGE.days} days ago")
        return v

    @field_validator("description")
    @classmethod
    def _plain_text(cls, v: str) -> str:
        if _TAG.search(v):
            raise ValueError("description must be plain text, without HTML tags")
        return v

    @field_validator("answers")
    @classmethod
    def _answer_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) > 50:
            raise ValueError("too many answers")
        return v


class AssetOut(BaseModel):
    layer: str
    ref: str
    distance_m: float
    name: str | None = None


class JobSummary(BaseModel):
    reference: str
    status: str
    priority: str
    category: str
    asset: AssetOut | None
    ward: str | None
    street: str | None
    due_at: str | None
    due_in_words: str | None = None
    attached: bool
    demand_count: int
    triage_reason: str | None = None


class ReportOut(BaseModel):
    reference: str
    client_id: uuid.UUID
    received_at: str
    channel: str
    job: JobSummary
    snap: dict[str, Any]
    warnings: list[str] = Field(default_factory=list)
