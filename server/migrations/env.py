"""Alembic environment: the URL comes from Kerbside's settings, never from alembic.ini."""
from alembic import context
from sqlalchemy import create_engine

from server.config import get_settings
from server.models import Base

target_metadata = Base.metadata

# PostGIS and Tiger tables are not ours.
IGNORED = {"spatial_ref_sys"}


def include_object(obj, name, type_, reflected, compare_to):
    return not (type_ == "table" and name in IGNORED)


def run_migrations_online() -> None:
    engine = create_engine(get_settings().database_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
