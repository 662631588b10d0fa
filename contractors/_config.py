"""Small pieces shared by adapter config models."""
from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict


def _http_url(value: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class StrictConfig(BaseModel):
    """Unknown settings are an error (a typo should not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
