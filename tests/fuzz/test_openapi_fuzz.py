"""Schemathesis against our own /openapi.json, in process (ASGI), every operation, every role.

For each operation: valid (positive) and invalid (negative) inputs generated from the document, each
sent with the token of a role drawn at random; path parameters are often swapped for references
that exist (a job, a report, a photo…), so handlers run past their 404s. Checks: no 5xx, a status
the document declares, its media type, its schema and headers, and invalid input refused with a 4xx.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from tests.fuzz.conftest import DERANDOMIZE, EXAMPLES, SENT, STATUSES
from tests.security.world import auth

FUZZ_ROLES = ("field_worker", "crew", "advisor", "supervisor", "contractor_a", "contractor_b", "admin")
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance, checks.negative_data_rejection]


def _operations() -> tuple[list[tuple[str, str]], dict]:
    from server.main import create_app
    from server.openapi import required_roles

    app = create_app()
    doc = app.openapi()
    allowed = {}
    for key, roles in required_roles(app).items():
        names = [r for r in roles if r in FUZZ_ROLES] + (["contractor_a", "contractor_b"] * ("contractor" in roles))
        allowed[key] = tuple(names) + ("admin",)
    return sorted((m.upper(), p) for p, ops in doc["paths"].items() for m in ops), allowed


OPERATIONS, ALLOWED = _operations()


def real_values(world) -> dict[str, list]:
    """Path parameter values that name rows which exist, by parameter name."""
    return {
        "reference": [world.job_a, world.job_b, world.job_crew, world.report_a],
        "photo_id": [world.photo_a, world.photo_b], "subscription_id": [world.subscription],
        "message_id": [world.outbox_a], "code": ["street_light", "grit_bin"],
        "service_code": ["street_light", "graffiti"], "service_request_id": [world.report_a, world.report_b],
        "token": [world.report_a_client_id], "name": ["street-lighting", "green-spaces"],
        "collection_id": ["jobs", "wards", "street_lights", "grit_bins"],
        "feature_id": [world.job_a, world.job_crew], "fmt": ["json", "xml"],
    }


def _has_inputs(op) -> bool:
    return any(len(x) for x in (op.path_parameters, op.query, op.headers)) or op.body is not None and len(op.body)


def test_every_operation_of_the_document_is_fuzzed(client):
    live = client.get("/openapi.json").json()
    assert sorted((m.upper(), p) for p, ops in live["paths"].items() for m in ops) == OPERATIONS
    assert len(OPERATIONS) >= 45


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(fuzz_app, method, path):
    app, world = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.max_stream_events = 1  # the event stream: its `ready` event, then hang up
    # We send a real token ourselves (the access matrix tests its absence), so Schemathesis must not count
    # a dropped Authorization header among a negative case's mutations: we would put it back.
    schema.config.generation.with_security_parameters = False
    op = schema[path][method]
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if _has_inputs(op) else [])
    real = real_values(world)
    label = f"{method} {path}"

    # Half the time a role the operation admits, so the handler runs rather than the 403.
    roles = st.sampled_from(FUZZ_ROLES)
    if (method, path) in ALLOWED:
        roles = st.one_of(st.sampled_from(ALLOWED[(method, path)]), roles)

    for mode in modes:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=op.as_strategy(generation_mode=mode), role=roles, data=st.data())
        def run(case, role, data):
            if mode is GenerationMode.POSITIVE and case.path_parameters:
                for name in list(case.path_parameters):
                    if name in real and data.draw(st.booleans(), label=f"real {name}"):
                        case.path_parameters[name] = data.draw(st.sampled_from(real[name]), label=name)
            token = world.tokens[role]
            if path.startswith("/open311/") and mode is GenerationMode.POSITIVE:  # api_key = token: often real
                for part in (case.query, case.body):
                    if isinstance(part, dict) and "api_key" in part and data.draw(st.booleans(), label="real key"):
                        part["api_key"] = token
            app.state.auth_throttle.reset()  # random api_keys must not get the fuzzer itself throttled
            case.headers = {**(case.headers or {}), **auth(token)}
            SENT[label] += 1
            response = case.call()
            STATUSES[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        before = SENT[label]
        try:
            run()
        except Unsatisfiable:
            # Only when the document leaves no room for invalid input (e.g. one free-text path parameter).
            assert mode is GenerationMode.NEGATIVE and SENT[label] == before
    assert SENT[label] >= 1
