"""Open311Adapter: jobs out as GeoReport v2 service requests, progress in by polling the updates extension."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx

from contractors.base import (ContractorAdapter, ContractorError, ContractorNote, PayloadError, SubmitResult,
                             UpdateBatch, WorkOrder)
from contractors.open311 import mapping
from contractors.open311.client import Open311Client
from contractors.open311.config import Open311Config


class Open311Adapter(ContractorAdapter):
    """Any GeoReport v2 back office. No pushes (Open311 has none): the server polls `fetch_updates`."""

    name = "open311"
    config_model = Open311Config
    supports_push = False
    supports_poll = True

    def __init__(self, config: Open311Config, transport: httpx.BaseTransport | None = None):
        self.config = config
        if config.status_map is not None:
            self.status_map = {mapping.normalise_status(k): v for k, v in config.status_map.items()}
        else:
            self.status_map = dict(mapping.DEFAULT_STATUS_MAP)
        # The extended set always, plus whatever local statuses this back office was configured with.
        self.statuses = tuple(dict.fromkeys([*mapping.STATUSES, *self.status_map]))
        self.client = Open311Client(config, transport)

    def submit(self, order: WorkOrder) -> SubmitResult:
        """POST requests.json; the back office deduplicates on the external id attribute (our idempotency key)."""
        code = self.config.service_codes.get(order.category)
        if code is None:
            raise ContractorError(f"open311: no service_code configured for category {order.category!r}",
                                  retryable=False)
        form = mapping.request_form(order, service_code=code, email=self.config.email,
                                    external_id_attribute=self.config.external_id_attribute,
                                    asset_attribute=self.config.asset_attribute,
                                    send_answers=self.config.send_answers)
        answer = self.client.post_request(form)
        try:
            ref = mapping.service_request_id(answer)
        except PayloadError as exc:
            raise ContractorError(f"open311: {exc}", retryable=True) from exc
        return SubmitResult(contractor_ref=ref, accepted_at=datetime.now(timezone.utc))

    def cancel(self, contractor_ref: str, reason: str) -> None:
        """Close the request with the reason (servicerequestupdates POST); refused if so configured."""
        if not self.config.cancel_via_update:
            raise ContractorError("open311: this back office takes no cancellations (cancel_via_update is off)",
                                  retryable=False)
        self.client.post_update([
            ("service_request_id", contractor_ref),
            ("update_id", f"kerbside-cancel-{contractor_ref}"),  # stable, so a repeat is the same update
            ("updated_datetime", datetime.now(timezone.utc).replace(microsecond=0).isoformat()),
            ("status", "CLOSED"),
            ("description", f"Cancelled by the council: {reason}"),
            ("email", self.config.email),
        ])

    def add_note(self, contractor_ref: str, note: ContractorNote) -> bool:
        """The comment as a servicerequestupdates POST with status OPEN (FixMyStreet's shape for a comment)."""
        form = [
            ("service_request_id", contractor_ref),
            ("update_id", note.update_id),
            ("updated_datetime", datetime.now(timezone.utc).replace(microsecond=0).isoformat()),
            ("status", "OPEN"),
            ("description", (note.text or "(photo)")[: mapping.DESCRIPTION_MAX]),
            ("email", self.config.email),
            *(("media_url", url) for url in note.media_urls),
        ]
        self.client.post_update(form)
        return True

    def fetch_updates(self, cursor: str | None) -> UpdateBatch:
        """Updates since the cursor's time, minus those already seen at exactly that time."""
        current = mapping.Cursor.decode(cursor)
        start = current.after if current else (
            datetime.now(timezone.utc) - timedelta(hours=self.config.initial_lookback_hours)).replace(microsecond=0)
        answer = self.client.get_updates(start)
        try:
            items = [mapping.update_from_json(i, self.status_map, self.config.naive_timezone)
                     for i in mapping.updates_list(answer)]
        except PayloadError as exc:
            raise ContractorError(f"open311: unreadable updates: {exc}", retryable=True) from exc
        fresh, after = mapping.select_new(current, items)
        return UpdateBatch(updates=tuple(fresh), cursor=after.encode() if after else cursor)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
