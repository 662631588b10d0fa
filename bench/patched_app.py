"""What-if builds of the API for benchmarking proposed fixes without touching server/ (bench only).

    uvicorn bench.patched_app:create_app --factory     # the API with the KNN fix applied to nearest._LOCATE

Used by `bench.intake run --intake-app bench.patched_app:create_app` and `bench.profile_intake run --fix`
to measure what a change in server/ would buy before it is made there. The fix is applied to whatever
_LOCATE text server/ has now, so it keeps working while that query evolves.
"""
from __future__ import annotations

import re

from fastapi import FastAPI
from sqlalchemy import text

# `ORDER BY a.geom <-> p.g, a.id LIMIT` — a second sort key after a KNN distance makes PostgreSQL 15 sort
# the whole layer (no incremental sort over an index-ordered KNN scan); the distance alone walks the index.
_TIEBREAK = re.compile(r"(ORDER BY\s+(\w+)\.geom\s*<->\s*p\.g)\s*,\s*\2\.\w+(\s+LIMIT)")


def fixed_locate_sql(sql: str) -> str:
    """_LOCATE with its KNN orderings servable by the GiST index: point CTE inlined, no second sort key."""
    if "AS NOT MATERIALIZED" not in sql:
        sql = sql.replace("WITH p AS (", "WITH p AS NOT MATERIALIZED (", 1)
    # Ties are still ordered by the outer json_agg(... ORDER BY d, id); only ties at the LIMIT edge are left open.
    return _TIEBREAK.sub(r"\1\3", sql)


def apply_locate_fix() -> bool:
    """Patch server.assets.nearest._LOCATE in this process; True if that changed anything."""
    from server.assets import nearest

    before = nearest._LOCATE.text
    after = fixed_locate_sql(before)
    if after != before:
        nearest._LOCATE = text(after)
    return after != before


def create_app() -> FastAPI:
    """server.main.create_app() with the fixes above applied."""
    import logging

    from server.main import create_app as real

    if not apply_locate_fix():
        logging.getLogger("bench").warning("patched_app: server/'s _LOCATE already has the fix; nothing patched")
    return real()
