"""lists and searches at a million jobs: indexes for the job list, a contractor's jobs, and the find

Revision ID: 0020_lookup_indexes
Revises: 0019_locate_one_area_scan
Create Date: 2026-12-07 17:00:00

Measured on 1M open jobs and 1M lamp columns, each page read every job or asset for want of an index:
GET /api/v1/jobs (newest first) 522 ms, GET /api/v1/contractor/jobs 86 ms, the contact centre's find 640 ms
for a job reference and 130 ms for a lamp column's. With these, and the find reading each way of matching on
its own index (server/contact_centre/queries.py): 107 ms (most of it the count of all jobs), 5 ms, 7.5 ms
and 6.8 ms. New jobs pay for them; reports attached to an open job do not.
"""

from alembic import op
import sqlalchemy as sa

revision = '0020_lookup_indexes'
down_revision = '0019_locate_one_area_scan'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_created_at_id', 'jobs', ['created_at', 'id'])
    op.create_index('ix_jobs_contractor_updated', 'jobs', ['contractor_id', 'updated_at', 'id'],
                    postgresql_where='contractor_id IS NOT NULL')
    op.create_index('ix_jobs_asset_id', 'jobs', ['asset_id'], postgresql_where='asset_id IS NOT NULL')
    op.create_index('ix_jobs_contractor_ref_lower', 'jobs', [sa.text('lower(contractor_ref)')],
                    postgresql_where='contractor_ref IS NOT NULL')
    op.create_index('ix_jobs_street_trgm', 'jobs', ['street'], postgresql_using='gin',
                    postgresql_ops={'street': 'gin_trgm_ops'})
    op.create_index('ix_assets_external_ref_lower', 'assets', [sa.text('lower(external_ref)')])


def downgrade() -> None:
    op.drop_index('ix_assets_external_ref_lower', table_name='assets')
    for name in ('ix_jobs_street_trgm', 'ix_jobs_contractor_ref_lower', 'ix_jobs_asset_id',
                 'ix_jobs_contractor_updated', 'ix_jobs_created_at_id'):
        op.drop_index(name, table_name='jobs')
