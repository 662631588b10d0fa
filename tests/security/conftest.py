"""The access tests' app: one per module on one connection, its outer transaction rolled back at the end."""
from __future__ import annotations

import pytest

from tests.security.world import world_app


@pytest.fixture(scope="module")
def env(engine, tmp_path_factory):
    """(app, connection, world) shared by a module's tests; nothing survives the module."""
    with world_app(engine, tmp_path_factory.mktemp("access-photos")) as out:
        yield out
