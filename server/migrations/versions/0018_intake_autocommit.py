"""intake: kerbside_intake can decline an attach that needs the ORM's follow-ups before writing anything

Revision ID: 0018_intake_autocommit
Revises: 0017_contact_queue
Create Date: 2026-12-07 13:30:00

The API's async path (server/reports/service.py submit_report_async) ran a report in a transaction of its own:
BEGIN, where the point is, kerbside_intake, then COMMIT with the wake-ups. Its connections are now in
autocommit, so BEGIN and COMMIT are no longer round trips of their own: the first statement only reads, and
kerbside_intake is one statement, so it is its own transaction. That path could not roll back an attach that
needs the ORM's follow-ups (a more severe report raising the open job's priority, or CRM webhooks subscribed
to attaches), so it asks kerbside_intake (`defer_follow_up`) to find such an attach after locking its job and
to return {"follow_up": true} before writing anything; the API then takes the report on a session, in one
transaction with the follow-ups, as before (an attach it does take then has no subscriptions to look up again).
The session path does not ask, and gets 0017's function.
"""

from alembic import op

from server.migrations.earlier import migration

revision = '0018_intake_autocommit'
down_revision = '0017_contact_queue'
branch_labels = None
depends_on = None

ATTACHED = "  attached := j.id IS NOT NULL;\n"
DECLINE = ATTACHED + """  -- Asked by the API's autocommit path: an attach that needs the ORM's follow-ups (a more
  -- severe report raising the open job's priority, or webhooks subscribed to attaches) writes nothing and
  -- says so; the API then takes the report on a session, in one transaction with those follow-ups.
  IF attached AND coalesce((p->>'defer_follow_up')::boolean, false) AND (
       coalesce(array_position(ARRAY['emergency', 'urgent', 'normal', 'low'], jb->>'priority'), 10)
         < coalesce(array_position(ARRAY['emergency', 'urgent', 'normal', 'low'], j.priority::text), 10)
       OR EXISTS (SELECT 1 FROM subscriptions s
                   WHERE s.active AND s.event_types @> '["report_attached"]'::jsonb)) THEN
    RETURN jsonb_build_object('follow_up', true);
  END IF;
"""


SUBSCRIBED = """  IF attached THEN
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO subs FROM subscriptions s
     WHERE s.active AND s.event_types @> '["report_attached"]'::jsonb;
"""
SUBSCRIBED_AFTER = """  IF attached AND coalesce((p->>'defer_follow_up')::boolean, false) THEN
    subs := '{}';  -- none: an attach they wait for was declined above
  ELSIF attached THEN
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') INTO subs FROM subscriptions s
     WHERE s.active AND s.event_types @> '["report_attached"]'::jsonb;
"""


def _previous():
    return migration('0017_contact_queue.py')


def intake() -> str:
    """0017's kerbside_intake, declining a follow-up attach when asked."""
    body = _previous().intake()
    if body.count(ATTACHED) != 1 or body.count(SUBSCRIBED) != 1:
        raise RuntimeError("0017's kerbside_intake no longer reads as 0018 expects")
    return body.replace(ATTACHED, DECLINE).replace(SUBSCRIBED, SUBSCRIBED_AFTER)


def upgrade() -> None:
    op.execute(intake())


def downgrade() -> None:
    op.execute(_previous().intake())
