"""Field-app tests against the real API: a uvicorn subprocess on a free port, on the test database.

The server is one per session but controllable: a test may stop it (the device is "offline"),
SIGKILL it mid-sync and start it again; an autouse fixture makes sure it is up for the next test.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "mobile"

# Real places inside Bath & North East Somerset.
BATH_CENTRE = (51.3812, -2.3590)  # graffiti in the city centre (Stall Street / Abbey)
LANSDOWN = (51.4011, -2.3790)  # Beckford's Tower: cleansing_north's zone


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`uvicorn server.main:create_app --factory` as a child process we can start, SIGKILL and restart."""

    def __init__(self, port: int, env: dict[str, str], log: Path):
        self.port, self.env, self.log = port, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start and wait for /healthz."""
        if self.running:
            return
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "server.main:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
                cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not come up in {timeout}s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, connections just drop (as when the signal goes)."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """A polite stop."""
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def api_server(prepared_db, tmp_path_factory):
    """The real Kerbside API on a free port (photos under a temporary folder)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KERBSIDE_DATABASE_URL": prepared_db, "KERBSIDE_ENV": "test",
           "KERBSIDE_PHOTO_ROOT": str(tmp_path_factory.mktemp("server-photos")), "KIVY_NO_ARGS": "1"}
    log = tmp_path_factory.mktemp("api") / "api-server.log"
    server = ServerProcess(free_port(), env, log)
    server.start()
    yield server
    server.stop()
    shutil.copy2(log, ARTIFACTS / "api-server.log")


@pytest.fixture
def server(api_server):
    """The API, up at the start of the test (a test that stopped it gets it back)."""
    api_server.start()
    yield api_server
    api_server.start()


def make_token(role: str, crew: str | None = None, expires_at: datetime | None = None) -> str:
    """A committed API token (the server process must see it)."""
    from server.auth.tokens import create_token
    from server.db import new_session

    with new_session() as s:
        _, secret = create_token(s, role, name=f"mobile-test-{role}-{uuid.uuid4().hex[:6]}", crew=crew,
                                 expires_at=expires_at)
        s.commit()
    return secret


@pytest.fixture
def field_token(prepared_db) -> str:
    """A fresh field_worker token (so reports can be counted per token)."""
    return make_token("field_worker")


@pytest.fixture
def expired_token(prepared_db) -> str:
    """A field_worker token that expired an hour ago."""
    return make_token("field_worker", expires_at=datetime.now(timezone.utc) - timedelta(hours=1))


def reports_on_server(client_ids: list[str]) -> dict[str, int]:
    """client_id → how many report rows the server holds for it."""
    from sqlalchemy import text

    from server.db import new_session

    with new_session() as s:
        rows = s.execute(text("SELECT client_id::text AS cid, count(*) AS n FROM reports "
                              "WHERE client_id::text = ANY(:ids) GROUP BY client_id"), {"ids": client_ids}).all()
    return {r.cid: r.n for r in rows}


@pytest.fixture
def core_factory(tmp_path):
    """Make FieldCore objects on a data dir (a second call on the same dir is an app restart)."""
    from mobile.fieldapp.core.service import FieldCore

    made = []

    def make(data_dir: Path | None = None, **kw) -> FieldCore:
        """A FieldCore with a short backoff (tests should not wait minutes)."""
        core = FieldCore(data_dir or tmp_path / "device", backoff=kw.pop("backoff", (0.05, 0.5)), **kw)
        made.append(core)
        return core

    yield make
    for core in made:
        try:
            core.close()
        except Exception:
            pass
