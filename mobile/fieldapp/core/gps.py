"""How good a GPS fix is for a category: the badge text, the warnings and the mock flag (pure)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .models import Category, Fix

STALE_SECONDS = 60.0
PROVIDERS = ("gps", "network", "fused", "manual", "map", "unknown")


@dataclass(frozen=True)
class FixQuality:
    """The badge for a fix: `level` is good / poor / none."""

    level: str
    badge: str
    warnings: tuple[str, ...]
    mock: bool


def is_mock(fix: Fix) -> bool:
    """A fix is flagged when the provider says mock, or it claims a perfect 0 m (no real receiver does)."""
    if fix.mock:
        return True
    return fix.accuracy_m is not None and fix.accuracy_m <= 0 and fix.provider not in ("manual", "map")


def provider_for_api(provider: str) -> str:
    """The provider name as the API accepts it (anything else is 'unknown')."""
    return provider if provider in PROVIDERS else "unknown"


def _age_words(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def quality(fix: Fix | None, category: Category | None, now: float | None = None) -> FixQuality:
    """Badge and warnings for a fix against the category's max accuracy."""
    if fix is None:
        return FixQuality("none", "No GPS fix yet", ("Waiting for a GPS fix; you can place the pin by hand.",), False)
    now = time.time() if now is None else now
    age = fix.age(now)
    acc = "±? m" if fix.accuracy_m is None else f"±{fix.accuracy_m:.0f} m"
    badge = f"{fix.provider.upper()} {acc} · {_age_words(age)}"
    warnings = []
    mock = is_mock(fix)
    if mock:
        warnings.append("Mock location: this fix will be flagged on the report.")
    if category is not None and fix.accuracy_m is not None and fix.accuracy_m > category.max_accuracy_m:
        warnings.append(f"Accuracy {fix.accuracy_m:.0f} m is worse than the {category.max_accuracy_m:.0f} m "
                        f"{category.name.lower()} needs: wait for a better fix or place the pin.")
    if fix.accuracy_m is None and fix.provider not in ("manual", "map"):
        warnings.append("The device gave no accuracy for this fix.")
    if age > STALE_SECONDS:
        warnings.append(f"The fix is {_age_words(age)}: move on only if you have not moved.")
    level = "poor" if warnings else "good"
    return FixQuality(level, badge, tuple(warnings), mock)
