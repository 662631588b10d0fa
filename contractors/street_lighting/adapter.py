"""StreetLightingAdapter: composes the pure mapping with the client; takes pushes and polls."""
from __future__ import annotations

import json
from collections.abc import Mapping

import httpx

from contractors.base import ContractorAdapter, ContractorError, PayloadError, StatusUpdate, SubmitResult, \
    UpdateBatch, WorkOrder
from contractors.street_lighting import mapping
from contractors.street_lighting.client import StreetLightingClient
from contractors.street_lighting.config import StreetLightingConfig


class StreetLightingAdapter(ContractorAdapter):
    """A street-lighting contractor's JSON API (orders, signed webhooks, an update feed with a cursor)."""

    name = "street_lighting"
    config_model = StreetLightingConfig
    statuses = mapping.STATUSES
    supports_push = True
    supports_poll = True

    def __init__(self, config: StreetLightingConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self.status_map = dict(config.status_map) if config.status_map is not None else dict(
            mapping.DEFAULT_STATUS_MAP)
        self.priority_map = {**mapping.DEFAULT_PRIORITY_MAP, **(config.priority_map or {})}
        self.client = StreetLightingClient(config, transport)

    def submit(self, order: WorkOrder) -> SubmitResult:
        """POST the order under its idempotency key; a repeat or a duplicate gives the existing reference."""
        answer, existed = self.client.create_order(mapping.order_json(order, self.priority_map),
                                                   order.idempotency_key)
        try:
            return mapping.submit_result(answer, already_existed=existed)
        except PayloadError as exc:
            # Safe to retry: the same key can never make a second order.
            raise ContractorError(f"street lighting: unreadable order answer: {exc}", retryable=True) from exc

    def cancel(self, contractor_ref: str, reason: str) -> None:
        """Withdraw the order (their feed then reports CANCELLED)."""
        self.client.cancel_order(contractor_ref, reason)

    def fetch_updates(self, cursor: str | None) -> UpdateBatch:
        """One page of their update feed after `cursor`."""
        data = self.client.get_updates(cursor, self.config.page_size)
        try:
            updates = mapping.updates_from_json(data, self.status_map)
        except PayloadError as exc:
            raise ContractorError(f"street lighting: unreadable update feed: {exc}", retryable=True) from exc
        next_cursor = data.get("cursor")
        return UpdateBatch(updates=tuple(updates), cursor=str(next_cursor) if next_cursor is not None else cursor,
                           has_more=bool(data.get("has_more")))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[StatusUpdate]:
        """Verify the signature (SignatureError) and read the pushed updates (PayloadError), in sequence order."""
        self.client.verify_push(headers, body)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise PayloadError(f"pushed body is not JSON: {exc}") from None
        return mapping.updates_from_json(data, self.status_map)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
