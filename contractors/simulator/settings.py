"""Simulator settings: SIM_* environment variables, overridden by command-line flags."""
from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace

# Settings that may change at run time through POST /_control/config.
MUTABLE = ("step_seconds", "callback_url", "callback_path", "callback_token", "push_retries", "push_backoff_s")
SECRET = ("api_key", "secret", "webhook_secret", "open311_api_key", "callback_token")


@dataclass(frozen=True)
class SimSettings:
    """Everything the simulator can be told; defaults suit `make run` and the demo contractor config."""

    host: str = "127.0.0.1"
    port: int = 8100
    api_key: str = "sim-api-key"  # street-lighting API: Authorization: Bearer <api_key>
    secret: str = "sim-shared-secret"  # verifies our signed requests
    webhook_secret: str | None = None  # signs its pushes; defaults to `secret`
    verify_signatures: bool = True
    step_seconds: float = 0.0  # seconds per status step; 0 = only on POST /_control/advance
    callback_url: str | None = None  # our server's base URL; pushes go to callback_url + callback_path
    callback_path: str = "/api/v1/contractor/updates"
    callback_token: str | None = None  # bearer token for the pushes
    push_retries: int = 3
    push_backoff_s: float = 0.5  # doubled after each failed attempt
    seed: int | None = 0  # fault RNG seed (reproducible runs); None = random
    ref_prefix: str = "BSL"
    open311_api_key: str | None = None  # defaults to api_key
    external_id_attribute: str = "kerbside_id"  # Open311 attribute the back office deduplicates on
    public_url: str | None = None  # for photo URLs; defaults to http://host:port
    log_level: str = "warning"

    @property
    def push_secret(self) -> str:
        """The secret pushes are signed with."""
        return self.webhook_secret or self.secret

    @property
    def base_url(self) -> str:
        """Where the simulator says it lives (photo URLs)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def public(self) -> dict:
        """Settings without secrets (for GET /_control/state)."""
        return {k: ("***" if k in SECRET and v else v) for k, v in asdict(self).items()}

    def with_changes(self, changes: Mapping[str, object]) -> SimSettings:
        """A copy with run-time changes (only MUTABLE keys)."""
        bad = sorted(set(changes) - set(MUTABLE))
        if bad:
            raise ValueError(f"cannot change {', '.join(bad)} at run time (only {', '.join(MUTABLE)})")
        return replace(self, **{k: _convert(k, v) for k, v in changes.items()})


def _convert(name: str, value: object) -> object:
    if value is None or value == "":
        return None if name in ("webhook_secret", "callback_url", "callback_token", "seed", "open311_api_key",
                                "public_url") else _default(name)
    kind = {f.name: f.type for f in fields(SimSettings)}[name]
    if "bool" in kind:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    if "int" in kind:
        return int(value)
    if "float" in kind:
        return float(value)
    return str(value)


def _default(name: str) -> object:
    return {f.name: f.default for f in fields(SimSettings)}[name]


def from_env(env: Mapping[str, str] | None = None) -> SimSettings:
    """Settings from SIM_<NAME> variables (e.g. SIM_PORT, SIM_STEP_SECONDS, SIM_CALLBACK_URL)."""
    env = os.environ if env is None else env
    values = {}
    for f in fields(SimSettings):
        key = f"SIM_{f.name.upper()}"
        if key in env:
            values[f.name] = _convert(f.name, env[key])
    return SimSettings(**values)


def from_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> SimSettings:
    """Environment first, then flags (--port, --step-seconds, --callback-url, … one per setting)."""
    parser = argparse.ArgumentParser(prog="python -m contractors.simulator", description=__doc__)
    for f in fields(SimSettings):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                            help=f"(env SIM_{f.name.upper()}, default {f.default!r})")
    args = parser.parse_args(argv)
    base = from_env(env)
    given = {k: _convert(k, v) for k, v in vars(args).items() if v is not None}
    return replace(base, **given)
