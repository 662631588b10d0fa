"""intake: a reporter's contact is queued with the report, and the outbox worker files it

Revision ID: 0017_contact_queue
Revises: 0016_contact_one_statement
Create Date: 2026-12-07 11:20:00

kerbside_intake (0016) wrote a report's contact to `reporter_contacts` in the report's transaction: a heap row
with four index entries (its id, its report, email and job, phone and job), a probe of two of them for a
repeat contact, and a queue row for its "received" messages. Measured request by request on one connection,
that was nearly all of what a contact added to a report (issue 14: notifications may add at most 5 % to the
intake); the API's own share (validating the contact, a larger body) was about 0.5 %. The intake now writes the
contact as it came, in one row of `contact_queue` (one index entry: job, report), in the report's transaction,
so nothing acknowledged is lost. The outbox worker files queued contacts in batches
(server/notifications/received.py): the contact row, dated when the report arrived; its "received" queue row;
and the repeat-contact chaser, when an earlier report of the same job (filed or still queued) came from the
same email or phone, dated when this one arrived. Whatever reads a contact files the queued ones it could miss
first, in its own transaction: a job change messaging its reporters, an adviser reading one, an erase, a STOP
reply. Everything else in kerbside_intake is 0016's, unchanged.
"""

import sqlalchemy as sa
from alembic import op

from server.migrations.earlier import migration

revision = '0017_contact_queue'
down_revision = '0016_contact_one_statement'
branch_labels = None
depends_on = None

CONTACT_AFTER = """    INSERT INTO contact_queue (job_id, report_id, channel, first_name, last_name, email, phone, notify, consent_at,
                               tell, category_code, actor, received_at)
    VALUES (j.id, r_id, rep->>'channel', ct->>'first_name', ct->>'last_name', ct->>'email', ct->>'phone',
            ct->>'notify', CASE WHEN (ct->>'consent')::boolean THEN now() END,
            jsonb_array_length(coalesce(ct->'kinds', '[]'::jsonb)) > 0, p->>'category', p->>'actor', now_);
    -- the same NOTIFY as a new job's dispatch: PostgreSQL sends it once per transaction
    notes := notes || jsonb_build_array(jsonb_build_array(p->>'outbox_channel', ''));
"""
TELL_BEFORE = """    IF told > 0 THEN  -- the same NOTIFY as a new job's dispatch: PostgreSQL sends it once per transaction
      notes := notes || jsonb_build_array(jsonb_build_array(p->>'outbox_channel', ''));
    END IF;
"""

# What the downgrade does with contacts still queued: files them as 0016's intake would have (contact, "received"
# queue row, repeat-contact chaser), in report order.
FILE_ALL = """
    WITH taken AS (DELETE FROM contact_queue RETURNING *)
    , made AS (
      INSERT INTO reporter_contacts (report_id, job_id, channel, first_name, last_name, email, phone, notify,
                                     consent_at, created_at)
      SELECT report_id, job_id, channel, first_name, last_name, email, phone, notify, consent_at, received_at
        FROM taken ORDER BY report_id
      RETURNING id, job_id, report_id)
    , told AS (
      INSERT INTO received_queue (job_id, contact_id)
      SELECT m.job_id, m.id FROM made m JOIN taken t ON t.report_id = m.report_id WHERE t.tell)
    INSERT INTO chasers (job_id, category_code, channel, kind, actor, at)
    SELECT t.job_id, t.category_code, t.channel, 'repeat_report', t.actor, t.received_at
      FROM taken t
     WHERE EXISTS (SELECT 1 FROM reporter_contacts o
                    WHERE o.job_id = t.job_id AND o.erased_at IS NULL AND o.report_id < t.report_id
                      AND (lower(o.email) = lower(t.email) OR o.phone = t.phone))
        OR EXISTS (SELECT 1 FROM contact_queue o
                    WHERE o.job_id = t.job_id AND o.report_id < t.report_id
                      AND (lower(o.email) = lower(t.email) OR o.phone = t.phone))
"""


# What 0016 declared and returned for the contact it wrote: nothing now (the contact's id is made when it is filed).
DECLARE_BEFORE = "  contact_id bigint;\n  is_repeat boolean;\n  told integer := 0;\n"
RETURN_BEFORE = "'attached', attached, 'contact_id', contact_id,"
RETURN_AFTER = "'attached', attached,"

COMMENT_BEFORE = """  -- The reporter's contact (optional), kept apart from the report: a repeat-contact chaser when the same
  -- person (same email or phone) already reported this job, then the contact and its "received" messages,
  -- one outbox row per kind (separate queues, so a text held for quiet hours holds no email).
"""
COMMENT_AFTER = """  -- The reporter's contact (optional), kept apart from the report and the job: queued as it came, for the
  -- outbox worker to file with its "received" messages and, for a repeat contact, a chaser.
"""


def _previous():
    return migration('0016_contact_one_statement.py')


def intake() -> str:
    """0016's kerbside_intake with the contact queued as it came."""
    body = _previous().intake()
    before = _previous().CONTACT_AFTER + TELL_BEFORE
    if any(body.count(old) != 1 for old in (before, COMMENT_BEFORE, DECLARE_BEFORE, RETURN_BEFORE)):
        raise RuntimeError("0016's kerbside_intake no longer reads as 0017 expects")
    return (body.replace(before, CONTACT_AFTER).replace(COMMENT_BEFORE, COMMENT_AFTER)
            .replace(DECLARE_BEFORE, "").replace(RETURN_BEFORE, RETURN_AFTER))


def upgrade() -> None:
    op.create_table(
        'contact_queue',
        sa.Column('job_id', sa.BigInteger(), nullable=False),
        sa.Column('report_id', sa.BigInteger(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('first_name', sa.String(length=100), nullable=True),
        sa.Column('last_name', sa.String(length=100), nullable=True),
        sa.Column('email', sa.String(length=254), nullable=True),
        sa.Column('phone', sa.String(length=20), nullable=True),
        sa.Column('notify', sa.String(length=8), nullable=False),
        sa.Column('consent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('tell', sa.Boolean(), nullable=False),
        sa.Column('category_code', sa.String(length=64), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('job_id', 'report_id', name='pk_contact_queue'),
    )
    op.execute(intake())


def downgrade() -> None:
    op.execute(_previous().intake())
    op.execute(FILE_ALL)
    op.drop_table('contact_queue')
