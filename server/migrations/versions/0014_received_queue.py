"""intake: a report's "received" messages are queued as one small row, and the worker writes them to the outbox

Revision ID: 0014_received_queue
Revises: 0013_contact_job
Create Date: 2026-12-07 06:00:00

kerbside_intake (0011, 0013) wrote a contact's "received" messages straight into the outbox: one row per kind
(an email and a text for most residents), each a heap row with a JSON payload and four index entries (its key,
its job, its due time, its id). That was the largest part of what a contact added to the intake (issue 14:
notifications may add at most 5 % to it). The intake now writes one narrow row per contact to `received_queue`
(job, contact: one heap row, one index entry), in the report's transaction, so nothing acknowledged is lost.
The outbox worker turns queued rows into the same outbox rows, in batches, before each delivery run
(server/notifications/received.py); a job change that messages a job's reporters first turns that job's
queued rows into outbox rows in its own transaction, so a reporter is always told "received" before anything
later. There are no foreign keys on the queue: a row lives seconds, and checking two keys would cost the intake
two more index probes and row locks; the worker skips a row whose contact has since been erased or has
unsubscribed. The open job a report may join is now locked FOR NO KEY UPDATE (what its UPDATE takes) rather
than FOR UPDATE, so those foreign-key checks and the intake never wait for each other. Everything else in
kerbside_intake is 0013's, unchanged.
"""

import sqlalchemy as sa
from alembic import op

from server.migrations.earlier import migration

revision = '0014_received_queue'
down_revision = '0013_contact_job'
branch_labels = None
depends_on = None

QUEUE_BEFORE = """    INSERT INTO outbox_messages (destination, topic, job_id, idempotency_key, next_attempt_at, payload, state,
                                 attempts)
    SELECT 'notify:' || k.kind, 'received', j.id, 'notify:received:' || r_ref || ':' || k.kind,
           CASE k.kind WHEN 'sms' THEN (ct->>'sms_due')::timestamptz ELSE now() END,
           jsonb_build_object('contact_id', contact_id, 'report', r_ref, 'template', 'received', 'kind', k.kind),
           'pending', 0
      FROM jsonb_array_elements_text(ct->'kinds') WITH ORDINALITY AS k(kind, n)
     ORDER BY k.n;  -- keys of a report reference made a moment ago: nothing to conflict with
    GET DIAGNOSTICS told = ROW_COUNT;"""
QUEUE_AFTER = """    IF jsonb_array_length(coalesce(ct->'kinds', '[]'::jsonb)) > 0 THEN  -- the outbox worker writes its messages
      INSERT INTO received_queue (job_id, contact_id) VALUES (j.id, contact_id);
      told := 1;
    END IF;"""
# The open job a report may join is locked as the UPDATE that follows locks it (FOR NO KEY UPDATE), not FOR
# UPDATE: reports joining one job still go one at a time, while a transaction writing a row that refers to the
# job (the worker's outbox rows: a foreign key check takes FOR KEY SHARE) neither waits for nor blocks them.
LOCK_BEFORE = "LIMIT 1 FOR UPDATE;"
LOCK_AFTER = "LIMIT 1 FOR NO KEY UPDATE;"

# What the downgrade does with rows still queued: 0013's outbox rows for them, due now (a text in quiet hours
# is held by the sender until the morning).
DRAIN = """
    WITH taken AS (DELETE FROM received_queue RETURNING job_id, contact_id)
    INSERT INTO outbox_messages (destination, topic, job_id, idempotency_key, next_attempt_at, payload, state,
                                 attempts)
    SELECT 'notify:' || k.kind, 'received', t.job_id, 'notify:received:' || r.reference || ':' || k.kind, now(),
           jsonb_build_object('contact_id', c.id, 'report', r.reference, 'template', 'received', 'kind', k.kind),
           'pending', 0
      FROM taken t JOIN reporter_contacts c ON c.id = t.contact_id JOIN reports r ON r.id = c.report_id
     CROSS JOIN LATERAL unnest(CASE c.notify WHEN 'both' THEN ARRAY['email', 'sms'] WHEN 'email' THEN ARRAY['email']
                                              WHEN 'sms' THEN ARRAY['sms'] ELSE ARRAY[]::text[] END)
           WITH ORDINALITY AS k(kind, n)
     ORDER BY t.contact_id, k.n
    ON CONFLICT (idempotency_key) DO NOTHING
"""


def _previous():
    return migration('0013_contact_job.py')


def intake() -> str:
    """0013's kerbside_intake with a contact's "received" messages queued as one row for the outbox worker."""
    body = _previous().intake()
    if body.count(QUEUE_BEFORE) != 1 or body.count(LOCK_BEFORE) != 2:
        raise RuntimeError("0013's kerbside_intake no longer reads as 0014 expects")
    return body.replace(QUEUE_BEFORE, QUEUE_AFTER).replace(LOCK_BEFORE, LOCK_AFTER)


def upgrade() -> None:
    op.create_table(
        'received_queue',
        sa.Column('job_id', sa.BigInteger(), nullable=False),
        sa.Column('contact_id', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('job_id', 'contact_id', name='pk_received_queue'),
    )
    op.execute(intake())


def downgrade() -> None:
    op.execute(_previous().intake())
    op.execute(DRAIN)
    op.drop_table('received_queue')
