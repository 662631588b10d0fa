"""The outbound stack for the delivery and CRM fault tests: a real API process and a contractor simulator
acting as the seeded street-lighting contractor, pointed at each other (workers are started by each test)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from server.db import new_session
from server.dispatch.models import Contractor
from tests.browser.live import commit_token, free_street_light, revoke_tokens
from tests.contractors.conftest import Sim, free_port
from tests.faults import procs

CONTRACTOR = "street-lighting"
ARTIFACTS = procs.ROOT / "test-artifacts" / "faults"


def record(name: str, text: str) -> None:
    """Print a test's measured figures and keep them in test-artifacts/faults/NAME.txt."""
    print("\n" + text)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.txt").write_text(text + "\n")


@dataclass
class Stack:
    """Handles on the running stack; `worker()` starts a worker that teardown stops."""

    url: str
    api: procs.Proc
    sim: Sim
    secret: str  # the contractor's webhook secret (signs its pushes)
    tmp: Path
    running: procs.Procs
    tokens: dict[str, str] = field(default_factory=dict)
    _workers: int = 0

    def worker(self, **env: str) -> procs.Proc:
        self._workers += 1
        w = self.running.add(procs.worker(self.tmp / f"worker-{self._workers}.log", env))
        return w.start()

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.tokens[role]}"})

    def report_lights(self, n: int) -> list[str]:
        """n street-light faults on n different lights through the real intake; their job references."""
        refs, used = [], set()
        for _ in range(n):
            light = free_street_light(used)
            used.add(light["ref"])
            body = {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": light["lat"],
                    "lon": light["lon"], "accuracy_m": 4.0, "observed_at": datetime.now(timezone.utc).isoformat(),
                    "location_provider": "gps", "asset_ref": light["ref"], "answers": {"fault": "out"},
                    "description": "Lamp out (fault test)"}
            with self.client("field_worker") as c:
                r = c.post("/api/v1/reports", json=body)
            assert r.status_code == 201, r.text
            assert not r.json()["job"]["attached"], "the light already had an open job"
            refs.append(r.json()["job"]["reference"])
        return refs


@pytest.fixture(scope="module")
def stack(prepared_db, tmp_path_factory):
    """API + simulator; the seeded street-lighting contractor's orders go to this simulator (restored after)."""
    tmp = tmp_path_factory.mktemp("faults-stack")
    api_port, sim_port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    with new_session() as s:
        c = s.scalar(select(Contractor).where(Contractor.name == CONTRACTOR))
        original = dict(c.config)
        # Orders to our simulator, a short client timeout (its injected stalls outlast it), pushes only.
        c.config = {**c.config, "base_url": f"http://127.0.0.1:{sim_port}", "poll": False, "timeout_s": 2.0}
        s.commit()
        cfg = dict(c.config)
    running = procs.Procs()
    made = {role: commit_token(role) for role in ("field_worker", "supervisor", "admin")}
    try:
        api = running.add(procs.api(api_port, tmp / "api.log")).start()
        sim = running.add(procs.simulator(sim_port, tmp / "sim.log", {
            "SIM_API_KEY": cfg["api_key"], "SIM_SECRET": cfg["webhook_secret"], "SIM_STEP_SECONDS": "0",
            "SIM_CALLBACK_URL": url, "SIM_CALLBACK_PATH": f"/api/v1/contractors/{CONTRACTOR}/webhook",
            "SIM_PUSH_BACKOFF_S": "0.2", "SIM_PUSH_RETRIES": "5", "SIM_SEED": "17",
            # A fresh simulator numbers its orders from 1 again: a prefix of its own keeps its references and
            # update ids from meeting those of another simulator that served this contractor earlier.
            "SIM_REF_PREFIX": "F" + uuid.uuid4().hex[:6].upper()})).start()
        procs.wait_up(api, url + "/healthz", ok=(200,))
        procs.wait_up(sim, f"http://127.0.0.1:{sim_port}/health", ok=(200,))
        handle = Sim(f"http://127.0.0.1:{sim_port}")
        yield Stack(url, api, handle, cfg["webhook_secret"], tmp, running,
                    {role: secret for role, (_, secret) in made.items()})
        handle.http.close()
    finally:
        running.stop_all()
        revoke_tokens([i for i, _ in made.values()])
        with new_session() as s:
            s.scalar(select(Contractor).where(Contractor.name == CONTRACTOR)).config = original
            s.commit()
