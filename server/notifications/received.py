"""A report's contact and its "received" messages: from the intake's queue rows to contacts and outbox rows.

kerbside_intake (migration 0017) writes the reporter's contact as it came, one `contact_queue` row, in the
report's own transaction: the contact and the report's acknowledgement are durable the moment the report is.
Filing it is left to the outbox worker, which does it for many contacts in one statement before each delivery
run: the contact row (four index entries), its `received_queue` row when it chose a kind of message, and a
repeat-contact chaser when an earlier report of the same job came from the same email or phone. Writing the
messages themselves (an outbox row per kind, each with a payload and four index entries) follows, from
`received_queue` (migration 0014). The outbox then does what it does for every message: retries, quiet
hours, dead letters, "send again", one send per row.

Whatever reads contacts files the queued ones first, in its own transaction, so that a contact queued a moment
ago is never missed: a job change that messages the job's reporters (`for_job`), an adviser reading a report's
contact (`file_job`), an erase or a STOP reply (`file_all`). Order per job holds because a job change first
writes that job's queued "received" rows (`for_job`, in the same transaction, waiting for a worker that holds
them): their outbox ids are then lower than the change's, and the outbox sends a job's messages to one
destination in id order.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from server.config import get_settings
from server.notifications import quiet

BATCH = 500

# Queued contacts taken (deleted) and filed in one statement, in report order: the contact, dated when its report
# arrived; its "received" queue row; a chaser when an earlier report of the job (filed, or queued still, in this
# batch or not: the statement sees the queue as it was before it) came from the same email or phone.
_FILE = """
    WITH taken AS (
      DELETE FROM contact_queue q
       WHERE (q.job_id, q.report_id) IN (SELECT job_id, report_id FROM contact_queue {where}
                                          ORDER BY job_id, report_id LIMIT :limit FOR UPDATE {skip})
      RETURNING q.*)
    , made AS (
      INSERT INTO reporter_contacts (report_id, job_id, channel, first_name, last_name, email, phone, notify,
                                     consent_at, created_at)
      SELECT report_id, job_id, channel, first_name, last_name, email, phone, notify, consent_at, received_at
        FROM taken ORDER BY report_id
      RETURNING id, job_id, report_id)
    , told AS (
      INSERT INTO received_queue (job_id, contact_id)
      SELECT m.job_id, m.id FROM made m JOIN taken t ON t.report_id = m.report_id WHERE t.tell
      RETURNING 1)
    , chased AS (
      INSERT INTO chasers (job_id, category_code, channel, kind, actor, at)
      SELECT t.job_id, t.category_code, t.channel, 'repeat_report', t.actor, t.received_at
        FROM taken t
       WHERE EXISTS (SELECT 1 FROM reporter_contacts o
                      WHERE lower(o.email) = lower(t.email) AND o.job_id = t.job_id AND o.erased_at IS NULL
                        AND o.report_id < t.report_id)
          OR EXISTS (SELECT 1 FROM reporter_contacts o
                      WHERE o.phone = t.phone AND o.job_id = t.job_id AND o.erased_at IS NULL
                        AND o.report_id < t.report_id)
          OR EXISTS (SELECT 1 FROM contact_queue o
                      WHERE o.job_id = t.job_id AND o.report_id < t.report_id
                        AND (lower(o.email) = lower(t.email) OR o.phone = t.phone))
      RETURNING 1)
    SELECT (SELECT count(*) FROM made) AS contacts, (SELECT count(*) FROM told) AS told,
           (SELECT count(*) FROM chased) AS chasers, (SELECT max(ARRAY[job_id, report_id]) FROM taken) AS last
