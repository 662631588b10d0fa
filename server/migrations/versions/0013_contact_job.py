"""reporter contacts carry their report's job: the repeat-contact check is two index probes

Revision ID: 0013_contact_job
Revises: 0012_layer_extents
Create Date: 2026-12-07 04:00:00

kerbside_intake (0011) asks, for a report with a contact that joins an open job, whether the same person (same
email, case-insensitive, or same phone) already reported that job: a repeat contact, recorded as a chaser. It
did so by walking every report of the job and looking up each one's contact, so a report on a job with fifty
reports read fifty reports and fifty contacts (1.4 ms of PostgreSQL time per report under load at 1M jobs:
most of what a contact added to the intake). A contact now carries its report's job (`job_id`; a report never
changes job), and two partial indexes on (lower(email), job_id) and (phone, job_id) answer the question in two
probes, however many reports the job has. The phone index replaces the one on phone alone (a STOP reply and an
erase by phone read its leading column), and the index on created_at goes: the hourly retention sweep reads
the table instead, so a contact costs the intake as many index entries as before, five. Everything else in
kerbside_intake is 0011's, unchanged.
"""

import sqlalchemy as sa
from alembic import op

from server.migrations.earlier import migration

revision = '0013_contact_job'
down_revision = '0012_layer_extents'
branch_labels = None
depends_on = None

CHECK_BEFORE = """    IF attached AND (ct->>'email' IS NOT NULL OR ct->>'phone' IS NOT NULL) AND EXISTS (
         SELECT 1 FROM reporter_contacts o JOIN reports q ON q.id = o.report_id
          WHERE q.job_id = j.id AND o.erased_at IS NULL
            AND (lower(o.email) = lower(ct->>'email') OR o.phone = ct->>'phone')) THEN"""
CHECK_AFTER = """    IF attached AND (
         EXISTS (SELECT 1 FROM reporter_contacts o
                  WHERE o.job_id = j.id AND o.erased_at IS NULL AND lower(o.email) = lower(ct->>'email'))
         OR EXISTS (SELECT 1 FROM reporter_contacts o
                     WHERE o.job_id = j.id AND o.erased_at IS NULL AND o.phone = ct->>'phone')) THEN"""
INSERT_BEFORE = """    INSERT INTO reporter_contacts (report_id, channel, first_name, last_name, email, phone, notify, consent_at,
                                   unsubscribe_token)
    VALUES (r_id, rep->>'channel',"""
INSERT_AFTER = """    INSERT INTO reporter_contacts (report_id, job_id, channel, first_name, last_name, email, phone, notify,
                                   consent_at, unsubscribe_token)
    VALUES (r_id, j.id, rep->>'channel',"""


def _previous():
    return migration('0011_intake_contact.py')


def intake() -> str:
    """0011's kerbside_intake with the repeat-contact check on the contact's own job and the job written."""
    body = _previous().intake()
    for old, new in ((CHECK_BEFORE, CHECK_AFTER), (INSERT_BEFORE, INSERT_AFTER)):
        if body.count(old) != 1:
            raise RuntimeError(f"0011's kerbside_intake no longer has {old!r} once")
        body = body.replace(old, new)
    return body


def upgrade() -> None:
    op.add_column('reporter_contacts', sa.Column('job_id', sa.BigInteger(), nullable=True))
    op.execute("UPDATE reporter_contacts c SET job_id = r.job_id FROM reports r WHERE r.id = c.report_id")
    op.alter_column('reporter_contacts', 'job_id', nullable=False)
    op.create_foreign_key('fk_reporter_contacts_job_id_jobs', 'reporter_contacts', 'jobs', ['job_id'], ['id'])
    op.create_index('ix_reporter_contacts_email_job', 'reporter_contacts', [sa.text('lower(email)'), 'job_id'],
                    postgresql_where=sa.text('erased_at IS NULL'))
    op.create_index('ix_reporter_contacts_phone_job', 'reporter_contacts', ['phone', 'job_id'],
                    postgresql_where=sa.text('erased_at IS NULL'))
    op.drop_index('ix_reporter_contacts_phone', table_name='reporter_contacts')
    op.drop_index('ix_reporter_contacts_live', table_name='reporter_contacts')
    op.execute(intake())


def downgrade() -> None:
    op.execute(_previous().intake())
    op.create_index('ix_reporter_contacts_live', 'reporter_contacts', ['created_at'],
                    postgresql_where=sa.text('erased_at IS NULL'))
    op.create_index('ix_reporter_contacts_phone', 'reporter_contacts', ['phone'],
                    postgresql_where=sa.text('erased_at IS NULL'))
    op.drop_index('ix_reporter_contacts_phone_job', table_name='reporter_contacts')
    op.drop_index('ix_reporter_contacts_email_job', table_name='reporter_contacts')
    op.drop_constraint('fk_reporter_contacts_job_id_jobs', 'reporter_contacts', type_='foreignkey')
    op.drop_column('reporter_contacts', 'job_id')
