"""intake: the reporter's contact in kerbside_intake's own round trip

Revision ID: 0011_intake_contact
Revises: 0010_road_network
Create Date: 2026-12-07 00:40:00

A report that carries the reporter's contact (issue 14) used to cost a second statement after
kerbside_intake: the contact, the repeat-contact chaser, the "received" messages and the worker's wake-up.
They are now written by kerbside_intake itself when its parameter has a `contact` member (first_name,
last_name, email, phone, notify, consent, token: the unsubscribe token, kinds: the message kinds to queue,
sms_due: when a text may be sent), so such a report costs the same two round trips as any other. The result
gains `contact_id`. Everything else is 0005's function unchanged.
"""

from alembic import op

from server.migrations.earlier import migration

revision = '0011_intake_contact'
down_revision = '0010_road_network'
branch_labels = None
depends_on = None

# What 0011 adds to 0005's function, spliced in (the rest of the body is 0005's, unchanged).
DECLARE = """  notified integer;
  ct jsonb := nullif(p->'contact', 'null'::jsonb);
  contact_id bigint;
  told integer := 0;
  defer boolean := coalesce((p->>'defer_notify')::boolean, false);
  notes jsonb;
BEGIN"""
# The timeline's NOTIFYs gathered as [channel, payload] pairs rather than sent at once.
EVENTS_BEFORE = """         (SELECT count(*) FROM (SELECT pg_notify(p->>'event_channel', json_build_object(
                                  'job', j.reference, 'event_id', ins.id, 'type', ins.type, 'status', j.status)::text)
                                  FROM ins JOIN spec s ON s.type = ins.type WHERE s.notify) sent)
    INTO attached_event, notified;"""
EVENTS_AFTER = """         (SELECT coalesce(jsonb_agg(jsonb_build_array(p->>'event_channel', json_build_object(
                                  'job', j.reference, 'event_id', ins.id, 'type', ins.type, 'status', j.status)::text)
                                  ORDER BY ins.id), '[]'::jsonb)
            FROM ins JOIN spec s ON s.type = ins.type WHERE s.notify)
    INTO attached_event, notes;"""
DISPATCH_BEFORE = """    ON CONFLICT (idempotency_key) DO NOTHING;
    PERFORM pg_notify(p->>'outbox_channel', '');
  END IF;"""
DISPATCH_AFTER = """    ON CONFLICT (idempotency_key) DO NOTHING;
    notes := notes || jsonb_build_array(jsonb_build_array(p->>'outbox_channel', ''));
  END IF;"""
CONTACT = r"""  -- The reporter's contact (optional), kept apart from the report: a repeat-contact chaser when the same
  -- person (same email or phone) already reported this job, then the contact and its "received" messages,
  -- one outbox row per kind (separate queues, so a text held for quiet hours holds no email).
  IF ct IS NOT NULL THEN
    IF attached AND (ct->>'email' IS NOT NULL OR ct->>'phone' IS NOT NULL) AND EXISTS (
         SELECT 1 FROM reporter_contacts o JOIN reports q ON q.id = o.report_id
          WHERE q.job_id = j.id AND o.erased_at IS NULL
            AND (lower(o.email) = lower(ct->>'email') OR o.phone = ct->>'phone')) THEN
      INSERT INTO chasers (job_id, category_code, channel, kind, actor)
      VALUES (j.id, p->>'category', rep->>'channel', 'repeat_report', p->>'actor');
    END IF;
    INSERT INTO reporter_contacts (report_id, channel, first_name, last_name, email, phone, notify, consent_at,
                                   unsubscribe_token)
    VALUES (r_id, rep->>'channel', ct->>'first_name', ct->>'last_name', ct->>'email', ct->>'phone', ct->>'notify',
            CASE WHEN (ct->>'consent')::boolean THEN now() END, ct->>'token')
    RETURNING id INTO contact_id;
    INSERT INTO outbox_messages (destination, topic, job_id, idempotency_key, next_attempt_at, payload, state,
                                 attempts)
    SELECT 'notify:' || k.kind, 'received', j.id, 'notify:received:' || r_ref || ':' || k.kind,
           CASE k.kind WHEN 'sms' THEN (ct->>'sms_due')::timestamptz ELSE now() END,
           jsonb_build_object('contact_id', contact_id, 'report', r_ref, 'template', 'received', 'kind', k.kind),
           'pending', 0
      FROM jsonb_array_elements_text(ct->'kinds') WITH ORDINALITY AS k(kind, n)
     ORDER BY k.n;  -- keys of a report reference made a moment ago: nothing to conflict with
    GET DIAGNOSTICS told = ROW_COUNT;
    IF told > 0 THEN  -- the same NOTIFY as a new job's dispatch: PostgreSQL sends it once per transaction
      notes := notes || jsonb_build_array(jsonb_build_array(p->>'outbox_channel', ''));
    END IF;
  END IF;

  -- The NOTIFYs: sent here (delivered at commit), or, with defer_notify, returned for the caller to send
  -- in a transaction of their own after this one commits. A transaction that has sent NOTIFY holds the
  -- database-wide notification queue lock from before its commit until its commit record is flushed, so
  -- reports that notify inside their own transaction commit one at a time.
  IF NOT defer THEN
    PERFORM pg_notify(note->>0, note->>1) FROM jsonb_array_elements(notes) AS note;
  END IF;

"""
RESULT_BEFORE = "  RETURN jsonb_build_object('report_id', r_id, 'job_id', j.id, 'attached', attached,"
RESULT_AFTER = ("  RETURN jsonb_build_object('report_id', r_id, 'job_id', j.id, 'attached', attached, 'contact_id', contact_id,"
                "\n                            'notify', CASE WHEN defer THEN notes END,")



def _previous():
    return migration('0005_intake_plans.py')


def intake() -> str:
    """0005's kerbside_intake with the contact (written before the result, its id returned) and the NOTIFYs
    gathered, then sent or (defer_notify) returned."""
    body = _previous().INTAKE
    for old, new in (("  notified integer;\nBEGIN", DECLARE), (EVENTS_BEFORE, EVENTS_AFTER),
                     (DISPATCH_BEFORE, DISPATCH_AFTER), (RESULT_BEFORE, CONTACT + RESULT_AFTER)):
        if body.count(old) != 1:
            raise RuntimeError(f"0005's kerbside_intake no longer has {old!r} once")
        body = body.replace(old, new)
    return body


def upgrade() -> None:
    op.execute(intake())


def downgrade() -> None:
    op.execute(_previous().INTAKE)
