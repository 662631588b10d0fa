"""A web map on another origin reads Kerbside in real Chromium: CORS as a browser enforces it.

The page (tests/browser/pages/other_origin_map.html, with Leaflet) is served by a second real HTTP server on
other ports, so its origin differs from the API's. The API runs with KERBSIDE_CORS_ORIGINS naming one of
those origins; the other origin is not named and the browser must refuse it the answers.
"""
from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS
from tests.browser.live import ROOT, commit_token, revoke_tokens, start_api, stop

PAGE = Path(__file__).parent / "pages" / "other_origin_map.html"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Two static sites serving the map page (and Leaflet) on two ports: {'allowed': url, 'other': url}."""
    root = tmp_path_factory.mktemp("map-site")
    shutil.copy(PAGE, root / "map.html")
    shutil.copytree(ROOT / "node_modules" / "leaflet" / "dist", root / "leaflet")
    servers, out = [], {}
    for name in ("allowed", "other"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        out[name] = f"http://127.0.0.1:{server.server_address[1]}"
    yield out
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def apis(prepared_db, sites, tmp_path_factory):
    """Two API processes allowing the 'allowed' site: one without credentials, one with them."""
    logs = tmp_path_factory.mktemp("cors-api")
    plain = start_api(logs / "plain.log", KERBSIDE_CORS_ORIGINS=sites["allowed"])
    try:
        creds = start_api(logs / "creds.log", KERBSIDE_CORS_ORIGINS=sites["allowed"],
                          KERBSIDE_CORS_CREDENTIALS="true")
    except Exception:
        stop(plain.proc)
        raise
    yield {"plain": plain, "credentials": creds}
    stop(plain.proc)
    stop(creds.proc)


@pytest.fixture(scope="module")
def advisor(apis):
    token_id, secret = commit_token("advisor")
    yield secret
    revoke_tokens([token_id])


def open_map(browser, site: str, api, name: str, token: str | None = None) -> dict:
    """Load the map page from `site` against `api` and return what its fetch() calls got."""
    context = browser.new_context(viewport={"width": 900, "height": 700})
    try:
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        query = {"api": api.url, **({"token": token} if token else {})}
        tab.goto(f"{site}/map.html?{urlencode(query)}")
        results = tab.evaluate("window.results")
        tab.locator("#out").wait_for()
        results["markers"] = tab.locator("path.light").count()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"cors--{name}.png"), full_page=True)
        assert errors == [], errors
        return results
    finally:
        context.close()


def blocked(result: dict) -> bool:
    """The browser refused the page the answer (fetch rejects with a TypeError, no status)."""
    return "status" not in result and result.get("error", "").startswith("TypeError")


def test_a_map_on_an_allowed_origin_reads_ogc_open311_and_healthz(browser, sites, apis):
    api = apis["plain"]
    got = open_map(browser, sites["allowed"], api, "allowed")
    direct = httpx.get(f"{api.url}/ogc/collections/street_lights/items", params={"limit": 5}).json()
    assert got["items"]["status"] == 200
    assert [f["id"] for f in got["items"]["body"]["features"]] == [f["id"] for f in direct["features"]]
    assert got["markers"] == 5  # Leaflet drew every lamp column it was given
    assert got["items"]["requestId"]  # an exposed header
    services = httpx.get(f"{api.url}/open311/v2/services.json").json()
    assert got["services"]["status"] == 200
    assert [s["service_code"] for s in got["services"]["body"]] == [s["service_code"] for s in services]
    assert got["health"]["status"] in (200, 503) and "database" in got["health"]["body"]
    # A public path's refusal is readable too (the page can tell the user to sign in).
    assert got["jobs"]["status"] == 401 and got["jobs"]["body"]["code"] == "Unauthorized"
    # Not public reads: the browser keeps these answers from the page.
    assert blocked(got["write"]), got["write"]
    assert blocked(got["api"]), got["api"]


def test_an_origin_not_allowed_is_blocked_by_the_browser(browser, sites, apis):
    got = open_map(browser, sites["other"], apis["plain"], "other-origin")
    for name in ("items", "services", "health", "jobs", "write", "api"):
        assert blocked(got[name]), (name, got[name])
    assert got["markers"] == 0


def test_a_bearer_token_only_where_credentials_are_configured(browser, sites, apis, advisor):
    without = open_map(browser, sites["allowed"], apis["plain"], "token-refused", token=advisor)
    assert blocked(without["jobs"]), without["jobs"]  # the preflight for Authorization is refused
    assert without["items"]["status"] == 200  # public reads still work
    got = open_map(browser, sites["allowed"], apis["credentials"], "token-allowed", token=advisor)
    assert got["jobs"]["status"] == 200 and got["jobs"]["body"]["type"] == "FeatureCollection"
    assert blocked(got["api"]), got["api"]  # /api/v1 stays closed without KERBSIDE_CORS_API
