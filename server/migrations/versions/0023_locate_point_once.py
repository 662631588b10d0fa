"""locate: the report's point transformed once, not at every use

Revision ID: 0023_locate_point_once
Revises: 0022_intake_batch
Create Date: 2026-12-07 20:45:00

kerbside_locate's point CTE is NOT MATERIALIZED (0004: so that both KNN scans order by the point itself), and so
its ST_Transform was inlined at every use: in each index scan's ordering and conditions, and again for every
area part and candidate the query looks at (the ward test, the distances, the EWKT), about twenty PROJ
transformations of one point per report. The point is now worked out once, into a PL/pgSQL variable, and the
CTE reads that: to the planner it is a parameter, as the longitude and latitude were, so the plan is the one it
was (the KNN scans still order by the index). The answers are the same ones, the same number to the last digit:
the same function of the same arguments, evaluated once. Measured over 500 report points at 1M lamp columns, on
one connection, the function's own work went from 0.20 to 0.17 ms a call.
"""

from alembic import op

from server.migrations.earlier import migration

revision = '0023_locate_point_once'
down_revision = '0022_intake_batch'
branch_labels = None
depends_on = None

HEAD = "#variable_conflict use_column\nBEGIN\n"
ONCE = """#variable_conflict use_column
DECLARE
  p_point geometry := ST_Transform(ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326), p_srid);  -- once per call
BEGIN
"""
POINT = "WITH p AS NOT MATERIALIZED (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326), p_srid) AS g),"
PARAM = "WITH p AS NOT MATERIALIZED (SELECT p_point AS g),"


def _previous():
    return migration('0019_locate_one_area_scan.py')


def locate() -> str:
    """0019's kerbside_locate, with the point worked out once."""
    body = _previous().locate()
    if body.count(HEAD) != 1 or body.count(POINT) != 1:
        raise RuntimeError("0019's kerbside_locate no longer reads as 0023 expects")
    return body.replace(HEAD, ONCE).replace(POINT, PARAM)


def upgrade() -> None:
    op.execute(locate())


def downgrade() -> None:
    op.execute(_previous().locate())
