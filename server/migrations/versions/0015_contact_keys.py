"""reporter contacts: no foreign-key checks and no stored unsubscribe token in the intake

Revision ID: 0015_contact_keys
Revises: 0014_received_queue
Create Date: 2026-12-07 06:30:00

What a reporter's contact still added to kerbside_intake after 0014 (issue 14: notifications may add at most
5 % to the intake), measured statement by statement on one connection at 1M lamp columns: the contact's INSERT
took 0.17 ms, of which two foreign-key checks (its report, its job: each an index probe and a row lock, itself
a WAL record) took 0.065 ms, and the unique index on a random unsubscribe token (an insert at a random page of
a growing index: cache misses and, after every checkpoint, full-page images) 0.035 ms.

- The foreign keys on `report_id` and `job_id` go. A contact is written only by kerbside_intake, in the
  transaction that has just written its report (`report_id`) on the job it holds locked (`job_id`); reports
  and jobs are never deleted. The same reasoning as reports' category, ward and token (0001).
- A new contact stores no unsubscribe token: its link carries the contact's id signed with the API's secret
  (server/notifications/contacts.py). Links already sent keep working: their tokens stay, and the unique
  index is kept for them alone (`WHERE unsubscribe_token IS NOT NULL`).
kerbside_intake is unchanged: it inserts the `token` member of its parameter, which the API no longer sends.
"""

import sqlalchemy as sa
from alembic import op

revision = '0015_contact_keys'
down_revision = '0014_received_queue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint('fk_reporter_contacts_report_id_reports', 'reporter_contacts', type_='foreignkey')
    op.drop_constraint('fk_reporter_contacts_job_id_jobs', 'reporter_contacts', type_='foreignkey')
    op.alter_column('reporter_contacts', 'unsubscribe_token', existing_type=sa.String(64), nullable=True)
    op.drop_constraint('uq_reporter_contacts_unsubscribe_token', 'reporter_contacts', type_='unique')
    op.create_index('uq_reporter_contacts_unsubscribe_token', 'reporter_contacts', ['unsubscribe_token'],
                    unique=True, postgresql_where=sa.text('unsubscribe_token IS NOT NULL'))


def downgrade() -> None:
    # Contacts made since get a random token of their own (0014's code looks links up by it); links already sent
    # to them, signed, stop working: the reporter can still reply STOP or ask the contact centre.
    op.execute("""UPDATE reporter_contacts SET unsubscribe_token = replace(gen_random_uuid()::text, '-', '')
                   WHERE unsubscribe_token IS NULL""")
    op.drop_index('uq_reporter_contacts_unsubscribe_token', table_name='reporter_contacts')
    op.create_unique_constraint('uq_reporter_contacts_unsubscribe_token', 'reporter_contacts', ['unsubscribe_token'])
    op.alter_column('reporter_contacts', 'unsubscribe_token', existing_type=sa.String(64), nullable=False)
    op.create_foreign_key('fk_reporter_contacts_job_id_jobs', 'reporter_contacts', 'jobs', ['job_id'], ['id'])
    op.create_foreign_key('fk_reporter_contacts_report_id_reports', 'reporter_contacts', 'reports', ['report_id'],
                          ['id'])
