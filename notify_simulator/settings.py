"""Simulator settings from NOTIFY_SIM_* environment variables (flags override them)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "server" / "notifications" / "templates.yaml"


@dataclass(frozen=True)
class NotifySimSettings:
    """Which service it is (from an API key), where receipts and replies go, where messages are kept."""

    api_key: str
    host: str = "127.0.0.1"
    port: int = 8102
    receipt_url: str = ""
    inbound_url: str = ""
    callback_token: str = ""
    receipt_delay_seconds: float = 0.2
    log_file: str = ""
    templates_file: str = str(DEFAULT_TEMPLATES)
    log_level: str = "warning"

    @property
    def service_id(self) -> str:
        # The same split as notifications-python-client: {key name}-{service id}-{secret}.
        return self.api_key[-73:-37]

    @property
    def secret(self) -> str:
        return self.api_key[-36:]


def from_env(env=None) -> NotifySimSettings:
    """Settings from NOTIFY_SIM_* variables."""
    env = os.environ if env is None else env
    return NotifySimSettings(
        api_key=env.get("NOTIFY_SIM_API_KEY", ""), host=env.get("NOTIFY_SIM_HOST", "127.0.0.1"),
        port=int(env.get("NOTIFY_SIM_PORT", "8102")), receipt_url=env.get("NOTIFY_SIM_RECEIPT_URL", ""),
        inbound_url=env.get("NOTIFY_SIM_INBOUND_URL", ""), callback_token=env.get("NOTIFY_SIM_CALLBACK_TOKEN", ""),
        receipt_delay_seconds=float(env.get("NOTIFY_SIM_RECEIPT_DELAY", "0.2")),
        log_file=env.get("NOTIFY_SIM_LOG", ""), templates_file=env.get("NOTIFY_SIM_TEMPLATES", str(DEFAULT_TEMPLATES)))


def from_args(argv: list[str] | None = None) -> NotifySimSettings:
    """Flags over the environment."""
    base = from_env()
    p = argparse.ArgumentParser(prog="python -m notify_simulator")
    p.add_argument("--port", type=int, default=base.port)
    p.add_argument("--log-file", default=base.log_file)
    a = p.parse_args(argv)
    if len(base.api_key) < 74:
        p.error("NOTIFY_SIM_API_KEY must be a Notify API key ({name}-{service id}-{secret})")
    return replace(base, port=a.port, log_file=a.log_file)
