"""dispatch: crew status requests (client_id idempotency), index on jobs.crew_id

Revision ID: 0003_crew
Revises: 0002
Create Date: 2026-11-23 10:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003_crew'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'status_requests',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('client_id', sa.UUID(), nullable=False),
        sa.Column('job_id', sa.BigInteger(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=True),
        sa.Column('payload_hash', sa.String(length=64), nullable=False),
        sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_status_requests_job_id_jobs')),
        sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], name=op.f('fk_status_requests_token_id_api_tokens')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_status_requests')),
        sa.UniqueConstraint('client_id', name=op.f('uq_status_requests_client_id')),
    )
    op.create_index('ix_jobs_crew_id', 'jobs', ['crew_id'], unique=False, postgresql_where='crew_id IS NOT NULL')


def downgrade() -> None:
    op.drop_index('ix_jobs_crew_id', table_name='jobs', postgresql_where='crew_id IS NOT NULL')
    op.drop_table('status_requests')
