"""Choosing the asset a report is about (pure): nearest within radius, runner-up, confidence."""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class Candidate:
    """An asset near the reported point, with its distance in metres."""

    asset_id: int
    ref: str
    distance_m: float
    name: str | None = None


@dataclass(frozen=True)
class Snap:
    """The outcome of snapping: the chosen asset (or none, with a reason) and how sure we are."""

    chosen: Candidate | None
    runner_up: Candidate | None
    confidence: float
    reason: str
    hint_used: bool = False


def rounded(x: float, places: int) -> float:
    """`x` to `places` decimals as PostgreSQL rounds a float8 (`round(x::numeric, places)`: its 15 significant
    digits, halves away from zero), so the figures the database fills in for a batched report
    (kerbside_intake_ready, migration 0022) are the ones this code writes for the others."""
    return float(Decimal(f"{x:.15g}").quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def confidence(d1: float, d2: float | None, accuracy_m: float | None, radius_m: float) -> float:
    """How sure we are that the nearest asset is the one meant, in [0, 1].

    Two things make us unsure: an asset far from the fix (relative to the search radius, after
    allowing for GPS error), and a runner-up almost as close as the winner when the fix is poor.
    """
    sigma = max(accuracy_m or 0.0, 3.0)
    distance_factor = 1.0 if d1 <= sigma else max(0.0, 1.0 - (d1 - sigma) / max(radius_m, 1e-6))
    if d2 is None:
        separation_factor = 1.0
    else:
        separation_factor = 1.0 - 0.5 * math.exp(-max(d2 - d1, 0.0) / sigma)
    return rounded(max(0.0, min(1.0, distance_factor * separation_factor)), 3)


def choose(candidates: list[Candidate], radius_m: float, accuracy_m: float | None,
           hint: Candidate | None = None) -> Snap:
    """Pick the asset: a valid hint within radius wins, else the nearest within radius, else none."""
    ranked = sorted(candidates, key=lambda c: (c.distance_m, c.asset_id))
    in_range = [c for c in ranked if c.distance_m <= radius_m]
    if hint is not None and hint.distance_m <= radius_m:
        others = [c for c in in_range if c.asset_id != hint.asset_id]
        runner = others[0] if others else None
        conf = confidence(hint.distance_m, runner.distance_m if runner else None, accuracy_m, radius_m)
        # The worker pointed at it: never less sure than "probably".
        return Snap(hint, runner, max(conf, 0.6), "hint", hint_used=True)
    if not in_range:
        nearest = ranked[0].distance_m if ranked else None
        reason = (f"no asset within {radius_m:g} m" if nearest is None
                  else f"no asset within {radius_m:g} m (nearest is {nearest:.0f} m away)")
        return Snap(None, ranked[0] if ranked else None, 0.0, reason)
    winner = in_range[0]
    runner = ranked[1] if len(ranked) > 1 else None
    conf = confidence(winner.distance_m, runner.distance_m if runner else None, accuracy_m, radius_m)
    return Snap(winner, runner, conf, "nearest")
