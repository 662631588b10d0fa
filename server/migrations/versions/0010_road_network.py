"""road network (pgRouting), crew depots and versioned crew day plans

Revision ID: 0010_road_network
Revises: 0008_notifications
Create Date: 2026-12-06 22:00:00

road_nodes / road_edges are the routable graph the importer builds from the roads layer (nodes from
segment ends snapped within a tolerance, cost in seconds from length and road-class speed, -1 for a
direction a one-way forbids). day_plans is versioned per day
(exactly one current version); plan_stops / plan_unassigned belong to one version and are never updated
after it is superseded, except arrived_at on the current one.
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2.types import Geometry

from server.config import get_settings

SRID = get_settings().srid

revision = '0010_road_network'
down_revision = '0008_notifications'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A no-op where scripts/pg.sh (superuser) already created it; needs a superuser otherwise.
    op.execute("CREATE EXTENSION IF NOT EXISTS pgrouting")
    op.add_column('crews', sa.Column('depot', Geometry('POINT', srid=SRID, spatial_index=False), nullable=True))
    op.add_column('crews', sa.Column('depot_name', sa.String(200), nullable=True))
    op.create_table(
        'road_nodes',
        sa.Column('id', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('geom', Geometry('POINT', srid=SRID, spatial_index=False), nullable=False),
        sa.Column('component', sa.BigInteger(), nullable=False),
        sa.Column('main', sa.Boolean(), nullable=False),
    )
    op.create_index('ix_road_nodes_geom', 'road_nodes', ['geom'], postgresql_using='gist')
    op.create_index('ix_road_nodes_main_geom', 'road_nodes', ['geom'], postgresql_using='gist',
                    postgresql_where=sa.text('main'))
    op.create_table(
        'road_edges',
        sa.Column('id', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('asset_id', sa.BigInteger(), nullable=False),
        sa.Column('source', sa.BigInteger(), nullable=False),
        sa.Column('target', sa.BigInteger(), nullable=False),
        sa.Column('cost', sa.Float(), nullable=False),
        sa.Column('reverse_cost', sa.Float(), nullable=False),
        sa.Column('length_m', sa.Float(), nullable=False),
        sa.Column('road_class', sa.String(100), nullable=False),
        sa.Column('speed_kmh', sa.Float(), nullable=False),
        sa.Column('geom', Geometry('LINESTRING', srid=SRID, spatial_index=False), nullable=False),
    )
    op.create_index('ix_road_edges_source', 'road_edges', ['source'])
    op.create_index('ix_road_edges_target', 'road_edges', ['target'])
    op.create_index('ix_road_edges_asset', 'road_edges', ['asset_id'])
    op.create_table(
        'day_plans',
        sa.Column('id', sa.BigInteger(), primary_key=True),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('current', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.String(300), nullable=False),
        sa.Column('created_by', sa.String(200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column('totals', sa.dialects.postgresql.JSONB(), nullable=False),
        sa.UniqueConstraint('day', 'version', name='uq_day_plans_day_version'),
    )
    op.create_index('ux_day_plans_current', 'day_plans', ['day'], unique=True,
                    postgresql_where=sa.text('current'))
    op.create_table(
        'plan_stops',
        sa.Column('id', sa.BigInteger(), primary_key=True),
        sa.Column('plan_id', sa.BigInteger(), sa.ForeignKey('day_plans.id', ondelete='CASCADE'), nullable=False),
        sa.Column('crew_id', sa.Integer(), sa.ForeignKey('crews.id'), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.BigInteger(), sa.ForeignKey('jobs.id'), nullable=False),
        sa.Column('node_id', sa.BigInteger(), nullable=False),
        sa.Column('arrive_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('depart_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('travel_s', sa.Integer(), nullable=False),
        sa.Column('service_s', sa.Integer(), nullable=False),
        sa.Column('fixed', sa.Boolean(), nullable=False),
        sa.Column('arrived_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('plan_id', 'job_id', name='uq_plan_stops_plan_job'),
        sa.UniqueConstraint('plan_id', 'crew_id', 'seq', name='uq_plan_stops_plan_crew_seq'),
    )
    op.create_table(
        'plan_routes',
        sa.Column('plan_id', sa.BigInteger(), sa.ForeignKey('day_plans.id', ondelete='CASCADE'), nullable=False),
        sa.Column('crew_id', sa.Integer(), sa.ForeignKey('crews.id'), nullable=False),
        sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('travel_s', sa.Integer(), nullable=False),
        sa.Column('service_s', sa.Integer(), nullable=False),
        sa.Column('stops', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('plan_id', 'crew_id', name='pk_plan_routes'),
    )
    op.create_table(
        'plan_unassigned',
        sa.Column('plan_id', sa.BigInteger(), sa.ForeignKey('day_plans.id', ondelete='CASCADE'), nullable=False),
        sa.Column('job_id', sa.BigInteger(), sa.ForeignKey('jobs.id'), nullable=False),
        sa.Column('reason', sa.String(300), nullable=False),
        sa.PrimaryKeyConstraint('plan_id', 'job_id', name='pk_plan_unassigned'),
    )


def downgrade() -> None:
    for table in ('plan_unassigned', 'plan_routes', 'plan_stops', 'day_plans', 'road_edges', 'road_nodes'):
        op.drop_table(table)
    op.drop_column('crews', 'depot_name')
    op.drop_column('crews', 'depot')
    # The pgrouting extension stays: dropping it needs a superuser and nothing else depends on it.