"""
# Workers share the queue and never wait on each other. A drain goes on from the key its last batch ended at,
# rather than walking again past the index entries of the rows it has just deleted (dead until vacuumed: a
# backlog of n rows would cost n²/BATCH entry visits).
_FILE_ANY = text(_FILE.format(where="WHERE (job_id, report_id) > (:after_job, :after_key)", skip="SKIP LOCKED"))
_FILE_JOB = text(_FILE.format(where="WHERE job_id = :job_id", skip=""))  # a reader waits: it must see them all
_FILE_ALL = text(_FILE.format(where="", skip=""))
_NO_JIT = text("SET LOCAL jit = off")

# Queued rows taken (deleted) and written as outbox rows in one statement: an email and/or a text per contact
# by its current choice, none for a contact erased or unsubscribed meanwhile. Keys are those 0011 wrote, so a
# row written twice (it cannot be: the queue row is gone once written) would still be one message.
_WRITE = """
    WITH taken AS (
      DELETE FROM received_queue q
       WHERE (q.job_id, q.contact_id) IN (SELECT job_id, contact_id FROM received_queue {where}
                                           ORDER BY job_id, contact_id LIMIT :limit FOR UPDATE {skip})
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
    SELECT (SELECT count(*) FROM taken) AS contacts, (SELECT count(*) FROM written) AS messages,
           (SELECT max(ARRAY[job_id, contact_id]) FROM taken) AS last
"""
_ANY = text(_WRITE.format(where="WHERE (job_id, contact_id) > (:after_job, :after_key)", skip="SKIP LOCKED"))
_JOB = text(_WRITE.format(where="WHERE job_id = :job_id", skip=""))  # a job change waits: its order depends on it


def _sms_due() -> datetime:
    s = get_settings()
    return quiet.next_allowed(datetime.now(timezone.utc), s.notify_quiet_start, s.notify_quiet_end, s.timezone)


class Drain:
    """Where a run of write_queued batches has got to in each queue (keys in index order; a fresh Drain starts
    at the beginning). Rows queued meanwhile below those keys are left to the next run."""

    def __init__(self) -> None:
        self.contacts: tuple[int, int] = (0, 0)
        self.received: tuple[int, int] = (0, 0)


def write_queued(session: Session, limit: int = BATCH, drain: Drain | None = None) -> int:
    """File up to `limit` queued contacts, then write up to `limit` queued contacts' "received" messages to the
    outbox; the caller commits. Returns the larger number of rows taken from either queue (a contact erased
    meanwhile is taken and sent nothing). Successive calls with one `drain` go on where the last one ended."""
    drain = drain or Drain()
    # Off the request path, on a queue that may have grown (a worker that was down): a large queue makes the
    # planner's estimates large enough for PostgreSQL to JIT-compile the statements, which took longer (24 ms
    # per batch of 500, measured) than running them.
    session.execute(_NO_JIT)
    filed = session.execute(_FILE_ANY, {"limit": limit, "after_job": drain.contacts[0],
                                        "after_key": drain.contacts[1]}).one()
    if filed.last:
        drain.contacts = tuple(filed.last)
    written = session.execute(_ANY, {"limit": limit, "sms_due": _sms_due(), "after_job": drain.received[0],
                                     "after_key": drain.received[1]}).one()
    if written.last:
        drain.received = tuple(written.last)
    return max(filed.contacts, written.contacts)


def file_job(session: Session, job_id: int) -> int:
    """File the job's queued contacts now (waiting for a worker filing them), in the caller's transaction, before
    the caller reads the job's contacts. Returns the number filed."""
    return session.execute(_FILE_JOB, {"job_id": job_id, "limit": 1_000_000}).one().contacts


def file_all(session: Session) -> int:
    """File every queued contact now (waiting for a worker filing some), before the caller looks contacts up by
    email or phone. Returns the number filed."""
    return session.execute(_FILE_ALL, {"limit": 1_000_000}).one().contacts


def for_job(session: Session, job_id: int) -> int:
    """File the job's queued contacts and write their "received" messages now, before the caller queues a later
    message of the job. Returns the number of outbox rows written."""
    file_job(session, job_id)
    return session.execute(_JOB, {"job_id": job_id, "limit": 1_000_000, "sms_due": _sms_due()}).one().messages
