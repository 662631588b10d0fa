"""Engine, session factory and the declarative Base shared by every domain package."""
from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator
from functools import lru_cache

import psycopg
from psycopg_pool import AsyncConnectionPool

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from server.config import get_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention (for Alembic)."""

    metadata = MetaData(naming_convention=NAMING)


# Every connection of the API and the worker: no JIT compiling. Kerbside's statements are short (an index scan, a
# page of a list), but the planner's cost estimate for one over a large table passes jit_above_cost, and compiling
# then takes longer than running: at 1M jobs, 200 ms of the contact centre's figures (886 ms) and 15-19 ms of each
# job-list page went to JIT, and an empty SLA sweep took 28 ms instead of 1.8.
SESSION_SETTINGS = "SET jit = off"


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (idle pooled connections pinged before use, so a restarted database is survived)."""
    s = get_settings()
    engine = create_engine(
        s.database_url,
        pool_size=s.db_pool_size,
        max_overflow=s.db_pool_size,
        pool_timeout=s.db_pool_timeout_seconds,
        connect_args={"connect_timeout": 5},
        # Errors are logged; their SQL parameters may hold secrets (webhook secrets, tokens' hashes).
        hide_parameters=True,
    )
    _ping_when_idle(engine, s.db_ping_idle_seconds)

    @event.listens_for(engine, "connect")
    def _settings(dbapi_connection, record) -> None:
        dbapi_connection.execute(SESSION_SETTINGS)
        dbapi_connection.commit()

    return engine


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle in the pool.

    pool_pre_ping pings on every checkout: under load that was one round trip in three. A connection handed
    straight back and out again was working a moment ago; one idle longer than `idle_seconds` (after a
    quiet spell, or a database restart) is pinged first, and a dead one is replaced before anyone uses it.
    A database that dies mid-burst fails those requests (503) and SQLAlchemy then recycles the whole pool.
    """

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, proxy) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < idle_seconds:
            return  # just connected, or back from work a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool discards this connection and checks out (or opens) another
            raise DisconnectionError("a pooled connection failed its ping") from exc


@lru_cache
def _factory() -> sessionmaker[Session]:
    import server.models  # noqa: F401  every mapper must be known before the first query

    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def new_session() -> Session:
    """A new session on the process-wide engine."""
    return _factory()()


async def get_session() -> AsyncIterator[Session]:
    """FastAPI dependency: one session per request, closed afterwards.

    Async, so a request does not pay two extra trips through the thread pool for it: making a Session
    does no I/O. Closing one that still holds a connection does (a rollback), so that runs in the pool.
    """
    session = new_session()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


def async_pool_for(request) -> AsyncConnectionPool | None:
    """The API's async pool for this request; None in an app run without its lifespan, or whose sessions are
    overridden (the test suite's rollback-per-test), where the request's session is used instead."""
    pool = getattr(request.app.state, "intake_pool", None)
    return pool if pool is not None and get_session not in request.app.dependency_overrides else None


async def open_async_pool() -> AsyncConnectionPool:
    """The API process's psycopg 3 async pool, for the busiest write (report intake, server/reports/service.py)
    and the busiest read (the job page, server/jobs/page.py).

    Beside the engine's pool, not instead of it: every other use case works through the ORM session. Its
    connections are in autocommit: each statement is its own transaction (the intake's write is one
    statement). They are pinged like the engine's (only when they sat idle for db_ping_idle_seconds), a
    database that is down makes the pool wait db_pool_timeout_seconds and then PoolTimeout (a 503), and a
    broken connection is discarded when it comes back.
    """
    s = get_settings()
    returned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def _reset(conn: psycopg.AsyncConnection) -> None:
        returned[conn] = time.monotonic()

    async def _configure(conn: psycopg.AsyncConnection) -> None:
        await conn.set_autocommit(True)  # each statement its own transaction: no round trips for BEGIN, COMMIT
        await conn.execute(SESSION_SETTINGS)

    async def _check(conn: psycopg.AsyncConnection) -> None:
        at = returned.get(conn)
        if at is not None and time.monotonic() - at >= s.db_ping_idle_seconds:
            await conn.execute("SELECT 1")  # in autocommit: handed out idle, as a connection not pinged is

    pool = AsyncConnectionPool(
        s.database_url.replace("postgresql+psycopg://", "postgresql://", 1), min_size=1,
        max_size=s.db_async_pool_size,
        timeout=s.db_pool_timeout_seconds, open=False, configure=_configure, check=_check, reset=_reset, name="intake",
        kwargs={"connect_timeout": 5})
    await pool.open(wait=False)  # a database still starting is waited for by the first request, not here
    return pool
