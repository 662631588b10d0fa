"""The contractor adapter contract: DTOs, errors and the `ContractorAdapter` base class.

An adapter turns one `WorkOrder` into a contractor's order and the contractor's updates back
into `StatusUpdate`s in *our* status vocabulary (`OUR_STATUSES`). It does no retries and
keeps no state of its own: the outbox owns backoff (using `ContractorError.retryable` and
`retry_after`), the server stores poll cursors and deduplicates updates by `update_id`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from contractors.signing import SignatureError

__all__ = [
    "OUR_STATUSES", "ContractorAdapter", "ContractorError", "PayloadError", "SignatureError", "StatusMapError",
    "StatusUpdate", "SubmitResult", "UpdateBatch", "WorkOrder", "check_status_map",
]

# What a contractor can tell us, in our words. These are job statuses (server/jobs/rules.py) except
# "rejected": the contractor will not do the job, which the server turns into sent → new (re-dispatch).
OUR_STATUSES = ("accepted", "scheduled", "in_progress", "on_hold", "completed", "rejected", "cancelled", "duplicate")


class ContractorError(Exception):
    """Calling the contractor failed; `retryable` says whether the outbox should try again later."""

    def __init__(self, message: str, retryable: bool, status_code: int | None = None, *,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code  # the contractor's HTTP status, None for timeouts/connection errors
        self.retry_after = retry_after  # seconds, when the contractor said (Retry-After on 429/503)

    def __repr__(self) -> str:
        return (f"ContractorError({self.message!r}, retryable={self.retryable}, status_code={self.status_code}, "
                f"retry_after={self.retry_after})")


class PayloadError(ValueError):
    """An inbound webhook or polled update we cannot read (bad JSON, missing fields): answer 400/422."""


class StatusMapError(ValueError):
    """An adapter's status map does not cover the contractor's vocabulary, or maps to unknown statuses."""


def _aware(name: str, value: datetime | None) -> None:
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class WorkOrder:
    """One job sent to one contractor. Build it once and keep `to_dict()` in the outbox row, so
    retries send the same bytes under the same `idempotency_key`."""

    job_reference: str
    idempotency_key: str
    category: str
    priority: str
    description: str
    lat: float
    lon: float
    due_at: datetime
    asset_ref: str | None = None
    asset_layer: str | None = None
    street: str | None = None
    ward: str | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    photos: tuple[str, ...] = ()  # absolute URLs the contractor can fetch

    def __post_init__(self) -> None:
        for name in ("job_reference", "idempotency_key", "category", "priority"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"WorkOrder.{name} must be a non-empty string")
        if not (math.isfinite(self.lat) and -90 <= self.lat <= 90 and math.isfinite(self.lon)
                and -180 <= self.lon <= 180):
            raise ValueError(f"WorkOrder lat/lon out of range: {self.lat}, {self.lon}")
        _aware("WorkOrder.due_at", self.due_at)
        object.__setattr__(self, "answers", dict(self.answers))
        object.__setattr__(self, "photos", tuple(self.photos))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the outbox payload)."""
        return {"job_reference": self.job_reference, "idempotency_key": self.idempotency_key,
                "category": self.category, "priority": self.priority, "description": self.description,
                "lat": self.lat, "lon": self.lon, "due_at": _iso(self.due_at), "asset_ref": self.asset_ref,
                "asset_layer": self.asset_layer, "street": self.street, "ward": self.ward,
                "answers": dict(self.answers), "photos": list(self.photos)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkOrder:
        """Inverse of `to_dict`."""
        return cls(**{**data, "due_at": _dt(data["due_at"]), "photos": tuple(data.get("photos") or ())})


@dataclass(frozen=True)
class SubmitResult:
    """The contractor took the order: its own reference for it."""

    contractor_ref: str
    accepted_at: datetime
    already_existed: bool = False  # the contractor already had it (idempotent replay or duplicate answer)

    def __post_init__(self) -> None:
        _aware("SubmitResult.accepted_at", self.accepted_at)


@dataclass(frozen=True)
class StatusUpdate:
    """One change reported by a contractor, pushed or polled; `update_id` is unique per contractor.

    `status` is ours (one of OUR_STATUSES) or None when the contractor sent a status outside its
    declared vocabulary: record it (with `raw`) and do not move the job.
    """

    update_id: str
    contractor_ref: str
    status: str | None
    contractor_status: str
    occurred_at: datetime
    job_reference: str | None = None  # when the contractor echoes it; match on contractor_ref otherwise
    note: str | None = None
    scheduled_for: datetime | None = None
    lat: float | None = None  # completion GPS fix, when given
    lon: float | None = None
    photo_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as received, for the audit

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in OUR_STATUSES:
            raise ValueError(f"StatusUpdate.status {self.status!r} is not one of {OUR_STATUSES}")
        _aware("StatusUpdate.occurred_at", self.occurred_at)
        _aware("StatusUpdate.scheduled_for", self.scheduled_for)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (raw included)."""
        return {"update_id": self.update_id, "contractor_ref": self.contractor_ref, "status": self.status,
                "contractor_status": self.contractor_status, "occurred_at": _iso(self.occurred_at),
                "job_reference": self.job_reference, "note": self.note, "scheduled_for": _iso(self.scheduled_for),
                "lat": self.lat, "lon": self.lon, "photo_url": self.photo_url, "raw": self.raw}


@dataclass(frozen=True)
class ContractorNote:
    """A comment on an order (a resident's Open311 update), passed on without changing its status."""

    update_id: str  # stable per comment: a repeat is the same note
    text: str
    media_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdateBatch:
    """Updates since a cursor, oldest first, and the cursor to store once they are recorded."""

    updates: tuple[StatusUpdate, ...]
    cursor: str | None  # opaque; unchanged when nothing new arrived
    has_more: bool = False  # poll again straight away

    def __post_init__(self) -> None:
        object.__setattr__(self, "updates", tuple(self.updates))


def check_status_map(contractor: str, statuses: Sequence[str], status_map: Mapping[str, str]) -> None:
    """Raise StatusMapError unless every contractor status maps to one of OUR_STATUSES (and nothing else)."""
    problems = []
    missing = [s for s in statuses if s not in status_map]
    if missing:
        problems.append(f"no mapping for contractor status(es) {', '.join(missing)}")
    unknown = sorted(k for k in status_map if k not in statuses)
    if unknown:
        problems.append(f"mapping for status(es) the contractor does not have: {', '.join(unknown)}")
    bad = sorted(f"{k} → {v!r}" for k, v in status_map.items() if v not in OUR_STATUSES)
    if bad:
        problems.append(f"unknown target status(es) {', '.join(bad)} (ours are {', '.join(OUR_STATUSES)})")
    if problems:
        raise StatusMapError(f"contractor {contractor!r}: status map is wrong: " + "; ".join(problems))


class ContractorAdapter(ABC):
    """Base for adapters. Subclasses set `name`, `config_model` (a pydantic model) and `statuses`,
    implement `submit`, `cancel`, `fetch_updates` (and `parse_webhook` when they take pushes),
    and fill `self.status_map` (contractor status → ours) in `__init__`."""

    name: ClassVar[str] = "abstract"
    config_model: ClassVar[Any] = None
    statuses: tuple[str, ...] = ()  # the contractor's status vocabulary
    supports_push: ClassVar[bool] = False
    supports_poll: ClassVar[bool] = True
    status_map: Mapping[str, str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ContractorAdapter:
        """Build from a plain config dict (raises pydantic.ValidationError on bad settings)."""
        return cls(cls.config_model.model_validate(dict(config)))

    @abstractmethod
    def submit(self, order: WorkOrder) -> SubmitResult:
        """Place the order; safe to repeat with the same idempotency_key (never two orders)."""

    @abstractmethod
    def cancel(self, contractor_ref: str, reason: str) -> None:
        """Withdraw an order; cancelling an already cancelled order is not an error."""

    @abstractmethod
    def fetch_updates(self, cursor: str | None) -> UpdateBatch:
        """Updates after `cursor` (None: from the start of what the contractor offers), oldest first."""

    def add_note(self, contractor_ref: str, note: ContractorNote) -> bool:
        """Pass a comment on an order (a resident's update) to the contractor; False if it has no way to take
        one (the comment stays on our timeline). Safe to repeat with the same note.update_id."""
        return False

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[StatusUpdate]:
        """Verify a pushed request and read its updates; raises SignatureError or PayloadError."""
        raise PayloadError(f"contractor adapter {self.name!r} does not take pushed updates")

    def map_status(self, contractor_status: str) -> str | None:
        """Our status for a contractor status, None when it is outside the map."""
        return self.status_map.get(contractor_status)

    def validate(self) -> None:
        """Fail loudly (StatusMapError) if the status map does not cover the contractor's vocabulary."""
        check_status_map(self.name, self.statuses, self.status_map)

    def close(self) -> None:
        """Release connections (the registry calls this on clear())."""
