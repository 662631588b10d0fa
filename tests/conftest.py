"""Shared fixtures: a real PostGIS database (prepared once per run) and a rollback per test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# Suites that drive real processes against the shared test database commit what they make.
COMMITTING_DIRS = ("browser", "mobile", "faults", "fuzz")


def _commits(item) -> bool:
    parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
    return item.get_closest_marker("commits") is not None or parts[0] in COMMITTING_DIRS


def pytest_collection_modifyitems(config, items):
    """Run tests that commit real rows after those that roll back, so counts in the latter stay exact."""
    items.sort(key=_commits)


def _db_url() -> str:
    from server.config import get_settings

    return get_settings().database_url


@pytest.fixture(scope="session")
def prepared_db() -> str:
    """Migrate, import the GIS data and seed the demo set once per run (each step idempotent)."""
    url = _db_url()
    if "test" not in url.rsplit("/", 1)[-1] and not os.environ.get("KERBSIDE_ALLOW_NON_TEST_DB"):
        pytest.exit(f"refusing to run tests against a non-test database ({url.rsplit('/', 1)[-1]}); use `make test`", 2)
    done = subprocess.run([sys.executable, "-m", "server.cli", "setup"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.exit(f"`python -m server.cli setup` failed:\n{done.stdout}\n{done.stderr}", 2)
    return url


@pytest.fixture(scope="session")
def engine(prepared_db):
    from server.db import get_engine

    return get_engine()


@pytest.fixture
def db(engine):
    """A session inside a transaction that is rolled back after the test (app commits become savepoints)."""
    from sqlalchemy.orm import Session

    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def app(db):
    from server.db import get_session
    from server.main import create_app

    application = create_app()
    application.dependency_overrides[get_session] = lambda: db
    return application


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def tokens(db) -> dict[str, str]:
    """One token per role (contractor tokens scoped to the two demo contractors), inside the test transaction."""
    from server.auth.tokens import create_token

    out = {}
    for role in ("field_worker", "crew", "advisor", "supervisor", "admin"):
        out[role] = create_token(db, role, name=f"test-{role}")[1]
    db.flush()
    return out


def auth(token: str) -> dict[str, str]:
    """Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def worker_step(session) -> int:
    """What the outbox worker does before each delivery run (server/outbox/worker.py deliver_due): queued contacts
    filed and their "received" messages written, batch after batch until none is left; the caller commits.
    Returns the number of rows taken."""
    from server.notifications import received

    taken = 0
    while batch := received.write_queued(session):
        taken += batch
    return taken
