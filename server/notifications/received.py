"""A report's "received" messages: from the intake's queue row to outbox rows.

kerbside_intake (migration 0014) writes one narrow `received_queue` row (job, contact) in the report's own
transaction: the report's acknowledgement is durable the moment the report is. Writing the messages themselves
(an outbox row per kind, each with a payload and four index entries) is left to the outbox worker, which does it
for many contacts in one statement before each delivery run. The outbox then does what it does for every
message: retries, quiet hours, dead letters, "send again", one send per row.

Order per job holds because a job change that messages the job's reporters first writes that job's queued
"received" rows (`for_job`, in the same transaction, waiting for a worker that holds them): their outbox ids are
then lower than the change's, and the outbox sends a job's messages to one destination in id order.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from server.config import get_settings
from server.notifications import quiet

BATCH = 500

# Queued rows taken (deleted) and written as outbox rows in one statement: an email and/or a text per contact
# by its current choice, none for a contact erased or unsubscribed meanwhile. Keys are those 0011 wrote, so a
# row written twice (it cannot be: the queue row is gone once written) would still be one message.
_WRITE = """
    WITH taken AS (
      DELETE FROM received_queue q
       WHERE (q.job_id, q.contact_id) IN (SELECT job_id, contact_id FROM received_queue {where}
                                           ORDER BY contact_id LIMIT :limit FOR UPDATE {skip})
      RETURNING q.job_id, q.contact_id)
    , written AS (
    INSERT INTO outbox_messages (destination, topic, job_id, idempotency_key, next_attempt_at, payload, state,
                                 attempts)
    SELECT 'notify:' || k.kind, 'received', t.job_id, 'notify:received:' || r.reference || ':' || k.kind,
           CASE k.kind WHEN 'sms' THEN :sms_due ELSE now() END,
           jsonb_build_object('contact_id', c.id, 'report', r.reference, 'template', 'received', 'kind', k.kind),
           'pending', 0
      FROM taken t JOIN reporter_contacts c ON c.id = t.contact_id JOIN reports r ON r.id = c.report_id
     CROSS JOIN LATERAL unnest(CASE c.notify WHEN 'both' THEN ARRAY['email', 'sms'] WHEN 'email' THEN ARRAY['email']
                                              WHEN 'sms' THEN ARRAY['sms'] ELSE ARRAY[]::text[] END)
           WITH ORDINALITY AS k(kind, n)
     WHERE c.erased_at IS NULL AND c.unsubscribed_at IS NULL
     ORDER BY t.contact_id, k.n
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING 1)
    SELECT (SELECT count(*) FROM taken) AS contacts, (SELECT count(*) FROM written) AS messages
"""
_ANY = text(_WRITE.format(where="", skip="SKIP LOCKED"))  # workers share the queue and never wait on each other
_JOB = text(_WRITE.format(where="WHERE job_id = :job_id", skip=""))  # a job change waits: its order depends on it


def _sms_due() -> datetime:
    s = get_settings()
    return quiet.next_allowed(datetime.now(timezone.utc), s.notify_quiet_start, s.notify_quiet_end, s.timezone)


def write_queued(session: Session, limit: int = BATCH) -> int:
    """Write up to `limit` queued contacts' "received" messages to the outbox; the caller commits. Returns the
    number of contacts taken from the queue (a contact erased meanwhile is taken and sent nothing)."""
    return session.execute(_ANY, {"limit": limit, "sms_due": _sms_due()}).one().contacts


def for_job(session: Session, job_id: int) -> int:
    """Write the job's queued "received" messages now, before the caller queues a later message of the job.
    Returns the number of outbox rows written."""
    return session.execute(_JOB, {"job_id": job_id, "limit": 1_000_000, "sms_due": _sms_due()}).one().messages
