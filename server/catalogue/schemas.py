"""Pydantic models for the category catalogue YAML (strict: unknown keys are rejected)."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PRIORITIES = ("emergency", "urgent", "normal", "low")  # most severe first
Priority = Literal["emergency", "urgent", "normal", "low"]
Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
LIST_TYPES = ("singlevaluelist", "multivaluelist")

_CODE = r"^[a-z][a-z0-9_]*$"
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def priority_rank(priority: str) -> int:
    """Severity rank of a priority: 0 is the most severe (emergency)."""
    return PRIORITIES.index(priority)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hhmm(value: Any) -> Any:
    # Unquoted 15:00 is read by YAML 1.1 as 900 (base 60); say so rather than "not a string".
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ValueError(f"must be a quoted 24-hour time \"HH:MM\", got {value!r}")
    return value


class HoursPolicy(_Strict):
    """Calendar (elapsed) hours from the report."""

    kind: Literal["hours"]
    hours: float = Field(gt=0, le=24 * 366)


class WorkingDaysPolicy(_Strict):
    """N working days; the report day counts unless at/after the cut-off or not a working day."""

    kind: Literal["working_days"]
    days: int = Field(ge=1, le=366)
    cutoff: str | None = None  # None: the end of the working day
    end_of_day: str = "17:30"
    start_of_day: str = "08:00"

    @field_validator("cutoff", "end_of_day", "start_of_day", mode="before")
    @classmethod
    def _times(cls, v: Any) -> Any:
        return v if v is None else _hhmm(v)

    @model_validator(mode="after")
    def _ordered(self) -> WorkingDaysPolicy:
        if self.start_of_day >= self.end_of_day:
            raise ValueError("start_of_day must be before end_of_day")
        if self.cutoff is not None and self.cutoff > self.end_of_day:
            raise ValueError("cutoff must not be after end_of_day")
        return self


SlaPolicy = Annotated[HoursPolicy | WorkingDaysPolicy, Field(discriminator="kind")]


class PriorityDef(_Strict):
    """What a priority means for this category: its SLA policy."""

    sla: SlaPolicy


class ValueDef(_Strict):
    """One choice of a list question (Open311 `values`)."""

    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)

    @field_validator("key", "name", mode="before")
    @classmethod
    def _not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError('yes/no must be quoted in YAML ("yes"), or they are read as booleans')
        return v


class QuestionDef(_Strict):
    """One question (an Open311 attribute)."""

    code: str = Field(pattern=_CODE, max_length=64)
    prompt: str = Field(min_length=1, max_length=300)
    description: str | None = None
    datatype: Datatype
    required: bool = False
    order: int = 0
    values: list[ValueDef] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    format: Literal["uk_registration"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> QuestionDef:
        if self.datatype in LIST_TYPES:
            if not self.values:
                raise ValueError(f"{self.datatype} questions need values")
            keys = [v.key for v in self.values]
            if len(set(keys)) != len(keys):
                raise ValueError("value keys must be unique")
        elif self.values:
            raise ValueError(f"values are only for list questions, not {self.datatype}")
        if (self.min is not None or self.max is not None) and self.datatype != "number":
            raise ValueError("min/max are only for number questions")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        if self.pattern is not None:
            if self.datatype not in ("string", "text"):
                raise ValueError("pattern is only for string/text questions")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
        if self.format is not None and self.datatype != "string":
            raise ValueError("format is only for string questions")
        return self

    def value_keys(self) -> list[str]:
        """The allowed keys of a list question, in catalogue order."""
        return [v.key for v in self.values]


class Condition(_Strict):
    """One test on an answer: a list answer among `in`, or a number within gte/lte."""

    # Dumps as `in` so a stored definition reads back the way the YAML is written.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    question: str
    in_: list[str] | None = Field(default=None, alias="in")
    gte: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _something(self) -> Condition:
        if self.in_ is None and self.gte is None and self.lte is None:
            raise ValueError("a condition needs `in`, `gte` or `lte`")
        return self


class PriorityRule(_Strict):
    """All conditions hold → this priority."""

    priority: Priority
    when: list[Condition] = Field(min_length=1)


class DispatchHints(_Strict):
    """Who usually does the work."""

    team: str = Field(pattern=_CODE)
    via: Literal["crew", "contractor"] = "crew"
    contractor: str | None = None


class CategoryDef(_Strict):
    """A category (Open311 service) as written in the catalogue."""

    code: str = Field(pattern=_CODE, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    group: str = Field(min_length=1, max_length=100)
    keywords: list[str] = Field(default_factory=list)
    layer: str | None
    snap_radius_m: float = Field(ge=0, le=1000)
    duplicate_radius_m: float = Field(ge=0, le=5000)
    duplicate_window_hours: float = Field(ge=0, le=24 * 366)
    max_accuracy_m: float = Field(gt=0, le=10000)
    default_priority: Priority
    priorities: dict[Priority, PriorityDef] = Field(min_length=1)
    questions: list[QuestionDef] = Field(default_factory=list)
    priority_rules: list[PriorityRule] = Field(default_factory=list)
    dispatch: DispatchHints

    @model_validator(mode="after")
    def _consistent(self) -> CategoryDef:
        if self.layer is not None and self.snap_radius_m <= 0:
            raise ValueError("snap_radius_m must be positive when the category has a layer")
        codes = [q.code for q in self.questions]
        if len(set(codes)) != len(codes):
            raise ValueError("question codes must be unique")
        if self.default_priority not in self.priorities:
            raise ValueError(f"default_priority {self.default_priority!r} has no entry (SLA) in priorities")
        by_code = {q.code: q for q in self.questions}
        for i, rule in enumerate(self.priority_rules):
            where = f"priority_rules[{i}]"
            if rule.priority not in self.priorities:
                raise ValueError(f"{where}: priority {rule.priority!r} has no entry (SLA) in priorities")
            for cond in rule.when:
                q = by_code.get(cond.question)
                if q is None:
                    raise ValueError(f"{where}: unknown question {cond.question!r}")
                if cond.in_ is not None:
                    if q.datatype not in LIST_TYPES:
                        raise ValueError(f"{where}: `in` needs a list question, {q.code!r} is {q.datatype}")
                    unknown = sorted(set(cond.in_) - set(q.value_keys()))
                    if unknown:
                        raise ValueError(f"{where}: {q.code!r} has no value(s) {unknown}")
                if (cond.gte is not None or cond.lte is not None) and q.datatype != "number":
                    raise ValueError(f"{where}: gte/lte need a number question, {q.code!r} is {q.datatype}")
        return self

    def question(self, code: str) -> QuestionDef | None:
        """The question with this code, or None."""
        return next((q for q in self.questions if q.code == code), None)

    def ordered_questions(self) -> list[QuestionDef]:
        """Questions in display order."""
        return sorted(self.questions, key=lambda q: (q.order, q.code))

    def sla_for(self, priority: str) -> dict:
        """The SLA policy of a priority as a plain dict (what jobs store and server.jobs.sla reads)."""
        if priority not in self.priorities:
            raise KeyError(f"category {self.code!r} has no priority {priority!r}")
        return self.priorities[priority].sla.model_dump(exclude_none=True)


class UnknownCategory(KeyError):
    """No category with this code."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"unknown category {self.code!r}"


class Catalogue(_Strict):
    """The whole catalogue file."""

    version: Literal[1]
    categories: list[CategoryDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        codes = [c.code for c in self.categories]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"category codes must be unique, repeated: {dupes}")
        return self

    def get(self, code: str) -> CategoryDef:
        """The category with this code; raises UnknownCategory."""
        for c in self.categories:
            if c.code == code:
                return c
        raise UnknownCategory(code)

    def __contains__(self, code: object) -> bool:
        return any(c.code == code for c in self.categories)

    def codes(self) -> list[str]:
        """Category codes in catalogue order."""
        return [c.code for c in self.categories]
