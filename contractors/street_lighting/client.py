"""Transport to the street-lighting contractor: the only module that knows its URLs and auth.

Every request carries `Authorization: Bearer <api_key>` and an HMAC signature of its body
(contractors.signing); POST /orders carries `Idempotency-Key`. No retries here — the outbox
owns backoff; this module only says, through ContractorError.retryable, whether one makes sense.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from contractors import signing, transport
from contractors.base import ContractorError
from contractors.street_lighting.config import StreetLightingConfig

ORDERS = "/orders"
UPDATES = "/updates"


def encode(payload: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces), so a retry signs and sends identical bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class StreetLightingClient:
    """HTTP client for one contractor endpoint (thread-safe; one connection pool)."""

    def __init__(self, config: StreetLightingConfig, transport_: httpx.BaseTransport | None = None):
        self.config = config
        self._http = httpx.Client(base_url=config.base_url, timeout=httpx.Timeout(config.timeout_s),
                                  transport=transport_, headers={"Accept": "application/json"})

    def _send(self, method: str, path: str, *, what: str, payload: Any = None,
              params: Mapping[str, Any] | None = None, idempotency_key: str | None = None) -> httpx.Response:
        body = encode(payload) if payload is not None else b""
        headers = {"Authorization": f"Bearer {self.config.api_key.get_secret_value()}",
                   **signing.sign(self.config.signing_secret(), body)}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return transport.request(self._http, method, path, what=what, content=body, params=params, headers=headers)

    def create_order(self, payload: Mapping[str, Any], idempotency_key: str) -> tuple[dict, bool]:
        """POST the order; (their answer, already_existed). A 409 duplicate answer names the existing order."""
        what = "street lighting: create order"
        resp = self._send("POST", ORDERS, what=what, payload=payload, idempotency_key=idempotency_key)
        if resp.status_code in (200, 201):
            replayed = resp.headers.get("idempotent-replayed", "").lower() == "true"
            return transport.json_of(resp, what), replayed
        if resp.status_code == 409:
            try:
                data = resp.json()
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("reference"):
                return data, True
        raise transport.error_for(resp, what)

    def cancel_order(self, reference: str, reason: str) -> dict:
        """DELETE the order with a reason; cancelling a cancelled order is fine."""
        what = f"street lighting: cancel {reference}"
        resp = self._send("DELETE", f"{ORDERS}/{_segment(reference)}", what=what, payload={"reason": reason})
        if resp.status_code in (200, 202, 204):
            return transport.json_of(resp, what) if resp.content else {}
        raise transport.error_for(resp, what)

    def get_order(self, reference: str) -> dict:
        """Their current view of one order (for diagnostics)."""
        what = f"street lighting: get {reference}"
        resp = self._send("GET", f"{ORDERS}/{_segment(reference)}", what=what)
        if resp.status_code == 200:
            return transport.json_of(resp, what)
        raise transport.error_for(resp, what)

    def get_updates(self, cursor: str | None, limit: int) -> dict:
        """One page of updates after `cursor`: {"updates": [...], "cursor": str, "has_more": bool}."""
        what = "street lighting: poll updates"
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = self._send("GET", UPDATES, what=what, params=params)
        if resp.status_code == 200:
            data = transport.json_of(resp, what)
            if not isinstance(data, dict):
                raise ContractorError(f"{what}: answer is not an object", retryable=True, status_code=200)
            return data
        raise transport.error_for(resp, what)

    def verify_push(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise SignatureError unless a pushed request is signed with our webhook secret."""
        signing.verify(self.config.webhook_secret.get_secret_value(), headers, body,
                       tolerance_s=self.config.signature_tolerance_s)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def _segment(reference: str) -> str:
    # Quote fully so a reference can never change the path.
    if not reference or reference in (".", ".."):
        raise ContractorError(f"bad contractor reference {reference!r}", retryable=False)
    return quote(reference, safe="")
