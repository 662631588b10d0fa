"""CORS scoped to the public reads (server/cors.py): which paths, methods, origins and credentials get it.

The browser's side of the same rules (a real page on another origin) is tests/browser/test_cors.py.
"""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.config import Settings, get_settings
from tests.conftest import auth

MAP = "https://maps.example.org"
OTHER = "https://elsewhere.example.net"
READS = ["/ogc", "/ogc/collections/street_lights/items?limit=1", "/open311/v2/services.json", "/healthz"]


@pytest.fixture
def cors(app, monkeypatch):
    """Set the CORS settings of the test's app (its middleware reads them when the stack is built)."""
    def configure(origins: list[str], credentials: bool = False, api: bool = False) -> None:
        s = get_settings()
        monkeypatch.setattr(s, "cors_origins", origins)
        monkeypatch.setattr(s, "cors_credentials", credentials)
        monkeypatch.setattr(s, "cors_api", api)
        app.middleware_stack = None  # rebuilt on the next request, with these settings
    return configure


def preflight(client, path: str, origin: str, method: str = "GET", headers: str | None = None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=h)


def test_no_origins_configured_means_no_cors_at_all(client, cors):
    cors([])
    r = client.get("/ogc/conformance", headers={"Origin": MAP})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert preflight(client, "/ogc/conformance", MAP).status_code == 405


@pytest.mark.parametrize("path", READS)
def test_an_allowed_origin_reads_the_public_endpoints(client, cors, path):
    cors([MAP])
    r = client.get(path, headers={"Origin": MAP})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == MAP
    assert "Origin" in r.headers["vary"] and "access-control-allow-credentials" not in r.headers
    assert {"X-Request-Id", "Content-Crs"} <= set(r.headers["access-control-expose-headers"].split(", "))
    # Every answer in scope varies by Origin, also one to a request that sent none (caches).
    assert "Origin" in client.get(path).headers["vary"]
    refused = client.get(path, headers={"Origin": OTHER})
    assert refused.status_code == 200 and "access-control-allow-origin" not in refused.headers
    assert "Origin" in refused.headers["vary"]


def test_preflights_allow_reads_only(client, cors):
    cors([MAP])
    ok = preflight(client, "/ogc/collections", MAP)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == MAP
    assert ok.headers["access-control-allow-methods"] == "GET, HEAD"
    for path, method, headers, field in [
            ("/open311/v2/requests.json", "POST", None, "Access-Control-Request-Method"),
            ("/ogc/collections", "GET", "authorization", "Access-Control-Request-Headers")]:
        no = preflight(client, path, MAP, method, headers)
        assert no.status_code == 400 and no.headers["content-type"] == "application/problem+json"
        body = no.json()
        assert body["type"].endswith("/cors-refused") and body["fields"] == [field]
    other = preflight(client, "/ogc/collections", OTHER)
    assert other.status_code == 400 and other.json()["fields"] == ["Origin"]
    assert "access-control-allow-origin" not in other.headers


def test_writes_and_the_api_get_no_cors_unless_configured(client, cors, tokens):
    cors([MAP])
    post = client.post("/open311/v2/requests.json", data={"service_code": "graffiti"}, headers={"Origin": MAP})
    assert post.status_code == 403 and "access-control-allow-origin" not in post.headers
    api = client.get("/api/v1/categories", headers={"Origin": MAP})
    assert api.status_code == 200 and "access-control-allow-origin" not in api.headers
    assert preflight(client, "/api/v1/reports", MAP, "POST", "authorization,content-type").status_code == 405
    assert preflight(client, "/dashboard/index.html", MAP).status_code == 405


def test_credentials_only_where_configured(client, cors, tokens):
    cors([MAP], credentials=True)
    ok = preflight(client, "/ogc/collections/jobs/items", MAP, "GET", "authorization")
    assert ok.status_code == 200 and ok.headers["access-control-allow-credentials"] == "true"
    jobs = client.get("/ogc/collections/jobs/items", headers={"Origin": MAP, **auth(tokens["advisor"])})
    assert jobs.status_code == 200 and jobs.headers["access-control-allow-origin"] == MAP
    assert jobs.headers["access-control-allow-credentials"] == "true"
    assert preflight(client, "/api/v1/reports", MAP, "POST", "authorization").status_code == 405


def test_the_api_opens_only_with_its_own_setting(client, cors, tokens):
    cors([MAP], credentials=True, api=True)
    ok = preflight(client, "/api/v1/reports", MAP, "POST", "authorization,content-type")
    assert ok.status_code == 200 and "POST" in ok.headers["access-control-allow-methods"]
    r = client.get("/api/v1/jobs", headers={"Origin": MAP, **auth(tokens["advisor"])})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == MAP
    assert "access-control-allow-origin" not in client.get("/api/v1/jobs", headers={
        "Origin": OTHER, **auth(tokens["advisor"])}).headers


def test_star_allows_any_origin_without_credentials(client, cors):
    cors(["*"])
    r = client.get("/ogc", headers={"Origin": OTHER})
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("value", ["maps.example.org", "https://maps.example.org/path", "ftp://x.org",
                                   "https://maps.example.org:port", "null"])
def test_settings_refuse_what_is_not_an_origin(value):
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(cors_origins=value)


def test_settings_read_a_comma_list_and_refuse_star_with_credentials(monkeypatch):
    monkeypatch.setenv("KERBSIDE_CORS_ORIGINS", "https://Maps.Example.org/, http://127.0.0.1:5173")
    assert Settings().cors_origins == ["https://maps.example.org", "http://127.0.0.1:5173"]
    with pytest.raises(ValidationError, match="not \\*"):
        Settings(cors_origins="*", cors_credentials=True)
    assert Settings(cors_origins="").cors_origins == []
