"""What the fuzzer (and the access matrix) found, kept as concrete inputs: each was a 5xx or a lie once.

Every case names the input exactly as it was found; the fix is in the comment beside it.
"""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import auth


@pytest.fixture
def more_tokens(db, tokens):
    """The conftest tokens plus a contractor's."""
    from server.auth.tokens import create_token

    return {**tokens, "contractor": create_token(db, "contractor", contractor="street-lighting")[1]}


# (role, method, url, expected status, expected problem code). Before the fix each of these was a 500
# (bigint/int4 overflow reached PostgreSQL; a NUL character reached PostgreSQL) or a silent last-wins.
FOUND = [
    # photo ids are bigint: 2**76 went to the database (NumericValueOutOfRange) → bounded Path(le=2**63-1)
    ("advisor", "GET", "/api/v1/photos/114154099822752069320704?thumbnail=true", 422, "validation-error"),
    # subscription ids are int4 → Path(le=2**31-1)
    ("admin", "DELETE", "/api/v1/subscriptions/46819428275", 422, "validation-error"),
    ("admin", "GET", "/api/v1/subscriptions/2147483648", 422, "validation-error"),
    # outbox ids are bigint
    ("supervisor", "POST", "/api/v1/outbox/9223372036854775808/retry", 422, "validation-error"),
    # a NUL character in a search → PostgreSQL refuses it (DataError) → one handler: 422 invalid-value
    ("advisor", "GET", "/api/v1/contact-centre/find?q=%7F%60%F0%99%9F%91%C3%A6%C3%B0%F1%BE%AB%8A%1CJ%C2%B4%C2%8B"
                       "%C3%97%00%04%1C%C3%87%2F%C2%83%C3%86rA", 422, "invalid-value"),
    ("advisor", "GET", "/api/v1/jobs?q=a%00b", 422, "invalid-value"),
    ("advisor", "GET", "/api/v1/jobs?ward=%00", 422, "invalid-value"),
    # a single-valued parameter given twice was silently last-wins → 422 repeated-parameter (app-wide)
    ("advisor", "GET", "/api/v1/jobs?q=false&q=false", 422, "repeated-parameter"),
    ("advisor", "GET", "/api/v1/contact-centre/board?ward=%C2%9E&ward=%7B%7D", 422, "repeated-parameter"),
    ("advisor", "GET", "/api/v1/jobs?limit=5&limit=6", 422, "repeated-parameter"),
    # a bare number was read as a Unix timestamp (-582 → 1969-12-31T23:50:18Z) → ISO 8601 only
    ("contractor", "GET", "/api/v1/contractor/jobs?changed_since=-582&limit=256&offset=964", 422,
     "validation-error"),
    ("contractor", "GET", "/api/v1/contractor/jobs?changed_since=1700000000", 422, "validation-error"),
    # `make fuzz`: "28 days before 0001-01-01" overflowed Python's date (OverflowError → 500) → dates bounded
    ("advisor", "GET", "/api/v1/contact-centre/figures?to=0001-01-01", 422, "validation-error"),
    ("advisor", "GET", "/api/v1/contact-centre/figures?from=9999-12-31", 422, "validation-error"),
]


@pytest.mark.parametrize("role,method,url,status,code", FOUND, ids=[f"{m} {u[:60]}" for _, m, u, _, _ in FOUND])
def test_found_input_is_a_4xx_problem(client, more_tokens, role, method, url, status, code):
    r = client.request(method, url, headers=auth(more_tokens[role]))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/" + code)


def test_iso_timestamps_still_work(client, more_tokens):
    r = client.get("/api/v1/contractor/jobs?changed_since=2026-01-01T00:00:00Z", headers=auth(more_tokens["contractor"]))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("when", [1700000000, "1700000000", -582.5])
