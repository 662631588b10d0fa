"""Shared HTTP plumbing for adapter clients: one place that turns transport failures into ContractorError.

Knows no URLs and no auth (each adapter's client.py does). Rules: timeouts, connection errors,
5xx, 408, 425 and 429 are retryable; any other 4xx is not; a 2xx we cannot read is retryable
(our requests are idempotent, so trying again is safe).
"""
from __future__ import annotations

from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any

import httpx

from contractors.base import ContractorError

RETRYABLE_4XX = frozenset({408, 425, 429})


def request(client: httpx.Client, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
    """Send one request; raise ContractorError(retryable=True) for timeouts and connection failures."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise ContractorError(f"{what}: timed out ({type(exc).__name__})", retryable=True) from exc
    except httpx.TransportError as exc:
        raise ContractorError(f"{what}: connection failed ({type(exc).__name__}: {exc})", retryable=True) from exc


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def error_for(response: httpx.Response, what: str, detail: str | None = None) -> ContractorError:
    """The ContractorError an error response means."""
    code = response.status_code
    text = detail if detail is not None else response.text[:300].strip()
    return ContractorError(f"{what}: HTTP {code}" + (f": {text}" if text else ""),
                           retryable=code >= 500 or code in RETRYABLE_4XX, status_code=code,
                           retry_after=retry_after(response))


def json_of(response: httpx.Response, what: str) -> Any:
    """The JSON body of a successful response; unreadable → retryable ContractorError."""
    try:
        return response.json()
    except ValueError as exc:
        raise ContractorError(f"{what}: HTTP {response.status_code} with a body that is not JSON",
                              retryable=True, status_code=response.status_code) from exc
