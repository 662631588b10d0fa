"""Settings for one street-lighting contractor (stored as the contractor row's config JSON)."""
from __future__ import annotations

from pydantic import Field, SecretStr

from contractors._config import HttpUrl, StrictConfig


class StreetLightingConfig(StrictConfig):
    """base_url, credentials, timeout and optional overrides of the status and priority maps."""

    base_url: HttpUrl
    api_key: SecretStr = Field(min_length=1)  # sent as `Authorization: Bearer`
    webhook_secret: SecretStr = Field(min_length=8)  # verifies their pushes
    request_secret: SecretStr | None = None  # signs our requests; defaults to webhook_secret
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    page_size: int = Field(default=100, ge=1, le=1000)
    # When given, replaces the default map entirely, so it must cover every contractor status.
    status_map: dict[str, str] | None = None
    priority_map: dict[str, str] | None = None  # our priority → theirs; merged over the default
    signature_tolerance_s: int = Field(default=300, ge=1)

    def signing_secret(self) -> str:
        """The secret our requests are signed with."""
        return (self.request_secret or self.webhook_secret).get_secret_value()
