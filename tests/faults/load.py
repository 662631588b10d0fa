"""A field-app-like client for the fault tests: every report is retried on its client_id until a 2xx."""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
# Central Bath: well inside the council boundary, on named streets.
BATH = (51.372, 51.390, -2.382, -2.345)


@dataclass
class Attempt:
    """One HTTP attempt at one report."""

    client_id: str
    started: float  # time.monotonic()
    ended: float
    status: int | None = None
    error: str | None = None  # exception class when there was no answer
    content_type: str | None = None
    retry_after: str | None = None
    problem_type: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def report_bodies(n: int, seed: int, assets: list[tuple[float, float]] = ()) -> list[dict]:
    """n distinct reports (fresh client_ids): graffiti and fly-tipping across central Bath, and grit-bin
    reports on the given asset positions (lat, lon) if any."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if assets and i % 4 == 3:
            lat, lon = rng.choice(assets)
            cat, ans = "grit_bin", {"problem": "empty"}
        else:
            lat, lon = rng.uniform(BATH[0], BATH[1]), rng.uniform(BATH[2], BATH[3])
            cat, ans = (("graffiti", {"offensive": "no"}) if i % 2 else
                        ("fly_tipping", {"waste_type": ["household"], "size": "bag"}))
        out.append({"client_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "category": cat,
                    "lat": round(lat, 6), "lon": round(lon, 6), "accuracy_m": 5.0,
                    "observed_at": datetime.now(timezone.utc).isoformat(), "location_provider": "gps",
                    "answers": ans, "description": f"fault test report {i}"})
    return out


class Sender:
    """Posts reports, retrying each on the same client_id (as the field app's sync loop does) until 2xx."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, pause: float = 0.05, max_pause: float = 0.25):
        self.url, self.token, self.timeout = url, token, timeout
        self.pause, self.max_pause = pause, max_pause
        self.attempts: list[Attempt] = []
        self.acks: dict[str, tuple[int, dict]] = {}  # client_id -> (status, answer) of the 2xx
        self.refused: list[tuple[str, int, str]] = []  # 4xx other than retryable: a bug in this setting
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=self.timeout,
                            headers={"Authorization": f"Bearer {self.token}"})

    def send(self, http: httpx.Client, body: dict, deadline: float) -> bool:
        """Until a 2xx (True) or the deadline / a refusal (False)."""
        cid = body["client_id"]
        failures = 0
        while time.monotonic() < deadline and not self.stop.is_set():
            t0 = time.monotonic()
            a = Attempt(cid, t0, t0)
            try:
                r = http.post("/api/v1/reports", json=body)
            except httpx.HTTPError as exc:
                a.ended, a.error = time.monotonic(), exc.__class__.__name__
                with self.lock:
                    self.attempts.append(a)
                failures += 1
                time.sleep(self._backoff(failures))
                continue
            a.ended, a.status = time.monotonic(), r.status_code
            a.content_type = r.headers.get("content-type")
            a.retry_after = r.headers.get("retry-after")
            if a.content_type and "json" in a.content_type and r.status_code >= 400:
                try:
                    a.problem_type = r.json().get("type")
                except ValueError:
                    a.problem_type = "(unreadable)"
            with self.lock:
                self.attempts.append(a)
            if 200 <= r.status_code < 300:
                with self.lock:
                    self.acks[cid] = (r.status_code, r.json())
                return True
            if r.status_code not in RETRYABLE:
                with self.lock:
                    self.refused.append((cid, r.status_code, r.text[:300]))
                return False
            failures += 1
            wait = self._backoff(failures)
            if a.retry_after and a.retry_after.isdigit():
                # Honoured, but capped: the test wants to see the recovery, not wait politely through it.
                wait = max(wait, min(float(a.retry_after), self.max_pause))
            time.sleep(wait)
        return False

    def _backoff(self, failures: int) -> float:
        return min(self.pause * 2 ** (failures - 1), self.max_pause)

    def run(self, bodies: list[dict], threads: int, timeout: float) -> list[threading.Thread]:
        """Start `threads` senders over the bodies (round robin); returns the threads (join them)."""
        deadline = time.monotonic() + timeout
        shares = [bodies[i::threads] for i in range(threads)]

        def loop(share: list[dict]) -> None:
            with self._client() as http:
                for body in share:
                    if not self.send(http, body, deadline):
                        return

        ts = [threading.Thread(target=loop, args=(s,), daemon=True, name=f"sender-{i}") for i, s in enumerate(shares)]
        for t in ts:
            t.start()
        return ts

    # Figures ---------------------------------------------------------------------------------------
    def outcomes(self) -> Counter:
        """Attempts by outcome: HTTP status or exception class."""
        with self.lock:
            return Counter(str(a.status) if a.status is not None else a.error for a in self.attempts)

    def retried(self) -> set[str]:
        """client_ids that needed more than one attempt."""
        with self.lock:
            seen = Counter(a.client_id for a in self.attempts)
        return {cid for cid, n in seen.items() if n > 1}
