"""Plain data the field app works with: categories, GPS fixes, queue items, assets, crew jobs."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

# Queue states, in the words the queue screen uses.
WAITING, SENDING, SENT, FAILED = "waiting", "sending", "sent", "failed"
STATES = (WAITING, SENDING, SENT, FAILED)
REPORT, JOB_STATUS = "report", "job_status"


@dataclass(frozen=True)
class Question:
    """One question of a category (an Open311 attribute)."""

    code: str
    prompt: str
    datatype: str
    required: bool = False
    order: int = 0
    values: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_api(cls, d: dict) -> Question:
        """From the server's category JSON."""
        return cls(d["code"], d["prompt"], d["datatype"], bool(d.get("required")), int(d.get("order") or 0),
                   tuple((v["key"], v["name"]) for v in d.get("values") or ()))


@dataclass(frozen=True)
class Category:
    """A category as GET /api/v1/categories gives it (cached for offline use)."""

    code: str
    name: str
    group: str
    layer: str | None
    max_accuracy_m: float
    snap_radius_m: float = 0.0
    questions: tuple[Question, ...] = ()
    removed: bool = False  # no longer offered by the server (drafts keep it)

    @classmethod
    def from_api(cls, d: dict, removed: bool = False) -> Category:
        """From the server's category JSON."""
        qs = sorted((Question.from_api(q) for q in d.get("questions") or ()), key=lambda q: (q.order, q.code))
        return cls(d["code"], d["name"], d.get("group") or "", d.get("layer"), float(d["max_accuracy_m"]),
                   float(d.get("snap_radius_m") or 0), tuple(qs), removed)


@dataclass(frozen=True)
class Fix:
    """A position from the device: WGS84, accuracy (m), provider, mock flag and when (epoch seconds)."""

    lat: float
    lon: float
    accuracy_m: float | None
    provider: str = "gps"
    mock: bool = False
    at: float = field(default_factory=time.time)

    def age(self, now: float | None = None) -> float:
        """Seconds since the fix was taken."""
        return max(0.0, (now if now is not None else time.time()) - self.at)


@dataclass
class PhotoItem:
    """A photo waiting to go with a queue item (its client_id is the upload's idempotency key)."""

    id: int
    item_id: int
    client_id: str
    path: str
    kind: str
    server_id: int | None = None


@dataclass
class QueueItem:
    """One thing to send: a report or a crew status change, with its photos and sending state."""

    id: int
    client_id: str
    kind: str
    state: str
    payload: dict[str, Any]
    target: str | None = None  # the job reference of a status change
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    error_code: str | None = None
    result: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    photos: list[PhotoItem] = field(default_factory=list)

    @property
    def reference(self) -> str | None:
        """The server's reference for a report once it has been received."""
        return (self.result or {}).get("reference")

    @property
    def job_reference(self) -> str | None:
        """The job the server gave (reports) or the job moved (status changes)."""
        if self.kind == JOB_STATUS:
            return self.target
        return ((self.result or {}).get("job") or {}).get("reference")

    @property
    def due_at(self) -> str | None:
        """The due date the server gave for the job."""
        return ((self.result or {}).get("job") or {}).get("due_at")


@dataclass(frozen=True)
class Asset:
    """An asset near a point (from OGC API Features or the cache), with its distance."""

    layer: str
    ref: str
    name: str | None
    lat: float
    lon: float
    distance_m: float = 0.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; plenty for tens of metres)."""
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point north_m/east_m metres away (for nudging a pin)."""
    dlat = north_m / 111_320.0
    dlon = east_m / (111_320.0 * max(0.01, math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon
