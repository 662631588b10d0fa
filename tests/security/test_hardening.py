"""Tokens compared in constant time, failed tokens throttled, bodies size-limited, security headers everywhere."""
from __future__ import annotations

import io
import random
import re
import uuid
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from server.auth.models import ApiToken
from server.config import REPO_ROOT, Settings, get_settings
from tests.conftest import auth

GRAFFITI = {"category": "graffiti", "lat": 51.3812, "lon": -2.3590, "accuracy_m": 5, "answers": {"offensive": "no"}}


def report_body(**over) -> dict:
    return {"client_id": str(uuid.uuid4()), "observed_at": datetime.now(timezone.utc).isoformat(), **GRAFFITI, **over}


# --- tokens -----------------------------------------------------------------------------------------

def test_only_a_hash_of_each_token_is_stored_and_it_is_compared_in_constant_time(client, tokens, db, monkeypatch):
    import server.auth.tokens as tokmod

    secret = tokens["advisor"]
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == tokmod.hash_token(secret)))
    assert row is not None and secret not in (row.token_hash, row.prefix) and len(row.token_hash) == 64
    assert db.scalar(select(ApiToken).where(ApiToken.token_hash == secret)) is None
    calls = []
    real = tokmod.hmac.compare_digest
    monkeypatch.setattr(tokmod.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert client.get("/api/v1/jobs", headers=auth(secret)).status_code == 200
    assert calls == [(row.token_hash, tokmod.hash_token(secret))]


def test_the_metrics_token_is_compared_in_constant_time(app, monkeypatch):
    import server.metrics as metrics

    monkeypatch.setattr(get_settings(), "metrics_token", "m" * 40)
    calls = []
    real = metrics.hmac.compare_digest
    monkeypatch.setattr(metrics.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    r = TestClient(app).get("/metrics", headers={"Authorization": "Bearer " + "m" * 39 + "x"})
    assert r.status_code == 403 and calls == [(b"m" * 39 + b"x", b"m" * 40)]


# --- throttling of failed tokens ---------------------------------------------------------------------

def test_repeated_bad_tokens_from_one_address_are_refused_with_429_and_retry_after(app, tokens):
    limit = app.state.auth_throttle.item.amount
    assert limit == 20  # the default KERBSIDE_AUTH_FAILURE_RATE, 20/minute
    c = TestClient(app, client=("203.0.113.7", 40000))
    for i in range(limit):
        r = c.get("/api/v1/jobs", headers=auth(f"ks_guess{i:04d}xxxxxxxxxxxxxxxxxxxxxxxx"))
        assert r.status_code == 401, (i, r.text)
    r = c.get("/api/v1/jobs", headers=auth("ks_one_more_guessxxxxxxxxxxxxxxxxxx"))
    assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/too-many-failed-credentials")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # While blocked, even a good token is not looked at, on every door that takes one…
    assert c.get("/api/v1/jobs", headers=auth(tokens["advisor"])).status_code == 429
    assert c.get("/open311/v2/requests.json", params={"api_key": tokens["advisor"]}).status_code == 429
    assert c.get("/ogc/collections", headers=auth(tokens["advisor"])).status_code == 429
    # …a key in a form body is simply not accepted meanwhile…
    form = c.post("/open311/v2/requests.json", data={"api_key": tokens["field_worker"], "service_code": "graffiti",
                                                     "lat": "51.3812", "long": "-2.3590"})
    assert form.status_code == 403
    # …but requests without credentials, and other addresses, are unaffected.
    assert c.get("/api/v1/categories").status_code == 200
    other = TestClient(app, client=("198.51.100.9", 40000))
    assert other.get("/api/v1/jobs", headers=auth(tokens["advisor"])).status_code == 200
    # When the window has passed (reset stands in for the minute), the good token works again.
    app.state.auth_throttle.reset()
    assert c.get("/api/v1/jobs", headers=auth(tokens["advisor"])).status_code == 200


def test_revoked_and_expired_tokens_count_as_failures_and_good_ones_never_do(app, tokens, db):
    from server.auth.tokens import create_token

    revoked, secret = create_token(db, "advisor", name="throttle-revoked")
    revoked.revoked_at = datetime.now(timezone.utc)
    db.flush()
    c = TestClient(app, client=("203.0.113.8", 40000))
    for _ in range(60):
        assert c.get("/api/v1/jobs", headers=auth(tokens["advisor"])).status_code == 200
    for _ in range(20):
        assert c.get("/api/v1/jobs", headers=auth(secret)).status_code == 401
    assert c.get("/api/v1/jobs", headers=auth(secret)).status_code == 429


def test_the_rate_setting_is_checked():
    with pytest.raises(ValueError, match="auth_failure_rate"):
        Settings(auth_failure_rate="lots")
    assert Settings(auth_failure_rate="5/second").auth_failure_rate == "5/second"


# --- body size limits --------------------------------------------------------------------------------

def chunks(data: bytes, size: int = 8192):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_chunked_body_over_the_limit_is_refused_without_content_length(client, tokens):
    limit = get_settings().max_body_bytes
    raw = b'{"padding": "' + b"x" * (limit + 10) + b'"}'
    r = client.post("/api/v1/reports", content=chunks(raw),
                    headers={**auth(tokens["field_worker"]), "content-type": "application/json"})
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413 and r.json()["type"].endswith("/payload-too-large")


def test_a_chunked_body_under_the_limit_still_works(client, tokens):
    import json

    raw = json.dumps(report_body()).encode()
    r = client.post("/api/v1/reports", content=chunks(raw, 16),
                    headers={**auth(tokens["field_worker"]), "content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 201, r.text


def multipart(fields: dict[str, str], file: bytes, name: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + file + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_a_chunked_photo_over_the_photo_limit_is_refused(client, tokens, monkeypatch, tmp_path):
    monkeypatch.setattr(get_settings(), "photo_root", tmp_path)
    monkeypatch.setattr(get_settings(), "max_photo_bytes", 4096)
    rep = client.post("/api/v1/reports", json=report_body(), headers=auth(tokens["field_worker"])).json()
    body, ctype = multipart({"client_id": str(uuid.uuid4())}, b"\xff\xd8" + b"0" * (4096 + 64 * 1024))
    r = client.post(f"/api/v1/reports/{rep['reference']}/photos", content=chunks(body),
                    headers={**auth(tokens["field_worker"]), "content-type": ctype})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413


def noisy_jpeg(min_bytes: int) -> bytes:
    rnd = random.Random(7)
    side = 400
    while True:
        img = Image.frombytes("RGB", (side, side), bytes(rnd.getrandbits(8) for _ in range(side * side * 3)))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=95)
        if buf.tell() >= min_bytes:
            return buf.getvalue()
        side += 100


def test_open311_media_gets_the_photo_limit_not_the_json_limit(client, tokens, monkeypatch, tmp_path):
    # Found while adding the chunked limit: a GeoReport POST with a photo over 256 KB was a 413.
    monkeypatch.setattr(get_settings(), "photo_root", tmp_path)
    photo = noisy_jpeg(get_settings().max_body_bytes + 1024)
    r = client.post("/open311/v2/requests.json", data={
        "api_key": tokens["field_worker"], "service_code": "graffiti", "lat": "51.3812", "long": "-2.3590",
        "attribute[offensive]": "no", "description": "with a big photo"}, files={"media": ("p.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()[0]["service_request_id"].startswith("R-")


def test_a_content_length_that_is_not_a_number_is_a_400(client):
    r = client.post("/api/v1/reports", content=b"{}", headers={"content-length": "12abc",
                                                             "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["type"].endswith("/bad-content-length")


# --- security headers --------------------------------------------------------------------------------

BASE = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


@pytest.mark.parametrize("url,status", [("/api/v1/categories", 200), ("/api/v1/jobs", 401),
                                        ("/nowhere", 404), ("/open311/v2/services.xml", 200),
                                        ("/ogc/collections", 200), ("/healthz", 200)])
def test_api_answers_carry_the_security_headers(client, url, status):
    r = client.get(url)
    assert r.status_code == status
    for k, v in BASE.items():
        assert r.headers[k] == v, k
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert "strict-transport-security" not in r.headers  # plain http: HSTS would be meaningless


def test_hsts_only_over_https(app):
    r = TestClient(app, base_url="https://testserver").get("/api/v1/categories")
    assert r.headers["strict-transport-security"].startswith("max-age=31536000")


def test_authenticated_answers_are_not_cached_but_photos_keep_their_policy(client, tokens):
    r = client.get("/api/v1/jobs", headers=auth(tokens["advisor"]))
    assert r.headers["cache-control"] == "no-store"
    assert "cache-control" not in client.get("/api/v1/categories").headers


def test_a_413_carries_the_headers_too(client, tokens):
    r = client.post("/api/v1/reports", content=b"x" * (get_settings().max_body_bytes + 1),
                    headers={**auth(tokens["field_worker"]), "content-type": "application/json"})
    assert r.status_code == 413 and r.headers["x-frame-options"] == "DENY" and "x-request-id" in r.headers


@pytest.mark.parametrize("page", sorted(p.name for p in (REPO_ROOT / "server/contact_centre/static").glob("*.html")))
def test_dashboard_pages_have_a_csp_without_inline_script(client, page):
    r = client.get(f"/dashboard/{page}")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    script = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert script.split() == ["script-src", "'self'"] and "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp
    for k, v in BASE.items():
        assert r.headers[k] == v
    # The CSP forbids inline script, so the pages must have none (every <script> loads a file).
    tags = re.findall(r"<script\b[^>]*>(.*?)</script>", r.text, flags=re.S | re.I)
    assert tags and all(not body.strip() for body in tags)
    assert all("src=" in t for t in re.findall(r"<script\b[^>]*>", r.text, flags=re.I))
    assert not re.search(r"\son[a-z]+\s*=", r.text, flags=re.I), "inline event handlers are script too"


def test_api_docs_keep_working_without_our_csp_but_with_the_other_headers(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "content-security-policy" not in r.headers
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
