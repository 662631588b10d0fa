"""Foundation: migrations, health, tokens and the CLI contract, on the real database."""
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from server.auth.models import ApiToken
from server.auth.tokens import create_token, hash_token
from tests.conftest import auth

ROOT = Path(__file__).resolve().parents[2]


def test_schema_matches_the_models(prepared_db):
    out = subprocess.run([sys.executable, "-m", "alembic", "check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No new upgrade operations detected" in out.stdout + out.stderr


def test_geometry_is_stored_projected_with_gist_indexes(db):
    srids = dict(db.execute(text(
        "SELECT f_table_name, srid FROM geometry_columns WHERE f_table_name IN ('assets','areas','jobs','reports')"
    )).all())
    assert set(srids.values()) == {27700}
    gist = {r[0] for r in db.execute(text("SELECT indexname FROM pg_indexes WHERE indexdef ILIKE '%USING gist%'"))}
    assert {"ix_assets_layer_geom", "ix_areas_kind_geom", "ix_jobs_geom"} <= gist


def test_job_events_are_append_only(db, client, tokens):
    from tests.server.test_intake import body, post

    ref = post(client, tokens["field_worker"], body()).json()["job"]["reference"]
    db.execute(text("SAVEPOINT s"))
    try:
        db.execute(text("UPDATE job_events SET actor = 'x' WHERE job_id = (SELECT id FROM jobs WHERE reference=:r)"),
                   {"r": ref})
        raise AssertionError("update was allowed")
    except Exception as exc:  # the trigger refuses it
        assert "append-only" in str(exc)
    db.execute(text("ROLLBACK TO SAVEPOINT s"))


def test_healthz_reports_database_postgis_layers_and_areas(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    h = r.json()
    assert h["database"].startswith("15") and h["postgis"].startswith("3")
    assert h["areas"] == {"boundary": 1, "wards": 33, "crew_zone": 2, "contractor_area": 2}
    for layer in ("street_lights", "litter_bins", "grit_bins", "dog_bins", "benches", "roads"):
        assert h["layers"][layer] > 0, layer
    assert h["layers"]["roads"] == 9015
    assert h["status"] in ("ok", "degraded")


def test_tokens_are_stored_hashed_and_revoked_or_expired_tokens_fail(db, client):
    row, secret = create_token(db, "advisor", name="t")
    db.flush()
    assert row.token_hash == hash_token(secret) and secret not in row.token_hash
    assert client.get("/api/v1/jobs", headers=auth(secret)).status_code == 200
    row.revoked_at = datetime.now(timezone.utc)
    db.flush()
    assert client.get("/api/v1/jobs", headers=auth(secret)).status_code == 401
    row2, secret2 = create_token(db, "advisor", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    db.flush()
    assert client.get("/api/v1/jobs", headers=auth(secret2)).status_code == 401


def test_cli_token_create_prints_only_the_token_and_revoke_works(prepared_db, engine):
    out = subprocess.run([sys.executable, "-m", "server.cli", "token", "create", "--role", "contractor",
                          "--contractor", "street-lighting"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert out.stdout == token + "\n" and token.startswith("ks_")
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        assert row.role == "contractor" and row.contractor_id is not None
    rv = subprocess.run([sys.executable, "-m", "server.cli", "token", "revoke", token], cwd=ROOT,
                        capture_output=True, text=True)
    assert rv.returncode == 0
    with Session(engine) as s:
        assert s.scalar(select(ApiToken.revoked_at).where(ApiToken.token_hash == hash_token(token))) is not None
    bad = subprocess.run([sys.executable, "-m", "server.cli", "token", "create", "--role", "contractor"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout == "" and "--contractor" in bad.stderr


@pytest.mark.parametrize("idle_seconds, survives", [(0.2, True), (3600, False)])
def test_an_idle_pooled_connection_that_died_is_replaced_before_use(prepared_db, idle_seconds, survives):
    """A pooled connection idle past the threshold is pinged on checkout and a dead one replaced unseen.

    (With a threshold it has not reached, the dead connection is handed out: that is what the ping saves.)
    """
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    from server.config import get_settings
    from server.db import _ping_when_idle

    url = get_settings().database_url
    engine = create_engine(url, pool_size=1, max_overflow=0)
    _ping_when_idle(engine, idle_seconds)
    killer = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with killer.connect() as conn:  # as a database restart would, behind the pool's back
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        time.sleep(0.4)
        with engine.connect() as conn:
            if survives:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
            else:
                with pytest.raises(OperationalError):
                    conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
        killer.dispose()
