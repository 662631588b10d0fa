"""Helpers for tests against a real API process: start uvicorn, commit tokens and jobs, read SSE."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
from sqlalchemy import text

from server.db import new_session
from tests.contractors.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Api:
    """A running API process."""

    url: str
    proc: subprocess.Popen
    log: Path

    def client(self, token: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 10), **kw)


def start_api(log: Path, **env_extra: str) -> Api:
    """uvicorn server.main:create_app on a free port, as `make run` starts it; waits for /healthz."""
    port = free_port()
    env = {**os.environ, "KERBSIDE_ALLOW_PRIVATE_WEBHOOK_URLS": "true", "KERBSIDE_MAP_TILES_URL": "",
           "PYTHONUNBUFFERED": "1", **env_extra}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "server.main:create_app", "--factory",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code in (200, 503):
                return Api(url, proc, log)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the API did not start:\n{log.read_text()}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """Terminate a child process we started (kill it if it will not stop)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def commit_token(role: str, **scope) -> tuple[int, str]:
    """A committed token (id, secret) for a role, e.g. commit_token("contractor", contractor="street-lighting")."""
    from server.auth.tokens import create_token

    with new_session() as s:
        row, secret = create_token(s, role, name=f"test-cc-{role}-{uuid.uuid4().hex[:6]}", **scope)
        s.commit()
        return row.id, secret


def revoke_tokens(ids: list[int]) -> None:
    """Revoke the tokens a test made."""
    with new_session() as s:
        s.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = ANY(:ids)"), {"ids": ids})
        s.commit()


def free_street_light(exclude: set[str] | None = None) -> dict:
    """A synthetic B&NES street light with no job on it and no other light within 15 m (ref, lat, lon, street)."""
    with new_session() as s:
        rows = s.execute(text("""
            SELECT a.external_ref AS ref, ST_Y(ST_Transform(a.geom, 4326)) AS lat,
                   ST_X(ST_Transform(a.geom, 4326)) AS lon, a.street
              FROM assets a JOIN asset_layers l ON l.id = a.layer_id
             WHERE l.name = 'street_lights' AND a.street IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id)
               -- alone on the map, so a click on it cannot land on a neighbour drawn on top
               AND NOT EXISTS (SELECT 1 FROM assets b WHERE b.layer_id = a.layer_id AND b.id <> a.id
                                  AND ST_DWithin(b.geom, a.geom, 15))
             ORDER BY random() LIMIT 20""")).mappings().all()
    for r in rows:
        if r["ref"] not in (exclude or set()):
            return dict(r)
    raise AssertionError("no free street light left")


def report(api: Api, token: str, light: dict, **over) -> dict:
    """Log a street-light fault through the real intake; returns the answer."""
    body = {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": light["lat"], "lon": light["lon"],
            "accuracy_m": 5.0, "observed_at": datetime.now(timezone.utc).isoformat(), "location_provider": "map",
            "asset_ref": light["ref"], "answers": {"fault": "out"}, "description": "Lamp out all night"}
    body.update(over)
    with api.client(token) as c:
        r = c.post("/api/v1/reports", json=body)
    assert r.status_code == 201, r.text
    return r.json()


@dataclass
class Sse:
    """A reader of one SSE response: frames as dicts {id, event, data}."""

    lines: object
    frames: list[dict] = field(default_factory=list)

    def next(self) -> dict:
        frame: dict = {"id": None, "event": "message", "data": []}
        for line in self.lines:
            if line == "":
                if frame["data"]:
                    frame["data"] = json.loads("\n".join(frame["data"]))
                    self.frames.append(frame)
                    return frame
                frame = {"id": None, "event": "message", "data": []}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                frame["data"].append(value)
            elif name in ("id", "event"):
                frame[name] = value
        raise EOFError("the stream ended")

    def until(self, predicate, limit: int = 200) -> dict:
        for _ in range(limit):
            f = self.next()
            if predicate(f):
                return f
        raise AssertionError("no matching frame")
