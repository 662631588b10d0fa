"""The simulator's own surface: control API, settings from env and flags, fault bookkeeping."""
from __future__ import annotations

import httpx

from contractors.simulator.settings import from_args, from_env
from tests.contractors.conftest import make_order


def test_settings_from_env_then_flags():
    env = {"SIM_PORT": "9001", "SIM_STEP_SECONDS": "2.5", "SIM_VERIFY_SIGNATURES": "false", "SIM_SEED": ""}
    s = from_env(env)
    assert (s.port, s.step_seconds, s.verify_signatures, s.seed) == (9001, 2.5, False, None)
    s = from_args(["--port", "9002", "--callback-url", "http://127.0.0.1:8000"], env)
    assert (s.port, s.step_seconds, s.callback_url) == (9002, 2.5, "http://127.0.0.1:8000")
    assert s.push_secret == s.secret and s.public()["api_key"] == "***"


def test_control_validates_input_and_refuses_fixed_settings(sim):
    assert sim.http.post("/_control/faults", json={"fail_rate": 2}).status_code == 422
    assert sim.http.post("/_control/faults", json={"explode": True}).status_code == 422
    assert sim.http.post("/_control/config", json={"api_key": "x"}).status_code == 422
    assert sim.http.post("/_control/advance", json={"ref": "BSL-404"}).status_code == 404
    assert sim.control("config", {"step_seconds": "1.5"})["step_seconds"] == 1.5
    sim.control("reset")
    assert sim.state()["settings"]["step_seconds"] == 0.0


def test_down_refuses_everything_but_control_and_reset_clears_it(sim, street_lighting):
    street_lighting.submit(make_order())
    sim.faults(down=True)
    assert httpx.get(f"{sim.url}/open311/services.json").status_code == 503
    state = sim.state()
    assert state["faults"]["down"] and state["counters"]["refused_down"] == 1 and len(state["orders"]) == 1
    sim.control("reset")
    state = sim.state()
    assert not state["faults"]["down"] and state["orders"] == [] and state["counters"] == {}
    assert httpx.get(f"{sim.url}/open311/services.json").status_code == 200


def test_seeded_fault_rng_is_reproducible(sim):
    def run() -> list[int]:
        sim.faults(fail_rate=0.5, seed=1234)
        return [sim.http.get("/open311/services.json").status_code for _ in range(16)]

    first = run()
    assert first == run()
    assert set(first) == {200, 500}


def test_slow_ms_delays_answers(sim):
    import time

    sim.faults(slow_ms=300)
    started = time.monotonic()
    assert httpx.get(f"{sim.url}/open311/services.json").status_code == 200
    assert time.monotonic() - started >= 0.3
