"""Transport to an Open311 GeoReport v2 back office: the only module that knows its URLs and auth (api_key)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from contractors import transport
from contractors.open311.config import Open311Config

REQUESTS = "/requests.json"
UPDATES = "/servicerequestupdates.json"


class Open311Client:
    """HTTP client for one GeoReport v2 endpoint (thread-safe; one connection pool)."""

    def __init__(self, config: Open311Config, transport_: httpx.BaseTransport | None = None):
        self.config = config
        self._http = httpx.Client(base_url=config.base_url, timeout=httpx.Timeout(config.timeout_s),
                                  transport=transport_, headers={"Accept": "application/json"})

    def _auth(self) -> list[tuple[str, str]]:
        out = [("api_key", self.config.api_key.get_secret_value())]
        if self.config.jurisdiction_id:
            out.append(("jurisdiction_id", self.config.jurisdiction_id))
        return out

    def _post(self, path: str, form: list[tuple[str, str]], what: str) -> Any:
        # httpx's `data=` cannot repeat keys, so encode the form ourselves (attribute[x][] repeats).
        body = httpx.QueryParams(self._auth() + list(form)).__str__().encode()
        resp = transport.request(self._http, "POST", path, what=what, content=body,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        if resp.status_code in (200, 201):
            return transport.json_of(resp, what)
        raise transport.error_for(resp, what)

    def post_request(self, form: list[tuple[str, str]]) -> Any:
        """POST requests.json; the decoded answer (normally [{"service_request_id": ...}])."""
        return self._post(REQUESTS, form, "open311: create request")

    def post_update(self, form: list[tuple[str, str]]) -> Any:
        """POST servicerequestupdates.json (the council's own update on a request)."""
        return self._post(UPDATES, form, "open311: post update")

    def get_updates(self, start_date: datetime) -> Any:
        """GET servicerequestupdates.json?start_date=…; the decoded answer."""
        what = "open311: poll updates"
        params = self._auth() + [("start_date", start_date.isoformat())]
        resp = transport.request(self._http, "GET", UPDATES, what=what, params=params)
        if resp.status_code == 200:
            return transport.json_of(resp, what)
        raise transport.error_for(resp, what)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
