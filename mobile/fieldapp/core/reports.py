"""A report being written on the device (a draft) and the payload it becomes when queued (pure)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .forms import clean_answers
from .gps import is_mock, provider_for_api
from .models import Asset, Category, Fix


@dataclass
class Draft:
    """What the report screen holds until Send."""

    category: Category
    fix: Fix | None = None
    pin: tuple[float, float] | None = None  # placed by hand (overrides the fix's position)
    pin_source: str = "manual"  # 'manual' (nudged) or 'map' (dragged on the map)
    asset: Asset | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    photos: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    def position(self) -> tuple[float, float] | None:
        """Where the report is: the pin if placed, else the fix."""
        if self.pin is not None:
            return self.pin
        return (self.fix.lat, self.fix.lon) if self.fix else None


def build_payload(draft: Draft) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(POST /api/v1/reports body without client_id, errors by field); errors block queueing."""
    errors: dict[str, str] = {}
    answers, answer_errors = clean_answers(draft.category, draft.answers)
    errors.update({f"answers.{k}": v for k, v in answer_errors.items()})
    where = draft.position()
    if where is None:
        errors["location"] = "wait for a GPS fix or place the pin"
    if errors:
        return None, errors
    lat, lon = where
    if draft.pin is not None:
        provider, accuracy = draft.pin_source, None  # a placed pin has no measured accuracy
    else:
        provider, accuracy = provider_for_api(draft.fix.provider), draft.fix.accuracy_m
    payload: dict[str, Any] = {
        "category": draft.category.code,
        "lat": round(float(lat), 7),
        "lon": round(float(lon), 7),
        "accuracy_m": float(accuracy) if accuracy is not None else None,
        "observed_at": datetime.fromtimestamp(draft.started_at, timezone.utc).isoformat(timespec="seconds"),
        "location_provider": provider,
        # A mock fix taints the report even when the pin was then moved by hand.
        "mock_location": bool(draft.fix is not None and is_mock(draft.fix)),
        "description": draft.description.strip(),
        "answers": answers,
    }
    if draft.asset is not None:
        payload["asset_ref"] = draft.asset.ref
    return payload, {}