def test_a_report_time_must_be_iso_8601_not_a_number(client, more_tokens, when):
    from tests.server.test_intake import body

    r = client.post("/api/v1/reports", json=body(observed_at=when), headers=auth(more_tokens["field_worker"]))
    assert r.status_code == 422 and "observed_at" in r.json()["fields"], r.text


def test_a_list_parameter_may_still_repeat(client, more_tokens):
    r = client.get("/api/v1/jobs?status=new&status=sent", headers=auth(more_tokens["advisor"]))
    assert r.status_code == 200, r.text


def test_nul_in_a_json_body_is_refused_not_a_500(client, more_tokens):
    r = client.post("/api/v1/subscriptions", headers=auth(more_tokens["admin"]),
                    json={"url": "https://93.184.215.14/hook", "secret": "abc\u0000defghijklmnopqrstu"})
    assert r.status_code == 422 and r.json()["type"].endswith("/invalid-value"), r.text


def test_admin_posting_a_contractor_update_is_refused_not_a_500(client, more_tokens, db):
    # Found by the access matrix: require("contractor") lets admin through, and the update path then
    # read the contractor of a token that has none (AttributeError → 500). Now a 403.
    from tests.server.test_intake import body, post

    job = post(client, more_tokens["field_worker"], body()).json()["job"]["reference"]
    r = client.post(f"/api/v1/contractor/jobs/{job}/updates", headers=auth(more_tokens["admin"]),
                    json={"update_id": f"u-{uuid.uuid4()}", "status": "accepted"})
    assert r.status_code == 403 and r.json()["type"].endswith("/forbidden"), r.text


DOCUMENT = [
    # Each of these answers was given but not declared (Schemathesis ST103/ST105), or declared wrongly.
    ("/api/v1/categories/{code}", "get", "404", "application/problem+json"),
    ("/api/v1/jobs/{reference}", "get", "401", "application/problem+json"),
    ("/api/v1/me/jobs", "get", "403", "application/problem+json"),
    ("/api/v1/reports", "post", "422", "application/problem+json"),
    ("/api/v1/reports", "post", "413", "application/problem+json"),
    ("/api/v1/jobs", "get", "429", "application/problem+json"),
    ("/api/v1/photos/{photo_id}", "get", "200", "image/jpeg"),
    ("/api/v1/photos/{photo_id}", "get", "410", "application/problem+json"),
    ("/api/v1/events", "get", "200", "text/event-stream"),
    ("/open311/v2/services.{fmt}", "get", "200", "text/xml"),
    ("/open311/v2/requests.{fmt}", "post", "403", "application/json"),
    ("/ogc/collections/{collection_id}/items", "get", "200", "application/geo+json"),
    # OGC errors are problem documents carrying OGC's code and description too (one format for the API).
    ("/ogc/collections/{collection_id}/items", "get", "400", "application/problem+json"),
    ("/api/v1/contractors/{name}/webhook", "post", "404", "application/json"),
    # `make fuzz`: a feature id starting with a newline matches no route: the app's problem+json 404.
    ("/ogc/collections/{collection_id}/items/{feature_id}", "get", "404", "application/problem+json"),
]


def test_an_unroutable_feature_id_is_the_declared_problem_404(client):
    r = client.get("/ogc/collections/street_lights/items/%0A%3F%C3%9C%18p%F2%A0%84%B8%C2%A9T?f=geojson")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "NotFound"  # the same body as the OGC router's own 404s


@pytest.mark.parametrize("path,method,status,media", DOCUMENT, ids=[f"{m} {p} {s}" for p, m, s, _ in DOCUMENT])
def test_the_document_declares_what_the_api_answers(client, path, method, status, media):
    doc = client.get("/openapi.json").json()
    assert media in doc["paths"][path][method]["responses"][status]["content"]


def test_the_document_has_no_fastapi_validation_shape_left(client):
    doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(doc)
    secured = [(p, m) for p, ops in doc["paths"].items() for m, op in ops.items() if op.get("security")]
    assert ("/api/v1/jobs", "get") in secured and ("/api/v1/categories", "get") not in secured
