"""intake: a reporter's contact is written, queued and checked for a repeat in one statement

Revision ID: 0016_contact_one_statement
Revises: 0015_contact_keys
Create Date: 2026-12-07 10:15:00

kerbside_intake (0013, 0014) spent three statements on a report's contact: the repeat-contact check (two index
probes), the contact's INSERT and the received_queue INSERT, each a statement of its own in the PL/pgSQL
function with its own snapshot, executor start and end. Measured with pg_stat_statements (track=all, one
connection, 1M lamp columns), they took 19.5, 30.9 and 8.6 µs per report, most of what a contact added to the
intake's PostgreSQL time (issue 14: notifications may add at most 5 % to it). They are now one statement: the
contact's INSERT and the queue's INSERT as data-modifying WITH queries, and the check in the SELECT that reads
the new contact's id. The check sees the table as it was before the statement (no sub-statement sees another's
rows), so it finds the same earlier contacts as before, never the one being written. The chaser of a repeat
contact is still written in the report's transaction, now after the contact rather than before it. Everything
else in kerbside_intake is 0014's, unchanged.
"""

from alembic import op

from server.migrations.earlier import migration

revision = '0016_contact_one_statement'
down_revision = '0015_contact_keys'
branch_labels = None
depends_on = None

DECLARE_BEFORE = "  contact_id bigint;\n"
DECLARE_AFTER = "  contact_id bigint;\n  is_repeat boolean;\n"
CONTACT_BEFORE = """    IF attached AND (
         EXISTS (SELECT 1 FROM reporter_contacts o
                  WHERE o.job_id = j.id AND o.erased_at IS NULL AND lower(o.email) = lower(ct->>'email'))
         OR EXISTS (SELECT 1 FROM reporter_contacts o
                     WHERE o.job_id = j.id AND o.erased_at IS NULL AND o.phone = ct->>'phone')) THEN
      INSERT INTO chasers (job_id, category_code, channel, kind, actor)
      VALUES (j.id, p->>'category', rep->>'channel', 'repeat_report', p->>'actor');
    END IF;
    INSERT INTO reporter_contacts (report_id, job_id, channel, first_name, last_name, email, phone, notify,
                                   consent_at, unsubscribe_token)
    VALUES (r_id, j.id, rep->>'channel', ct->>'first_name', ct->>'last_name', ct->>'email', ct->>'phone', ct->>'notify',
            CASE WHEN (ct->>'consent')::boolean THEN now() END, ct->>'token')
    RETURNING id INTO contact_id;
    IF jsonb_array_length(coalesce(ct->'kinds', '[]'::jsonb)) > 0 THEN  -- the outbox worker writes its messages
      INSERT INTO received_queue (job_id, contact_id) VALUES (j.id, contact_id);
      told := 1;
    END IF;
"""
# The contact, its queue row (when it chose a kind of message: the outbox worker writes them) and whether the
# same person (email or phone) had already reported this job, in one statement. The EXISTS probes see the
# contacts as they were before this statement, so never the one it writes.
CONTACT_AFTER = """    WITH c AS (
      INSERT INTO reporter_contacts (report_id, job_id, channel, first_name, last_name, email, phone, notify,
                                     consent_at, unsubscribe_token)
      VALUES (r_id, j.id, rep->>'channel', ct->>'first_name', ct->>'last_name', ct->>'email', ct->>'phone',
              ct->>'notify', CASE WHEN (ct->>'consent')::boolean THEN now() END, ct->>'token')
      RETURNING id
    ), q AS (
      INSERT INTO received_queue (job_id, contact_id)
      SELECT j.id, c.id FROM c WHERE jsonb_array_length(coalesce(ct->'kinds', '[]'::jsonb)) > 0
      RETURNING 1
    )
    SELECT c.id, (SELECT count(*) FROM q),
           attached AND (
             EXISTS (SELECT 1 FROM reporter_contacts o
                      WHERE o.job_id = j.id AND o.erased_at IS NULL AND lower(o.email) = lower(ct->>'email'))
             OR EXISTS (SELECT 1 FROM reporter_contacts o
                         WHERE o.job_id = j.id AND o.erased_at IS NULL AND o.phone = ct->>'phone'))
      INTO contact_id, told, is_repeat
      FROM c;
    IF is_repeat THEN
      INSERT INTO chasers (job_id, category_code, channel, kind, actor)
      VALUES (j.id, p->>'category', rep->>'channel', 'repeat_report', p->>'actor');
    END IF;
"""


def _previous():
    return migration('0014_received_queue.py')


def intake() -> str:
    """0014's kerbside_intake with the contact's three statements made one."""
    body = _previous().intake()
    for old in (DECLARE_BEFORE, CONTACT_BEFORE):
        if body.count(old) != 1:
            raise RuntimeError(f"0014's kerbside_intake no longer has {old!r} once")
    return body.replace(DECLARE_BEFORE, DECLARE_AFTER).replace(CONTACT_BEFORE, CONTACT_AFTER)


def upgrade() -> None:
    op.execute(intake())


def downgrade() -> None:
    op.execute(_previous().intake())
