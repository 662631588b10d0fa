"""Check and normalise a report's answers against its category's questions; pick the priority."""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from server.catalogue.schemas import CategoryDef, Condition, QuestionDef, priority_rank

STRING_MAX = 500
TEXT_MAX = 4000
ERROR_CODE = "invalid-answer"


class AnswerError(ValueError):
    """One answer is wrong: `field` is like "answers.registration"; `code` is always "invalid-answer"."""

    def __init__(self, field: str, reason: str, code: str = ERROR_CODE):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.code = code


# UK registration marks on the compact (no spaces) form, with where the space goes.
_REGISTRATION_FORMS = (
    (re.compile(r"^([A-Z]{2}[0-9]{2})([A-Z]{3})$"), "current"),  # AB12 CDE (2001 on)
    (re.compile(r"^([A-Z][0-9]{1,3})([A-Z]{3})$"), "prefix"),  # A123 BCD (1983-2001)
    (re.compile(r"^([A-Z]{3})([0-9]{1,3}[A-Z])$"), "suffix"),  # ABC 123D (1963-1983)
    (re.compile(r"^([A-Z]{1,3})([0-9]{1,4})$"), "dateless"),  # ABC 1234, also NI marks
    (re.compile(r"^([0-9]{1,4})([A-Z]{1,3})$"), "dateless"),  # 1234 AB
)


def normalise_registration(value: str) -> str | None:
    """A UK registration in its canonical form ("ab12cde" → "AB12 CDE"), or None if not one."""
    compact = re.sub(r"[\s\-]+", "", value).upper()
    if not compact or len(compact) > 7:
        return None
    for pattern, _kind in _REGISTRATION_FORMS:
        m = pattern.match(compact)
        if m:
            return f"{m.group(1)} {m.group(2)}"
    return None


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _check_string(q: QuestionDef, value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise AnswerError(field, f"must be a string, not {type(value).__name__}")
    value = value.strip()
    if len(value) > limit:
        raise AnswerError(field, f"must be at most {limit} characters")
    if q.pattern is not None and not re.fullmatch(q.pattern, value):
        raise AnswerError(field, "does not match the expected format")
    if q.format == "uk_registration":
        reg = normalise_registration(value)
        if reg is None:
            raise AnswerError(field, "not a recognised UK registration (for example AB12 CDE)")
        value = reg
    return value


def _check_number(q: QuestionDef, value: Any, field: str, coerce: bool) -> int | float:
    if coerce and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise AnswerError(field, "must be a number") from None
    # bool is an int subclass; True is not a depth.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerError(field, "must be a number")
    if not math.isfinite(value):
        raise AnswerError(field, "must be a finite number")
    if q.min is not None and value < q.min:
        raise AnswerError(field, f"must be at least {q.min:g}")
    if q.max is not None and value > q.max:
        raise AnswerError(field, f"must be at most {q.max:g}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def _check_datetime(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise AnswerError(field, "must be an ISO 8601 date-time string with an offset")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise AnswerError(field, "must be an ISO 8601 date-time with an offset") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise AnswerError(field, "needs a UTC offset (for example 2026-11-26T10:00:00+00:00)")
    return parsed.astimezone(timezone.utc).isoformat()


def _check_single(q: QuestionDef, value: Any, field: str) -> str:
    if not isinstance(value, str) or value not in q.value_keys():
        raise AnswerError(field, f"must be one of {', '.join(q.value_keys())}")
    return value


def _check_multi(q: QuestionDef, value: Any, field: str, coerce: bool) -> list[str]:
    if coerce and isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise AnswerError(field, "must be a list of choices")
    keys = q.value_keys()
    for item in value:
        if not isinstance(item, str) or item not in keys:
            raise AnswerError(field, f"each choice must be one of {', '.join(keys)}")
    if len(set(value)) != len(value):
        raise AnswerError(field, "choices must not repeat")
    return [k for k in keys if k in value]  # catalogue order, so equal answers compare equal


def validate_answers(category: CategoryDef, answers: Any, *, coerce_strings: bool = False) -> dict:
    """Check answers against the category's questions and return them normalised; raises AnswerError.

    coerce_strings: accept form-encoded input (Open311 POST) where numbers arrive as strings and
    a multivaluelist with one choice arrives as a bare string.
    """
    if answers is None:
        answers = {}
    if not isinstance(answers, dict):
        raise AnswerError("answers", "must be an object of question code → answer")
    known = {q.code for q in category.questions}
    for code in sorted(map(str, answers)):
        if code not in known:
            raise AnswerError(f"answers.{code}", f"unknown question for category {category.code!r}")
    out: dict[str, Any] = {}
    for q in category.ordered_questions():
        field = f"answers.{q.code}"
        value = answers.get(q.code)
        if _is_blank(value):
            if q.required:
                raise AnswerError(field, "an answer is required")
            continue
        if q.datatype == "string":
            out[q.code] = _check_string(q, value, field, STRING_MAX)
        elif q.datatype == "text":
            out[q.code] = _check_string(q, value, field, TEXT_MAX)
        elif q.datatype == "number":
            out[q.code] = _check_number(q, value, field, coerce_strings)
        elif q.datatype == "datetime":
            out[q.code] = _check_datetime(value, field)
        elif q.datatype == "singlevaluelist":
            out[q.code] = _check_single(q, value, field)
        else:
            out[q.code] = _check_multi(q, value, field, coerce_strings)
    return out


def _holds(cond: Condition, answers: dict) -> bool:
    value = answers.get(cond.question)
    if value is None:
        return False
    if cond.in_ is not None:
        chosen = value if isinstance(value, list) else [value]
        if not set(chosen) & set(cond.in_):
            return False
    if cond.gte is not None or cond.lte is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if cond.gte is not None and value < cond.gte:
            return False
        if cond.lte is not None and value > cond.lte:
            return False
    return True


def priority_for(category: CategoryDef, answers: dict) -> str:
    """The most severe priority among matching rules (so rules may also lower it), else the default."""
    matched = [r.priority for r in category.priority_rules if all(_holds(c, answers) for c in r.when)]
    return min(matched, key=priority_rank) if matched else category.default_priority
