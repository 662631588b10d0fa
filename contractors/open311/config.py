"""Settings for one Open311 GeoReport v2 back office."""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from contractors._config import HttpUrl, StrictConfig


class Open311Config(StrictConfig):
    """Endpoint, key, category → service_code map, the council's email and optional overrides."""

    base_url: HttpUrl  # the endpoint root: requests.json etc. are appended
    api_key: SecretStr = Field(min_length=1)
    jurisdiction_id: str | None = None
    service_codes: dict[str, str] = Field(min_length=1)  # our category code → their service_code
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")  # the council, as the reporting party
    external_id_attribute: str = Field(default="kerbside_id", min_length=1)  # carries our idempotency key
    asset_attribute: str | None = "asset_id"  # carries the asset reference, when the job has one
    send_answers: bool = True  # our category answers as attribute[<question code>]
    # When given, replaces the default map entirely; statuses beyond the extended set may be added.
    status_map: dict[str, str] | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    initial_lookback_hours: float = Field(default=24.0, gt=0)  # first poll, before any cursor exists
    naive_timezone: str = "Europe/London"  # for back offices that send times without an offset
    cancel_via_update: bool = True  # cancel = POST servicerequestupdates.json with status CLOSED

    @field_validator("naive_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value
