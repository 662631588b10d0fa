"""The report form, from a category's questions: check and normalise answers before queueing (pure)."""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from .models import Category, Question


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == [] or value == ()


def _one(q: Question, value: Any) -> tuple[Any, str | None]:
    """(normalised answer, error) for one non-blank answer."""
    if q.datatype in ("string", "text"):
        return str(value).strip(), None
    if q.datatype == "number":
        try:
            n = float(str(value).strip())
        except ValueError:
            return None, "enter a number"
        if not math.isfinite(n):
            return None, "enter a number"
        return (int(n) if n.is_integer() else n), None
    if q.datatype == "datetime":
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None, "enter a date and time like 2026-11-26T10:00+00:00"
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # the device's zone
        return parsed.isoformat(), None
    keys = [k for k, _ in q.values]
    if q.datatype == "singlevaluelist":
        return (value, None) if value in keys else (None, "choose one of the answers")
    chosen = [value] if isinstance(value, str) else list(value)
    if any(v not in keys for v in chosen):
        return None, "choose from the answers given"
    return [k for k in keys if k in chosen], None


def clean_answers(category: Category, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(answers to send, errors by question code): required answers present, numbers parsed, choices known."""
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for q in category.questions:
        value = raw.get(q.code)
        if _blank(value):
            if q.required:
                errors[q.code] = "an answer is needed"
            continue
        out, err = _one(q, value)
        if err:
            errors[q.code] = err
        else:
            answers[q.code] = out
    return answers, errors
