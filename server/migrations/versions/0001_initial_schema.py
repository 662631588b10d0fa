"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 14:13:13.014057
"""
from alembic import op
import sqlalchemy as sa
import geoalchemy2
from sqlalchemy.dialects import postgresql

from server.config import get_settings

# The storage CRS is a setting (default EPSG:27700, British National Grid).
SRID = get_settings().srid

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No-ops where scripts/pg.sh (superuser) already created them; needed on a fresh PostGIS image.
    for ext in ("postgis", "btree_gist", "pg_trgm"):
        op.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
    op.create_table('areas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('geom', geoalchemy2.types.Geometry(geometry_type='MULTIPOLYGON', srid=SRID, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('repaired', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_areas')),
    sa.UniqueConstraint('kind', 'code', name='uq_areas_kind_code')
    )
    op.create_index('ix_areas_kind_geom', 'areas', ['kind', 'geom'], unique=False, postgresql_using='gist')
    op.create_table('asset_layers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('geometry_type', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('attribution', sa.String(length=500), nullable=False),
    sa.Column('synthetic', sa.Boolean(), nullable=False),
    sa.Column('snap_radius_m', sa.Float(), nullable=False),
    sa.Column('source_sha256', sa.String(length=64), nullable=True),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_asset_layers')),
    sa.UniqueConstraint('name', name=op.f('uq_asset_layers_name'))
    )
    op.create_table('categories',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('group', sa.String(length=100), nullable=False),
    sa.Column('layer', sa.String(length=64), nullable=True),
    sa.Column('definition', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_categories'))
    )
    op.create_table('contractors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('adapter', sa.String(length=200), nullable=False),
    sa.Column('config', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('sla_policy', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('categories', postgresql.ARRAY(sa.String()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contractors')),
    sa.UniqueConstraint('name', name=op.f('uq_contractors_name'))
    )
    op.create_table('import_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry', sa.String(length=100), nullable=False),
    sa.Column('source_sha256', sa.String(length=64), nullable=True),
    sa.Column('summary', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_runs'))
    )
    op.create_table('subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=1000), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('event_types', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    op.create_table('worker_heartbeats',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('beat_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('info', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_worker_heartbeats'))
    )
    op.create_table('assets',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('layer_id', sa.Integer(), nullable=False),
    sa.Column('external_ref', sa.String(length=100), nullable=False),
    sa.Column('ref_derived', sa.Boolean(), nullable=False),
    sa.Column('geom', geoalchemy2.types.Geometry(srid=SRID, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('maintainer', sa.String(length=100), nullable=True),
    sa.Column('ward_id', sa.Integer(), nullable=True),
    sa.Column('street', sa.String(length=200), nullable=True),
    sa.Column('synthetic', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['layer_id'], ['asset_layers.id'], name=op.f('fk_assets_layer_id_asset_layers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ward_id'], ['areas.id'], name=op.f('fk_assets_ward_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assets')),
    sa.UniqueConstraint('layer_id', 'external_ref', name='uq_assets_layer_ref')
    )
    op.create_index('ix_assets_layer_geom', 'assets', ['layer_id', 'geom'], unique=False, postgresql_using='gist')
    op.create_table('crews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('team', sa.String(length=100), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=True),
    sa.Column('skills', postgresql.ARRAY(sa.String()), nullable=False),
    sa.Column('shift_start', sa.Time(), nullable=False),
    sa.Column('shift_end', sa.Time(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('last_position', geoalchemy2.types.Geometry(geometry_type='POINT', srid=SRID, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['zone_id'], ['areas.id'], name=op.f('fk_crews_zone_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crews')),
    sa.UniqueConstraint('name', name=op.f('uq_crews_name'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('contractor_id', sa.Integer(), nullable=True),
    sa.Column('crew_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contractor_id'], ['contractors.id'], name=op.f('fk_api_tokens_contractor_id_contractors')),
    sa.ForeignKeyConstraint(['crew_id'], ['crews.id'], name=op.f('fk_api_tokens_crew_id_crews')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('reference', sa.String(length=32), nullable=False),
    sa.Column('category_code', sa.String(length=64), nullable=False),
    sa.Column('asset_id', sa.BigInteger(), nullable=True),
    sa.Column('geom', geoalchemy2.types.Geometry(geometry_type='POINT', srid=SRID, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('ward_id', sa.Integer(), nullable=True),
    sa.Column('street', sa.String(length=200), nullable=True),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('triage_reason', sa.String(length=200), nullable=True),
    sa.Column('crew_id', sa.Integer(), nullable=True),
    sa.Column('contractor_id', sa.Integer(), nullable=True),
    sa.Column('contractor_ref', sa.String(length=100), nullable=True),
    sa.Column('sla_policy', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('sla_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused_seconds', sa.Float(), nullable=False),
    sa.Column('on_hold_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('at_risk_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('breached_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('demand_count', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['asset_id'], ['assets.id'], name=op.f('fk_jobs_asset_id_assets')),
    sa.ForeignKeyConstraint(['category_code'], ['categories.code'], name=op.f('fk_jobs_category_code_categories')),
    sa.ForeignKeyConstraint(['contractor_id'], ['contractors.id'], name=op.f('fk_jobs_contractor_id_contractors')),
    sa.ForeignKeyConstraint(['crew_id'], ['crews.id'], name=op.f('fk_jobs_crew_id_crews')),
    sa.ForeignKeyConstraint(['ward_id'], ['areas.id'], name=op.f('fk_jobs_ward_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('reference', name=op.f('uq_jobs_reference'))
    )
    op.create_index('ix_jobs_due_at', 'jobs', ['due_at'], unique=False)
    op.create_index('ix_jobs_geom', 'jobs', ['geom'], unique=False, postgresql_using='gist')
    op.create_index('ix_jobs_open_asset', 'jobs', ['asset_id', 'category_code'], unique=False, postgresql_where="status NOT IN ('completed','closed','cancelled','duplicate')")
    op.create_index('ix_jobs_status', 'jobs', ['status'], unique=False)
    op.create_table('inbound_updates',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('contractor_id', sa.Integer(), nullable=False),
    sa.Column('update_id', sa.String(length=200), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('result', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['contractor_id'], ['contractors.id'], name=op.f('fk_inbound_updates_contractor_id_contractors')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_inbound_updates_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_updates')),
    sa.UniqueConstraint('contractor_id', 'update_id', name='uq_inbound_contractor_update')
    )
    op.create_table('job_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('actor_role', sa.String(length=32), nullable=False),
    sa.Column('geom', geoalchemy2.types.Geometry(geometry_type='POINT', srid=SRID, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_events_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_events'))
    )
    op.create_index('ix_job_events_job_id_id', 'job_events', ['job_id', 'id'], unique=False)
    op.create_table('outbox_messages',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('destination', sa.String(length=200), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_outbox_messages_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_outbox_messages_idempotency_key'))
    )
    op.create_index('ix_outbox_due', 'outbox_messages', ['next_attempt_at'], unique=False, postgresql_where="state = 'pending'")
    op.create_index('ix_outbox_job', 'outbox_messages', ['job_id'], unique=False)
    op.create_table('reports',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('reference', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.UUID(), nullable=False),
    sa.Column('payload_hash', sa.String(length=64), nullable=False),
    sa.Column('category_code', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('geom', geoalchemy2.types.Geometry(geometry_type='POINT', srid=SRID, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('location_provider', sa.String(length=32), nullable=True),
    sa.Column('mock_location', sa.Boolean(), nullable=False),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('asset_hint', sa.String(length=100), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('answers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('asset_id', sa.BigInteger(), nullable=True),
    sa.Column('snap_distance_m', sa.Float(), nullable=True),
    sa.Column('runner_up_asset_id', sa.BigInteger(), nullable=True),
    sa.Column('runner_up_distance_m', sa.Float(), nullable=True),
    sa.Column('snap_confidence', sa.Float(), nullable=True),
    sa.Column('ward_id', sa.Integer(), nullable=True),
    sa.Column('street', sa.String(length=200), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('reporter', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['assets.id'], name=op.f('fk_reports_asset_id_assets')),
    sa.ForeignKeyConstraint(['category_code'], ['categories.code'], name=op.f('fk_reports_category_code_categories')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_reports_job_id_jobs')),
    sa.ForeignKeyConstraint(['runner_up_asset_id'], ['assets.id'], name=op.f('fk_reports_runner_up_asset_id_assets')),
    sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], name=op.f('fk_reports_token_id_api_tokens')),
    sa.ForeignKeyConstraint(['ward_id'], ['areas.id'], name=op.f('fk_reports_ward_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    sa.UniqueConstraint('client_id', name=op.f('uq_reports_client_id')),
    sa.UniqueConstraint('reference', name=op.f('uq_reports_reference'))
    )
    op.create_index('ix_reports_job_id', 'reports', ['job_id'], unique=False)
    op.create_table('photos',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.UUID(), nullable=False),
    sa.Column('report_id', sa.BigInteger(), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('content_type', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('thumb_path', sa.String(length=500), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_photos_job_id_jobs')),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_photos_report_id_reports')),
    sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], name=op.f('fk_photos_token_id_api_tokens')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_photos')),
    sa.UniqueConstraint('client_id', name=op.f('uq_photos_client_id'))
    )
    op.create_index('ix_photos_job_id', 'photos', ['job_id'], unique=False)
    op.execute("CREATE SEQUENCE job_reference_seq START 1000")
    op.execute("CREATE SEQUENCE report_reference_seq START 1000")
    # job_events is the audit trail: refuse any UPDATE or DELETE at the database.
    op.execute(
        """
        CREATE FUNCTION job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'job_events is append-only'; END $$;
        CREATE TRIGGER job_events_no_change BEFORE UPDATE OR DELETE ON job_events
        FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS job_events_no_change ON job_events")
    op.execute("DROP FUNCTION IF EXISTS job_events_append_only()")
    op.execute("DROP SEQUENCE IF EXISTS job_reference_seq")
    op.execute("DROP SEQUENCE IF EXISTS report_reference_seq")
    op.drop_index('ix_photos_job_id', table_name='photos')
    op.drop_table('photos')
    op.drop_index('ix_reports_job_id', table_name='reports')
    op.drop_table('reports')
    op.drop_index('ix_outbox_job', table_name='outbox_messages')
    op.drop_index('ix_outbox_due', table_name='outbox_messages', postgresql_where="state = 'pending'")
    op.drop_table('outbox_messages')
    op.drop_index('ix_job_events_job_id_id', table_name='job_events')
    op.drop_table('job_events')
    op.drop_table('inbound_updates')
    op.drop_index('ix_jobs_status', table_name='jobs')
    op.drop_index('ix_jobs_open_asset', table_name='jobs', postgresql_where="status NOT IN ('completed','closed','cancelled','duplicate')")
    op.drop_index('ix_jobs_geom', table_name='jobs', postgresql_using='gist')
    op.drop_index('ix_jobs_due_at', table_name='jobs')
    op.drop_table('jobs')
    op.drop_table('api_tokens')
    op.drop_table('crews')
    op.drop_index('ix_assets_layer_geom', table_name='assets', postgresql_using='gist')
    op.drop_table('assets')
    op.drop_table('worker_heartbeats')
    op.drop_table('subscriptions')
    op.drop_table('import_runs')
    op.drop_table('contractors')
    op.drop_table('categories')
    op.drop_table('asset_layers')
    op.drop_index('ix_areas_kind_geom', table_name='areas', postgresql_using='gist')
    op.drop_table('areas')
