"""dispatch: queue reason, flags, risk_at, poll cursor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:36:35.719504
"""
from alembic import op
import sqlalchemy as sa
import geoalchemy2
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('contractors', sa.Column('poll_cursor', sa.String(length=1000), nullable=True))
    op.add_column('contractors', sa.Column('polled_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('risk_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('queue_reason', sa.String(length=300), nullable=True))
    op.add_column('jobs', sa.Column('flags', postgresql.JSONB(astext_type=sa.Text()), nullable=False,
                                    server_default=sa.text("'[]'::jsonb")))
    op.add_column('jobs', sa.Column('dispatch_count', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('jobs', sa.Column('last_contractor_update_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_jobs_breach_pending', 'jobs', ['due_at'], unique=False, postgresql_where='breached_at IS NULL')
    op.create_index('ix_jobs_risk_pending', 'jobs', ['risk_at'], unique=False, postgresql_where='at_risk_at IS NULL')
    # Existing jobs: at risk after 80% of their allowed time (the sweep's default share).
    op.execute("UPDATE jobs SET risk_at = sla_started_at + (due_at - sla_started_at) * 0.8 WHERE due_at IS NOT NULL")


def downgrade() -> None:
    op.drop_index('ix_jobs_risk_pending', table_name='jobs', postgresql_where='at_risk_at IS NULL')
    op.drop_index('ix_jobs_breach_pending', table_name='jobs', postgresql_where='breached_at IS NULL')
    op.drop_column('jobs', 'last_contractor_update_at')
    op.drop_column('jobs', 'dispatch_count')
    op.drop_column('jobs', 'flags')
    op.drop_column('jobs', 'queue_reason')
    op.drop_column('jobs', 'risk_at')
    op.drop_column('contractors', 'polled_at')
    op.drop_column('contractors', 'poll_cursor')
