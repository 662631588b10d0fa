"""The fuzzed app (tests.security.world.world_app): one per module, its outer transaction rolled back at the end.

Each request gets its own savepoint session, so a request that fails half-way leaves nothing behind
for the next one; each operation's test runs in its own savepoint as well.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.security.world import world_app

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "fuzz"
# Inputs sent per operation: a bounded number in `make test`, many more in `make fuzz`.
EXAMPLES = int(os.environ.get("KERBSIDE_FUZZ_EXAMPLES", "12"))
# `make test` replays the same inputs every run (no flaky CI); `make fuzz` explores new ones each time.
DERANDOMIZE = os.environ.get("KERBSIDE_FUZZ_RANDOM", "") == ""
SENT: Counter = Counter()
STATUSES: Counter = Counter()


@pytest.fixture(scope="module")
def fuzz_env(engine, tmp_path_factory):
    """(app, connection, world) shared by a module's tests; nothing survives the module."""
    with world_app(engine, tmp_path_factory.mktemp("fuzz-photos")) as out:
        yield out


@pytest.fixture
def fuzz_app(fuzz_env):
    """The module's app and world, inside a savepoint rolled back after the test."""
    app, connection, world = fuzz_env
    savepoint = connection.begin_nested()
    try:
        yield app, world
    finally:
        savepoint.rollback()


def pytest_sessionfinish(session, exitstatus):
    """Write how many inputs were fuzzed (per operation, per status, in all) under test-artifacts/fuzz/."""
    if not SENT:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary = {"inputs": sum(SENT.values()), "operations": len(SENT), "examples_per_operation_and_mode": EXAMPLES,
               "derandomized": DERANDOMIZE, "per_operation": dict(sorted(SENT.items())),
               "statuses": {str(k): v for k, v in sorted(STATUSES.items())}}
    name = "summary.json" if DERANDOMIZE else "make-fuzz-summary.json"  # `make test` vs `make fuzz`
    (ARTIFACTS / name).write_text(json.dumps(summary, indent=2))


def pytest_terminal_summary(terminalreporter):
    """Say how many inputs were fuzzed."""
    if SENT:
        terminalreporter.write_line(f"fuzz: {sum(SENT.values())} inputs over {len(SENT)} operations "
                                    f"(test-artifacts/fuzz/{'summary' if DERANDOMIZE else 'make-fuzz-summary'}.json)")
