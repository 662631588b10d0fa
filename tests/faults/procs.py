"""Real processes for the fault tests: the API on a fixed port (so it can be killed and started again),
workers, the contractor simulator. Every process is ended by the handle that started it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

# Workers in the fault tests look at the outbox often and back off briefly, so a fault's effect and the
# recovery after it both show within seconds. Attempts are generous: an outage here must never turn a
# message dead (that is a different path, tested in tests/server/test_delivery.py).
FAST_WORKER = {"KERBSIDE_OUTBOX_INTERVAL_SECONDS": "0.2", "KERBSIDE_OUTBOX_BACKOFF_BASE_SECONDS": "0.1",
               "KERBSIDE_OUTBOX_BACKOFF_CAP_SECONDS": "0.5", "KERBSIDE_OUTBOX_MAX_ATTEMPTS": "200",
               "KERBSIDE_CONTRACTOR_POLL_SECONDS": "3600", "KERBSIDE_WORKER_HEARTBEAT_SECONDS": "1",
               "KERBSIDE_SLA_SWEEP_SECONDS": "3600", "KERBSIDE_ALLOW_PRIVATE_WEBHOOK_URLS": "true"}


class Proc:
    """One child process with its log file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.args, self.log = name, args, log
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "Proc":
        with open(self.log, "a") as out:
            out.write(f"\n--- start #{self.starts + 1} ---\n")
            out.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", *self.args], cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, sockets are closed by the kernel."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll predicate() until it is truthy (returned) or fail saying what did not happen in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def answers(url: str, ok=(200,)) -> bool:
    """Whether GET url answers one of `ok` right now."""
    try:
        return httpx.get(url, timeout=2).status_code in ok
    except httpx.HTTPError:
        return False


def wait_up(proc: Proc, url: str, timeout: float = 60.0, ok=(200, 503)) -> float:
    """Wait until `url` answers (the process is serving); returns the seconds it took."""
    started = time.monotonic()
    while not answers(url, ok):
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{proc.name} did not answer {url} within {timeout} s:\n{proc.tail()}")
        time.sleep(0.05)
    return time.monotonic() - started


def api(port: int, log: Path, env: dict[str, str] | None = None) -> Proc:
    """The API as `make run` starts it (uvicorn, one process), on a fixed port."""
    return Proc("api", ["uvicorn", "server.main:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port),
                        "--log-level", "warning"], log,
                {"KERBSIDE_ALLOW_PRIVATE_WEBHOOK_URLS": "true", "KERBSIDE_MAP_TILES_URL": "", **(env or {})})


def worker(log: Path, env: dict[str, str] | None = None) -> Proc:
    """`python -m server.worker` with the fast outbox settings."""
    return Proc("worker", ["server.worker"], log, {**FAST_WORKER, **(env or {})})


def simulator(port: int, log: Path, env: dict[str, str]) -> Proc:
    """The contractor simulator (a real HTTP service) on a fixed port."""
    return Proc("simulator", ["contractors.simulator", "--port", str(port)], log, env)


class Procs:
    """Every process a test started, so teardown ends exactly those."""

    def __init__(self):
        self.all: list[Proc] = []

    def add(self, p: Proc) -> Proc:
        self.all.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.all):
            p.stop()
