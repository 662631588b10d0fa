"""The public status page in Debian's Chromium: readable without JavaScript, accessible (axe-core from npm:
no serious or critical violations), with the map added when scripts run, and nothing personal on it."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS
from tests.browser.live import ROOT, commit_token, free_street_light, revoke_tokens

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CONTACT = {"first_name": "Morwenna", "last_name": "Tregarthen", "email": "morwenna.t@example.org",
           "phone": "07700900321", "notify": "both", "consent": True}


@pytest.fixture(scope="module")
def report(api):
    token_id, token = commit_token("advisor")
    light = free_street_light()
    body = {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": light["lat"], "lon": light["lon"],
            "accuracy_m": 4.0, "observed_at": datetime.now(timezone.utc).isoformat(), "asset_ref": light["ref"],
            "answers": {"fault": "out"}, "description": "Caller Morwenna at number 12", "contact": CONTACT}
    r = httpx.post(f"{api.url}/api/v1/reports", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 201, r.text
    answer = r.json()
    # The page names the street the intake placed the job on (the nearest named road), which near a corner can
    # differ from the street recorded on the lamp column itself.
    assert answer["job"]["street"]
    yield {**answer, "street": answer["job"]["street"]}
    revoke_tokens([token_id])


def _axe(tab) -> list[dict]:
    tab.add_script_tag(path=str(AXE))
    result = tab.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def _no_personal_data(html: str) -> None:
    for secret in ("Morwenna", "Tregarthen", "morwenna.t", "07700900321", "number 12"):
        assert secret not in html, secret


def test_status_page_works_without_javascript_and_has_no_serious_axe_violations(browser, api, report):
    context = browser.new_context(java_script_enabled=False, locale="en-GB")
    tab = context.new_page()
    try:
        response = tab.goto(f"{api.url}/r/{report['reference']}")
        assert response.status == 200
        assert tab.locator("h1").inner_text() == f"Your report {report['reference']}"
        assert tab.locator("#status").inner_text().strip()
        assert report["street"] in tab.locator("dl").inner_text()
        assert tab.locator("#promised").inner_text().startswith("by ")
        assert tab.get_by_role("link", name="Open this place on a map").count() == 1
        _no_personal_data(tab.content())
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "status-page--no-js.png"), full_page=True)
    finally:
        context.close()


def test_status_page_with_scripts_draws_the_map_and_passes_axe(browser, api, report):
    # bypass_csp: axe is injected as an inline script, which the page's policy (rightly) refuses.
    context = browser.new_context(locale="en-GB", viewport={"width": 390, "height": 844}, bypass_csp=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        tab.goto(f"{api.url}/r/{report['reference']}")
        tab.locator("#map.leaflet-container").wait_for(timeout=10_000)
        assert tab.locator("#map path.leaflet-interactive").count() == 1  # the marker
        serious = _axe(tab)
        assert serious == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in serious]
        _no_personal_data(tab.content())
        tab.screenshot(path=str(ARTIFACTS / "status-page--mobile.png"), full_page=True)
        # The unknown-reference page is accessible too.
        assert tab.goto(f"{api.url}/r/R-999999").status == 404
        serious = _axe(tab)
        assert serious == [], [(v["id"], v["help"]) for v in serious]
    finally:
        context.close()
    assert errors == []
