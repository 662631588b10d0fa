"""Fixtures: the contractor simulator as a real subprocess, a webhook receiver, adapters pointed at them."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from contractors import registry
from contractors.base import WorkOrder

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-api-key"
SECRET = "test-shared-secret"
EMAIL = "streetscene@example.gov.uk"


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class Sim:
    """Handle on the running simulator: URLs and the control API."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def control(self, path: str, body: dict | None = None) -> dict:
        resp = self.http.post(f"/_control/{path}", json=body or {})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def advance(self, **body) -> list[dict]:
        return self.control("advance", body)["updates"]

    def faults(self, **body) -> dict:
        return self.control("faults", body)

    def state(self) -> dict:
        resp = self.http.get("/_control/state")
        assert resp.status_code == 200
        return resp.json()


@pytest.fixture(scope="session")
def sim_server(tmp_path_factory):
    """`python -m contractors.simulator` on a free port, for the whole run."""
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "simulator.log"
    env = {**os.environ, "SIM_API_KEY": API_KEY, "SIM_SECRET": SECRET, "SIM_SEED": "7", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "contractors.simulator", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def sim(sim_server):
    """The simulator, reset to its start-up state."""
    handle = Sim(sim_server)
    handle.control("reset")
    yield handle
    handle.http.close()


@pytest.fixture
def adapters():
    """Make adapters through the registry (uncached) and close them afterwards."""
    made = []

    def make(name: str, config: dict):
        adapter = registry.create(name, config)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def sl_config(url: str, **extra) -> dict:
    return {"base_url": url, "api_key": API_KEY, "webhook_secret": SECRET, "timeout_s": 2.0, **extra}


def o311_config(url: str, **extra) -> dict:
    return {"base_url": f"{url}/open311", "api_key": API_KEY, "email": EMAIL, "timeout_s": 2.0,
            "service_codes": {"street_light": "SL", "pothole": "PH"}, **extra}


@pytest.fixture
def street_lighting(sim, adapters):
    """Street-lighting adapter pointed at the simulator."""
    return adapters("street_lighting", sl_config(sim.url))


@pytest.fixture
def open311(sim, adapters):
    """Open311 adapter pointed at the simulator's back-office mode."""
    return adapters("open311", o311_config(sim.url))


_counter = iter(range(1, 1_000_000))


def make_order(**overrides) -> WorkOrder:
    """A plausible street-light job with a fresh reference and key unless told otherwise."""
    n = next(_counter)
    fields = dict(job_reference=f"KS-2024-{n:05d}", idempotency_key=f"job-{n}-send-1", category="street_light",
                  priority="normal", description="Light out at night", lat=51.3811, lon=-2.3590,
                  due_at=datetime(2024, 3, 14, 17, 30, tzinfo=timezone.utc) + timedelta(days=n % 5),
                  asset_ref=f"SL{n:05d}", asset_layer="street_lights", street="Milsom Street", ward="Kingsmead",
                  answers={"fault": "out"}, photos=(f"https://kerbside.example/photos/{n}.jpg",))
    fields.update(overrides)
    return WorkOrder(**fields)


class Receiver:
    """A real HTTP endpoint standing in for our server's contractor API: records every push."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next = 0  # answer 500 to this many requests first
        self.always_fail = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    failing = receiver.always_fail or receiver.fail_next > 0
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()),
                                              "body": body, "failed": failing})
                self.send_response(500 if failing else 202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def accepted(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if not r["failed"]]

    def seqs(self, request: dict) -> list[int]:
        return [u["seq"] for u in json.loads(request["body"])["updates"]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(sim):
    """A webhook receiver, wired in as the simulator's callback (with a bearer token)."""
    rx = Receiver()
    sim.control("config", {"callback_url": rx.url, "callback_token": "push-token", "push_backoff_s": 0.05})
    yield rx
    sim.control("reset")
    rx.close()
