"""notifications: reporter contact kept apart from the job, messages sent through GOV.UK Notify, chasers

Revision ID: 0008_notifications
Revises: 0006_reference_guards
Create Date: 2026-12-05 21:00:00

reporter_contacts holds the only copy of a reporter's name, email and phone (one row per report that
carried them); contact_access is the audit trail of every read, erase and unsubscribe; notifications
records each message handed to Notify and its delivery receipts; chasers counts contacts about an
existing job. A trigger turns every `citizen_update` job event (Open311 updates) into a chaser, so the
Open311 code records nothing extra.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008_notifications'
down_revision = '0006_reference_guards'
branch_labels = None
depends_on = None

CHASER_TRIGGER = r"""
CREATE OR REPLACE FUNCTION kerbside_citizen_update_chaser() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chasers (job_id, category_code, channel, kind, actor, at, source_event_id)
    SELECT NEW.job_id, j.category_code, 'open311', 'citizen_update', NEW.actor, NEW.at, NEW.id
      FROM jobs j WHERE j.id = NEW.job_id
    ON CONFLICT (source_event_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER job_events_citizen_update_chaser AFTER INSERT ON job_events
    FOR EACH ROW WHEN (NEW.type = 'citizen_update') EXECUTE FUNCTION kerbside_citizen_update_chaser();
"""

# Open311 reports stored the reporter's name, email and phone in reports.reporter: they move to
# reporter_contacts (kept for advisers, no updates: nobody chose any) and leave the report.
PERSONAL = "ARRAY['first_name', 'last_name', 'email', 'phone']"
MOVE_OUT = f"""
INSERT INTO reporter_contacts (report_id, channel, first_name, last_name, email, phone, notify,
                               unsubscribe_token, created_at)
SELECT id, channel, left(reporter->>'first_name', 100), left(reporter->>'last_name', 100),
       left(reporter->>'email', 254), left(reporter->>'phone', 20), 'none',
       md5(random()::text || id::text || clock_timestamp()::text) || md5(id::text), received_at
  FROM reports WHERE reporter ?| {PERSONAL};
UPDATE reports SET reporter = reporter - {PERSONAL} WHERE reporter ?| {PERSONAL};
"""
MOVE_BACK = """
UPDATE reports r SET reporter = r.reporter || jsonb_strip_nulls(jsonb_build_object(
       'first_name', c.first_name, 'last_name', c.last_name, 'email', c.email, 'phone', c.phone))
  FROM reporter_contacts c WHERE c.report_id = r.id AND c.erased_at IS NULL AND r.channel = 'open311';
"""


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        'reporter_contacts',
        sa.Column('id', sa.BigInteger(), primary_key=True),
        sa.Column('report_id', sa.BigInteger(), sa.ForeignKey('reports.id'), nullable=False, unique=True),
        sa.Column('channel', sa.String(32), nullable=False),
        sa.Column('first_name', sa.String(100)),
        sa.Column('last_name', sa.String(100)),
        sa.Column('email', sa.String(254)),
        sa.Column('phone', sa.String(20)),
        sa.Column('notify', sa.String(8), nullable=False),
        sa.Column('consent_at', ts),
        sa.Column('unsubscribe_token', sa.String(64), nullable=False, unique=True),
        sa.Column('unsubscribed_at', ts),
        sa.Column('erased_at', ts),
        sa.Column('erase_reason', sa.String(32)),
        # A report whose job was closed as a duplicate follows the job it was joined to.
        sa.Column('follows_job_id', sa.BigInteger(), sa.ForeignKey('jobs.id')),
        sa.Column('created_at', ts, server_default=sa.func.now(), nullable=False),
    )
    op.create_index('ix_reporter_contacts_live', 'reporter_contacts', ['created_at'],
                    postgresql_where=sa.text('erased_at IS NULL'))
    op.create_index('ix_reporter_contacts_follows', 'reporter_contacts', ['follows_job_id'],
                    postgresql_where=sa.text('follows_job_id IS NOT NULL'))
    op.create_index('ix_reporter_contacts_phone', 'reporter_contacts', ['phone'],
                    postgresql_where=sa.text('erased_at IS NULL'))
    op.create_table(
        'contact_access',
        sa.Column('id', sa.BigInteger(), primary_key=True),
        sa.Column('contact_id', sa.BigInteger(), sa.ForeignKey('reporter_contacts.id'), nullable=False),
        sa.Column('action', sa.String(16), nullable=False),
        sa.Column('actor', sa.String(200), nullable=False),
        sa.Column('actor_role', sa.String(32), nullable=False),
        sa.Column('note', sa.Text()),
        sa.Column('at', ts, server_default=sa.func.now(), nullable=False),
    )
    op.create_index('ix_contact_access_contact', 'contact_access', ['contact_id'])
    op.create_table(
        'notifications',
        sa.Column('id', sa.BigInteger(), primary_key=True),
        sa.Column('outbox_id', sa.BigInteger(), sa.ForeignKey('outbox_messages.id'), nullable=False, unique=True),
        sa.Column('contact_id', sa.BigInteger(), sa.ForeignKey('reporter_contacts.id'), nullable=False),
        sa.Column('job_id', sa.BigInteger(), sa.ForeignKey('jobs.id'), nullable=False),
        sa.Column('template', sa.String(32), nullable=False),
        sa.Column('kind', sa.String(8), nullable=False),
        sa.Column('notify_id', postgresql.UUID(as_uuid=True), unique=True),
        sa.Column('reference', sa.String(64), nullable=False),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('sent_at', ts, server_default=sa.func.now(), nullable=False),
        sa.Column('status_at', ts),
        sa.Column('receipts', sa.Integer(), nullable=False, server_default='0'),
    )
    op.create_index('ix_notifications_job', 'notifications', ['job_id'])
    op.create_index('ix_notifications_failed', 'notifications', ['sent_at'],
                    postgresql_where=sa.text("status IN ('permanent-failure', 'technical-failure')"))
    op.create_table(
        'chasers',
        sa.Column('id', sa.BigInteger(), primary_key=True),
        sa.Column('job_id', sa.BigInteger(), sa.ForeignKey('jobs.id'), nullable=False),
        sa.Column('category_code', sa.String(64), nullable=False),
        sa.Column('channel', sa.String(32), nullable=False),
        sa.Column('kind', sa.String(32), nullable=False),
        sa.Column('actor', sa.String(200)),
        sa.Column('at', ts, server_default=sa.func.now(), nullable=False),
        sa.Column('source_event_id', sa.BigInteger(), unique=True),
    )
    op.create_index('ix_chasers_job', 'chasers', ['job_id'])
    op.create_index('ix_chasers_at', 'chasers', ['at'])
    op.execute(CHASER_TRIGGER)
    op.execute(MOVE_OUT)


def downgrade() -> None:
    op.execute(MOVE_BACK)
    op.execute("DROP TRIGGER IF EXISTS job_events_citizen_update_chaser ON job_events")
    op.execute("DROP FUNCTION IF EXISTS kerbside_citizen_update_chaser()")
    for table in ('chasers', 'notifications', 'contact_access', 'reporter_contacts'):
        op.drop_table(table)
