"""Structured JSON logs with a request id on every line of a request, and no secret in any log line."""
from __future__ import annotations

import json
import logging
import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from server.observability import JsonFormatter, redact
from tests.conftest import auth


def test_a_sane_request_id_is_echoed_and_an_insane_one_replaced(client):
    rid = "crm-7f3a9c1e-0001"
    assert client.get("/api/v1/categories", headers={"X-Request-ID": rid}).headers["x-request-id"] == rid
    for bad in ("short", "has spaces in it", "x" * 129, "semi;colon;injection", "<script>alert(1)</script>"):
        got = client.get("/api/v1/categories", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)
    a, b = (client.get("/api/v1/categories").headers["x-request-id"] for _ in range(2))
    assert a != b


def test_every_log_line_of_a_request_carries_its_id_and_is_json(client, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    rid = f"req-{uuid.uuid4()}"
    # A NUL in a search: the database refuses it, the handler logs a warning, the access line follows.
    r = client.get("/api/v1/jobs?q=a%00b", headers={**auth(tokens["advisor"]), "X-Request-ID": rid})
    assert r.status_code == 422 and r.headers["x-request-id"] == rid
    ours = [rec for rec in caplog.records if rec.name.startswith("kerbside")]
    assert {rec.name for rec in ours} >= {"kerbside.errors", "kerbside.access"}
    assert all(rec.request_id == rid for rec in ours), [(rec.name, rec.request_id) for rec in ours]
    line = json.loads(JsonFormatter().format(next(rec for rec in ours if rec.name == "kerbside.access")))
    assert line["request_id"] == rid and line["level"] == "INFO" and line["logger"] == "kerbside.access"
    assert line["http"]["route"] == "/api/v1/jobs" and line["http"]["status"] == 422
    assert line["http"]["method"] == "GET" and line["http"]["duration_ms"] >= 0
    # Outside a request there is no id.
    logging.getLogger("kerbside.test").warning("outside")
    assert caplog.records[-1].request_id is None


def test_an_unexpected_error_is_a_problem_with_the_request_id_and_a_logged_traceback(app, caplog):
    def boom():
        raise RuntimeError("kaboom")

    app.add_api_route("/test-boom", boom)
    caplog.set_level(logging.INFO)
    r = TestClient(app).get("/test-boom", headers={"X-Request-ID": "boom-request-0001"})
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["request_id"] == "boom-request-0001" and "kaboom" not in r.text
    assert r.headers["x-request-id"] == "boom-request-0001" and r.headers["x-content-type-options"] == "nosniff"
    err = next(rec for rec in caplog.records if rec.levelno == logging.ERROR)
    assert err.request_id == "boom-request-0001" and "kaboom" in json.loads(JsonFormatter().format(err))["exc"]


def test_redaction_masks_tokens_even_if_someone_logs_one():
    token = "ks_" + "A" * 43
    out = redact(f"got {token} and Authorization: Bearer {token}")
    assert token not in out and "ks_***" in out
    rec = logging.LogRecord("kerbside.x", logging.INFO, __file__, 1, "token=%s", (token,), None)
    assert token not in JsonFormatter().format(rec)


@pytest.fixture
def everything_logged(caplog, capsys):
    """All log records at DEBUG, and a function returning every form they took (records, JSON, stderr)."""
    caplog.set_level(logging.DEBUG)

    def dump() -> str:
        fmt = JsonFormatter()
        parts = [caplog.text, capsys.readouterr().err]
        for rec in caplog.records:
            parts += [fmt.format(rec), repr(rec.__dict__), rec.getMessage()]
        return "\n".join(parts)

    return dump


def test_no_secret_reaches_any_log_line(client, tokens, db, everything_logged):
    from server.auth.tokens import create_token

    revoked, revoked_secret = create_token(db, "advisor", name="log-revoked")
    revoked.revoked_at = revoked.created_at or __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    db.flush()
    unknown = "ks_" + uuid.uuid4().hex + uuid.uuid4().hex[:11]
    webhook_secret = f"whsec-{uuid.uuid4().hex}"
    new_secret = f"whsec-{uuid.uuid4().hex}"
    secrets = [tokens["advisor"], tokens["admin"], tokens["field_worker"], revoked_secret, unknown,
               webhook_secret, new_secret]

    client.get("/api/v1/jobs", headers=auth(tokens["advisor"]))
    client.get("/api/v1/jobs", headers=auth(unknown))
    client.get("/api/v1/jobs", headers=auth(revoked_secret))
    client.get("/api/v1/jobs", headers={"Authorization": f"bearer   {unknown}"})
    client.get("/open311/v2/requests.json", params={"api_key": tokens["advisor"]})
    client.get("/open311/v2/requests.json", params={"api_key": unknown, "status": "open"})
    client.post("/open311/v2/requests.json", data={"api_key": tokens["field_worker"], "service_code": "nope"})
    client.get("/ogc/collections", headers=auth(unknown))
    sub = client.post("/api/v1/subscriptions", headers=auth(tokens["admin"]),
                      json={"url": "https://93.184.215.14/hook", "secret": webhook_secret})
    assert sub.status_code == 201, sub.text
    client.patch(f"/api/v1/subscriptions/{sub.json()['id']}", headers=auth(tokens["admin"]),
                 json={"secret": new_secret})
    client.post("/api/v1/subscriptions", headers=auth(tokens["admin"]),
                json={"url": "https://93.184.215.14/hook", "secret": new_secret + "\u0000"})  # DB refuses it
    client.post("/api/v1/contractors/street-lighting/webhook", content=b'{"updates": []}',
                headers={"X-Kerbside-Timestamp": "1", "X-Kerbside-Signature": f"sha256={webhook_secret}"})
    logged = everything_logged()
    assert "kerbside.access" in logged and "/open311/v2/requests.json?api_key=%2A%2A%2A" in logged
    leaked = [s for s in secrets if s in logged]
    assert not leaked, f"secrets in the logs: {leaked}"


def test_database_errors_never_carry_their_parameters(engine):
    from sqlalchemy.exc import DBAPIError

    secret = "whsec-" + uuid.uuid4().hex
    with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(text("SELECT length(:v) / 0"), {"v": secret})
    # Without hide_parameters SQLAlchemy appends "[parameters: {'v': '<secret>'}]" to the message.
    assert secret not in str(caught.value) and "parameters hidden" in str(caught.value)


def test_a_value_the_database_refuses_is_not_quoted_back_or_logged(client, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "whsec-" + uuid.uuid4().hex
    r = client.post("/api/v1/subscriptions", headers=auth(tokens["admin"]),
                    json={"url": "https://93.184.215.14/hook", "secret": secret + "\u0000"})
    assert r.status_code == 422 and r.json()["type"].endswith("/invalid-value")
    assert secret not in r.text and secret not in caplog.text
