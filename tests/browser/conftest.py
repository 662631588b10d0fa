"""Browser fixtures: the API as a real uvicorn process, committed tokens, Debian's Chromium via Playwright."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.live import ROOT, commit_token, revoke_tokens, start_api, stop

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# A tile server that is not there: the dashboard must notice and carry on with its own layers.
DEAD_TILES = "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png"


@pytest.fixture(scope="session")
def api(prepared_db, tmp_path_factory):
    """The API as `make run` starts it (uvicorn factory), on a free port, on the test database."""
    server = start_api(tmp_path_factory.mktemp("browser") / "api.log", KERBSIDE_MAP_TILES_URL=DEAD_TILES)
    yield server
    stop(server.proc)


@pytest.fixture(scope="session")
def people(api):
    """Committed advisor and supervisor tokens (revoked afterwards)."""
    made = {role: commit_token(role) for role in ("advisor", "supervisor")}
    yield {role: secret for role, (_, secret) in made.items()}
    revoke_tokens([i for i, _ in made.values()])


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab plus what went wrong in it and a screenshot helper."""

    def __init__(self, tab, api, name: str):
        self.tab, self.api, self.name = tab, api, name
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        tab.on("pageerror", lambda e: self.errors.append(str(e)))
        tab.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}--{label}.png"
        self.tab.screenshot(path=str(path), full_page=True)
        return path

    def sign_in(self, token: str, page: str = "index.html") -> None:
        tab = self.tab
        tab.goto(f"{self.api.url}/dashboard/signin.html?next=/dashboard/{page}")
        tab.get_by_label("Access token").fill(token)
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_url(f"**/dashboard/{page}")
        tab.locator("#who").wait_for()


@pytest.fixture
def page(browser, api, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB",
                                  timezone_id="Europe/London")
    context.set_default_timeout(10_000)
    p = Page(context.new_page(), api, request.node.name)
    yield p
    try:
        p.shot("end")
    finally:
        context.close()
    assert p.errors == [], f"JavaScript errors: {p.errors}"
    assert p.dialogs == [], f"unexpected dialogs: {p.dialogs}"
