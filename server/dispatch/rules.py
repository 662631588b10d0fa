"""Who does a job, pure: dispatch rules (data, gis_data/dispatch.yaml) and the choice of crew.

A job is described by `JobFacts` (category, asset maintainer, ward and the zones/areas holding it);
the first matching `Rule` names a crew team or a contractor. For a team, `choose_crew` keeps the
crews that are active, have the skill (the category), cover the job's place (their zone holds it,
or they have no zone), are on shift and are under capacity; then it takes the least loaded, the
nearest (last known position) among equals, and the first by name after that. When no crew is
left, the reason names the filter that emptied the list, so a supervisor sees why a job waits.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

AREA_KINDS = ("ward", "crew_zone", "contractor_area")


class RulesError(ValueError):
    """dispatch.yaml is malformed."""


class Rule(BaseModel):
    """One dispatch rule: conditions (None = any) and a target (a crew team or a contractor)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=100)
    category: tuple[str, ...] | None = None
    maintainer: tuple[str, ...] | None = None
    ward: tuple[str, ...] | None = None
    crew_zone: tuple[str, ...] | None = None
    contractor_area: tuple[str, ...] | None = None
    crew_team: str | None = None
    contractor: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Rule:
        if (self.crew_team is None) == (self.contractor is None):
            raise ValueError(f"rule {self.name!r}: give exactly one of crew_team and contractor")
        return self


class RulesFile(BaseModel):
    """The whole dispatch.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _unique_names(self) -> RulesFile:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return self


def load_rules(path: Path) -> tuple[Rule, ...]:
    """Read and validate a dispatch rules file (RulesError with the reason)."""
    try:
        return RulesFile.model_validate(yaml.safe_load(Path(path).read_text())).rules
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise RulesError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class JobFacts:
    """What the rules look at: `areas` holds (kind, code) of every ward, zone and area holding the job."""

    category: str
    maintainer: str | None = None
    areas: frozenset[tuple[str, str]] = frozenset()

    def codes(self, kind: str) -> frozenset[str]:
        """Codes of the areas of one kind holding the job."""
        return frozenset(code for k, code in self.areas if k == kind)


def rule_matches(rule: Rule, facts: JobFacts) -> bool:
    """True when every condition the rule gives holds for the job."""
    if rule.category is not None and facts.category not in rule.category:
        return False
    if rule.maintainer is not None and facts.maintainer not in rule.maintainer:
        return False
    for kind in AREA_KINDS:
        wanted = getattr(rule, kind)
        if wanted is not None and not (facts.codes(kind) & set(wanted)):
            return False
    return True


def match_rule(rules: Iterable[Rule], facts: JobFacts) -> Rule | None:
    """The first rule that matches, or None."""
    return next((r for r in rules if rule_matches(r, facts)), None)


@dataclass(frozen=True)
class CrewState:
    """A crew as dispatch sees it at one moment."""

    id: int
    name: str
    team: str
    skills: frozenset[str]
    zone: str | None  # crew zone code; None = works anywhere
    shift_start: time
    shift_end: time
    capacity: int
    open_jobs: int
    distance_m: float | None = None  # from its last known position to the job; None = never seen
    active: bool = True


def on_shift(start: time, end: time, at: time) -> bool:
    """Is local time `at` inside the shift? start > end crosses midnight; start == end is round the clock."""
    if start == end:
        return True
    if start < end:
        return start <= at < end
    return at >= start or at < end


def _rank(c: CrewState) -> tuple[int, float, str, int]:
    distance = c.distance_m if c.distance_m is not None and math.isfinite(c.distance_m) else math.inf
    return (c.open_jobs, distance, c.name, c.id)


def eligible(crew: CrewState, *, team: str, category: str, zones: frozenset[str], at: time) -> bool:
    """True when the crew may take the job now (team, active, skill, zone, shift, capacity)."""
    return (crew.active and crew.team == team and category in crew.skills
            and (crew.zone is None or crew.zone in zones) and on_shift(crew.shift_start, crew.shift_end, at)
            and crew.open_jobs < crew.capacity)


def choose_crew(crews: Sequence[CrewState], *, team: str, category: str, zones: frozenset[str],
                at: time) -> tuple[CrewState | None, str]:
    """(the crew, why) or (None, why not): least loaded, then nearest, then by name."""
    steps = [
        (lambda c: c.team == team and c.active, f"no active {team} crew"),
        (lambda c: category in c.skills, f"no {team} crew has the skill {category!r}"),
        (lambda c: c.zone is None or c.zone in zones, f"no {team} crew covers this place"
                                                       f" (zones here: {', '.join(sorted(zones)) or 'none'})"),
        (lambda c: on_shift(c.shift_start, c.shift_end, at), f"no {team} crew on shift"),
        (lambda c: c.open_jobs < c.capacity, f"every {team} crew on shift is at capacity"),
    ]
    left = list(crews)
    for keep, why_not in steps:
        if why_not.startswith(f"no {team} crew on shift"):
            # The reason names the shifts, not the clock: re-running at another minute gives the same reason.
            shifts = sorted({f"{c.shift_start:%H:%M}-{c.shift_end:%H:%M}" for c in left})
            why_not = f"no {team} crew on shift (shifts {', '.join(shifts)})"
        left = [c for c in left if keep(c)]
        if not left:
            return None, why_not
    best = min(left, key=_rank)
    where = f", {best.distance_m:.0f} m away" if best.distance_m is not None else ""
    return best, (f"least loaded of {len(left)} eligible {team} crew(s): {best.open_jobs}/{best.capacity} "
                  f"open jobs{where}")


@dataclass(frozen=True)
class Decision:
    """What to do with a job: assign a crew, send to a contractor, or queue it with a reason."""

    outcome: Literal["crew", "contractor", "queue"]
    reason: str
    rule: str | None = None
    crew: CrewState | None = None
    contractor: str | None = None
    team: str | None = None


def decide(rules: Iterable[Rule], facts: JobFacts, crews: Sequence[CrewState], at: time) -> Decision:
    """Apply the rules, then (for a crew team) choose the crew; `at` is local wall-clock time."""
    rule = match_rule(rules, facts)
    if rule is None:
        return Decision("queue", f"no dispatch rule matches category {facts.category!r}"
                                 + (f" (asset maintainer {facts.maintainer})" if facts.maintainer else ""))
    if rule.contractor is not None:
        return Decision("contractor", f"rule {rule.name}", rule=rule.name, contractor=rule.contractor)
    crew, why = choose_crew(crews, team=rule.crew_team, category=facts.category,
                            zones=facts.codes("crew_zone"), at=at)
    if crew is None:
        return Decision("queue", why, rule=rule.name, team=rule.crew_team)
    return Decision("crew", f"rule {rule.name}: {why}", rule=rule.name, crew=crew, team=rule.crew_team)
