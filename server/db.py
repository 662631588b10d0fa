"""Engine, session factory and the declarative Base shared by every domain package."""
from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache

from sqlalchemy import MetaData, create_engine
from starlette.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

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


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (pool_pre_ping so a restarted database is survived)."""
    s = get_settings()
    return create_engine(
        s.database_url,
        pool_size=s.db_pool_size,
        max_overflow=s.db_pool_size,
        pool_pre_ping=True,
        pool_timeout=s.db_pool_timeout_seconds,
        connect_args={"connect_timeout": 5},
        # Errors are logged; their SQL parameters may hold secrets (webhook secrets, tokens' hashes).
        hide_parameters=True,
    )


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
