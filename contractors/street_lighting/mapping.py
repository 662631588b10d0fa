"""Pure translation between our DTOs and the street-lighting contractor's JSON (no I/O).

Their order:   {"client_reference", "category", "priority": "P1".."P4", "description", "due_by",
                "location": {"lat", "lon", "street", "ward"}, "asset": {"unit_number", "layer"} | null,
                "details": {...answers}, "photos": [url, ...]}
Their update:  {"seq", "update_id", "reference", "client_reference", "status", "occurred_at", "note",
                "scheduled_for", "fix": {"lat", "lon"} | null, "photo_url"}
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from contractors.base import PayloadError, StatusUpdate, SubmitResult, WorkOrder

STATUSES = ("ACKNOWLEDGED", "SCHEDULED", "IN_PROGRESS", "ON_HOLD", "FIXED", "NOT_FOUND", "REJECTED", "CANCELLED")

DEFAULT_STATUS_MAP: dict[str, str] = {
    "ACKNOWLEDGED": "accepted",
    "SCHEDULED": "scheduled",
    "IN_PROGRESS": "in_progress",
    "ON_HOLD": "on_hold",
    "FIXED": "completed",
    "NOT_FOUND": "rejected",  # no such column where we said: back to us to check the asset
    "REJECTED": "rejected",
    "CANCELLED": "cancelled",
}

DEFAULT_PRIORITY_MAP: dict[str, str] = {"emergency": "P1", "urgent": "P2", "normal": "P3", "low": "P4"}


def order_json(order: WorkOrder, priority_map: Mapping[str, str] = DEFAULT_PRIORITY_MAP) -> dict[str, Any]:
    """Their order body for a WorkOrder. Deterministic: the same order gives the same JSON (idempotency)."""
    asset = {"unit_number": order.asset_ref, "layer": order.asset_layer} if order.asset_ref else None
    return {
        "client_reference": order.job_reference,
        "category": order.category,
        # An unknown priority goes through as-is: the contractor says no (4xx) rather than we guess.
        "priority": priority_map.get(order.priority, order.priority),
        "description": order.description,
        "due_by": order.due_at.isoformat(),
        "location": {"lat": order.lat, "lon": order.lon, "street": order.street, "ward": order.ward},
        "asset": asset,
        "details": dict(order.answers),
        "photos": list(order.photos),
    }


def _time(item: Mapping[str, Any], key: str, required: bool) -> datetime | None:
    value = item.get(key)
    if value is None and not required:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise PayloadError(f"{key} must be an ISO 8601 time, got {value!r}") from None
    if parsed.utcoffset() is None:
        raise PayloadError(f"{key} must carry a UTC offset, got {value!r}")
    return parsed


def _text(item: Mapping[str, Any], key: str, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise PayloadError(f"update field {key!r} is missing or not text: {value!r}")
    return str(value)


def update_from_json(item: Any, status_map: Mapping[str, str]) -> StatusUpdate:
    """One of their updates as ours; PayloadError when it cannot be read."""
    if not isinstance(item, Mapping):
        raise PayloadError(f"an update must be an object, got {type(item).__name__}")
    fix = item.get("fix") or {}
    if not isinstance(fix, Mapping):
        raise PayloadError("update field 'fix' must be an object")
    try:
        lat = float(fix["lat"]) if fix.get("lat") is not None else None
        lon = float(fix["lon"]) if fix.get("lon") is not None else None
    except (TypeError, ValueError):
        raise PayloadError(f"update fix is not numeric: {fix!r}") from None
    status = _text(item, "status")
    return StatusUpdate(
        update_id=_text(item, "update_id"),
        contractor_ref=_text(item, "reference"),
        status=status_map.get(status),
        contractor_status=status,
        occurred_at=_time(item, "occurred_at", True),
        job_reference=_text(item, "client_reference", False),
        note=_text(item, "note", False),
        scheduled_for=_time(item, "scheduled_for", False),
        lat=lat, lon=lon,
        photo_url=_text(item, "photo_url", False),
        raw=dict(item),
    )


def updates_from_json(data: Any, status_map: Mapping[str, str]) -> list[StatusUpdate]:
    """The updates in a push or poll body, in the contractor's sequence order (batches may arrive shuffled)."""
    items = data.get("updates") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise PayloadError("body must be an object with an 'updates' list")

    def seq(item: Any) -> tuple[int, str]:
        value = item.get("seq") if isinstance(item, Mapping) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise PayloadError(f"update 'seq' must be an integer, got {value!r}")
        return value, str(item.get("update_id"))

    return [update_from_json(item, status_map) for item in sorted(items, key=seq)]


def submit_result(data: Any, already_existed: bool = False) -> SubmitResult:
    """Their answer to an order (or to a duplicate) as a SubmitResult; PayloadError when unreadable."""
    if not isinstance(data, Mapping):
        raise PayloadError("order answer must be an object")
    return SubmitResult(contractor_ref=_text(data, "reference"), accepted_at=_time(data, "accepted_at", True),
                        already_existed=already_existed)
