"""the supervisor's dispatch queue reads only the jobs waiting in it

Revision ID: 0021_dispatch_queue_index
Revises: 0020_lookup_indexes
Create Date: 2026-12-07 17:20:00

GET /api/v1/dispatch/queue lists open jobs in triage or with a queue reason, soonest due first. With no index
holding only those, it walked every open job in due order looking for them: 227 ms at 1M open jobs with none
waiting. A partial index of the waiting jobs, in the list's order: 7 ms.
"""

from alembic import op

revision = '0021_dispatch_queue_index'
down_revision = '0020_lookup_indexes'
branch_labels = None
depends_on = None

WAITING = "status = 'triage' OR queue_reason IS NOT NULL"


def upgrade() -> None:
    op.create_index('ix_jobs_queued', 'jobs', ['due_at', 'id'], postgresql_where=WAITING)


def downgrade() -> None:
    op.drop_index('ix_jobs_queued', table_name='jobs')
