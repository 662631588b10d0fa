"""IsoDatetime: an ISO 8601 date-time with an offset, and nothing else (no Unix timestamps)."""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")


def _iso_only(value):
    # pydantic reads a bare number as a Unix timestamp; the API promises ISO 8601 text only (found by fuzzing:
    # changed_since=-582 was read as 1969-12-31T23:50:18Z).
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("expected an ISO 8601 date-time with an offset, e.g. 2026-11-05T08:15:30Z, not a number")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]
