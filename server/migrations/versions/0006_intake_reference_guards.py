"""intake: reference data guarded from its own side, not locked by every report

Revision ID: 0006_reference_guards
Revises: 0005_intake_plans
Create Date: 2026-11-22 20:30:00

A foreign key check locks the parent row (FOR KEY SHARE) in every inserting transaction. Every report and
every job pointed at the same few rows: its category ('street_light' for all lamp reports), its ward and the
reporting token. With many reports in flight at once, each new lock on one of those rows creates a new
MultiXact listing all current lockers. The bench database had used 733,577 MultiXact ids after about
120,000 reports, which is extra WAL and SLRU traffic on every write and brings anti-wraparound vacuums
sooner. Measured with pgbench (16 clients, kerbside_intake only, three alternating runs): 0.93-1.1 ms of
PostgreSQL CPU per report with the category and ward keys, 0.79-0.88 without.

These five keys (jobs and reports to categories and wards; reports to the token) are replaced by guards on
the parent tables: a category, a ward or a token that a job or report refers to cannot be deleted or given a
new key. The intake only writes values it has just read from those tables (the catalogue's category, the ward
the point is in, the caller's token). Categories are deactivated, never deleted; wards are reloaded in place.
The other keys stay: assets (a different row for nearly every report), jobs (the row the same transaction
has just written), crews and contractors (not written by the intake).

What a guard cannot do that a key did: stop a delete that races an uncommitted report referring to the row.
"""
from alembic import op

revision = '0006_reference_guards'
down_revision = '0005_intake_plans'
branch_labels = None
depends_on = None

KEYS = (  # (table, constraint, column, parent table, parent column)
    ('jobs', 'fk_jobs_category_code_categories', 'category_code', 'categories', 'code'),
    ('reports', 'fk_reports_category_code_categories', 'category_code', 'categories', 'code'),
    ('jobs', 'fk_jobs_ward_id_areas', 'ward_id', 'areas', 'id'),
    ('reports', 'fk_reports_ward_id_areas', 'ward_id', 'areas', 'id'),
    ('reports', 'fk_reports_token_id_api_tokens', 'token_id', 'api_tokens', 'id'),
)

GUARD = r"""
CREATE OR REPLACE FUNCTION kerbside_guard_referenced() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  key text;
  used boolean;
BEGIN
  IF TG_TABLE_NAME = 'categories' THEN
    key := OLD.code;
    IF TG_OP = 'UPDATE' AND NEW.code IS NOT DISTINCT FROM OLD.code THEN RETURN NEW; END IF;
    used := EXISTS (SELECT 1 FROM jobs WHERE category_code = OLD.code)
         OR EXISTS (SELECT 1 FROM reports WHERE category_code = OLD.code);
  ELSIF TG_TABLE_NAME = 'areas' THEN
    key := OLD.id::text;
    IF TG_OP = 'UPDATE' AND NEW.id IS NOT DISTINCT FROM OLD.id THEN RETURN NEW; END IF;
    -- Only wards are referenced by jobs and reports (zones are synced by delete and insert).
    used := OLD.kind = 'ward' AND (EXISTS (SELECT 1 FROM jobs WHERE ward_id = OLD.id)
                                   OR EXISTS (SELECT 1 FROM reports WHERE ward_id = OLD.id));
  ELSE
    key := OLD.id::text;
    IF TG_OP = 'UPDATE' AND NEW.id IS NOT DISTINCT FROM OLD.id THEN RETURN NEW; END IF;
    used := EXISTS (SELECT 1 FROM reports WHERE token_id = OLD.id);
  END IF;
  IF used THEN
    RAISE EXCEPTION '% % is referred to by jobs or reports', TG_TABLE_NAME, key
      USING ERRCODE = 'foreign_key_violation',
            HINT = CASE TG_TABLE_NAME WHEN 'categories' THEN 'deactivate the category instead'
                                      WHEN 'api_tokens' THEN 'revoke the token instead'
                                      ELSE 'update the ward in place instead' END;
  END IF;
  RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$fn$;
"""
PARENTS = {'categories': 'code', 'areas': 'id', 'api_tokens': 'id'}


def upgrade() -> None:
    op.execute(GUARD)
    for parent, key in PARENTS.items():
        op.execute(f"CREATE TRIGGER tr_{parent}_guard_referenced BEFORE DELETE OR UPDATE OF {key} ON {parent} "
                   f"FOR EACH ROW EXECUTE FUNCTION kerbside_guard_referenced()")
    for table, name, *_ in KEYS:
        op.drop_constraint(name, table, type_='foreignkey')


def downgrade() -> None:
    for table, name, column, parent, key in KEYS:
        op.create_foreign_key(name, table, parent, [column], [key])
    for parent in PARENTS:
        op.execute(f"DROP TRIGGER IF EXISTS tr_{parent}_guard_referenced ON {parent}")
    op.execute("DROP FUNCTION IF EXISTS kerbside_guard_referenced()")
