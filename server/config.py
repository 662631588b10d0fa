"""One typed settings class for every Kerbside process (KERBSIDE_* environment variables)."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# Values that only make sense on a developer's machine; production refuses them.
DEMO_SECRET = "kerbside-demo-secret-change-me"
# A well-formed Notify key for the simulator only (key name, service id, secret).
DEMO_NOTIFY_KEY = "kerbside_demo-5b1a0c3e-7d2f-4e8a-9c61-2f4b8d0e1a73-0e9f7c2a-4b6d-4f1e-8a35-c7d2e9b0f614"
# A web origin: scheme, host and an optional port, nothing else (browsers send exactly this in Origin).
ORIGIN = re.compile(r"https?://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?")


class Settings(BaseSettings):
    """Settings for the API, the worker, the CLI and the simulator."""

    # .data/local.env is written by scripts/pg.sh (generated DB password); .env is the operator's.
    model_config = SettingsConfigDict(
        env_prefix="KERBSIDE_", env_file=(REPO_ROOT / ".data" / "local.env", REPO_ROOT / ".env"), extra="ignore"
    )

    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://kerbside@127.0.0.1:54329/kerbside"
    # Sized to the request threadpool (anyio: 40 threads), so busy workers never churn connections.
    db_pool_size: int = Field(20, ge=1, le=200)
    # The API's async pool (the intake and the job page run on it, server/db.py open_async_pool): at most this
    # many connections per API process. Those requests use CPU while they hold one, so more connections than
    # cores only moves the queue from the pool (an await) into the kernel's run queue, where PostgreSQL
    # backends and API workers preempt each other: by default one per CPU core, so two workers on two cores
    # keep four backends busy (bench/RESULTS.md, issue 16: p99 of the job page and PostgreSQL CPU per request).
    db_async_pool_size: int = Field(default_factory=lambda: max(2, os.cpu_count() or 2), ge=1, le=200)
    # Statements of reports sent together (group commit, server/reports/batch.py) each API process has in flight
    # at once. One: the reports that arrive while it runs wait for the next, so batches grow with the load (in an
    # A/B at 1M lamp columns, 1 against 2: 1,433 against 1,370 reports a second, less CPU per report in the app
    # and in PostgreSQL). At most the async pool's size.
    intake_batch_senders: int = Field(1, ge=1, le=200)
    # Under load (the last batch held at least 4 reports), a sender that finds fewer than half as many waiting
    # waits this long once for the reports on their way (their devices have just had their answers), so that
    # what would be two statements is one, with less work per report. A report with no load before it is sent
    # at once. 0: never wait. In four A/Bs at 1M lamp columns (alternating rounds, medians of the rounds' ratios)
    # 0.5, 1, 2 and again 1 ms served 1 %, 8 %, 5 % and 1 % more reports a second than not waiting, with less CPU
    # per report in the app in each: a small gain, within the machine's noise in two of the four.
    intake_batch_linger_ms: float = Field(1.0, ge=0, le=50)
    # How long a request waits for a free pooled connection before it is answered 503 (a stalled or
    # overloaded database must not pile up requests without bound).
    db_pool_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # A pooled connection idle longer than this is pinged before use (a restarted database is survived);
    # one in constant use is not (the ping was a third of the API's database round trips under load).
    db_ping_idle_seconds: float = Field(1.0, ge=0, le=3600)
    # Geometry is stored projected (metres) so distances and KNN are cheap and exact enough.
    srid: int = 27700
    gis_data_dir: Path = REPO_ROOT.parent / "shared" / "gis"
    gis_manifest: Path = REPO_ROOT / "gis_data" / "manifest.yaml"
    catalogue_file: Path = REPO_ROOT / "gis_data" / "categories.yaml"
    zones_file: Path = REPO_ROOT / "gis_data" / "zones.yaml"
    dispatch_rules_file: Path = REPO_ROOT / "gis_data" / "dispatch.yaml"
    council_name: str = "Bath & North East Somerset Council"
    # Bank holidays come from the `holidays` library for this UK subdivision.
    holiday_country: str = "GB"
    holiday_subdivision: str = "ENG"
    timezone: str = "Europe/London"
    photo_root: Path = REPO_ROOT / ".data" / "photos"
    max_photo_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    webhook_secret: str = DEMO_SECRET
    public_base_url: str = "http://127.0.0.1:8000"
    worker_heartbeat_seconds: int = Field(15, ge=1)
    sla_sweep_seconds: int = Field(60, ge=1)
    # A crew completion further than this from the asset (or the job's place) is accepted but flagged.
    completion_max_distance_m: float = Field(50.0, gt=0)
    # Contractor simulators for the demo contractors (seeded base_url http://127.0.0.1:PORT).
    simulator_port: int = Field(8100, ge=1, le=65535)
    green_spaces_simulator_port: int = Field(8101, ge=1, le=65535)
    # Durable delivery: attempts before a message is dead, and exponential backoff with jitter.
    outbox_interval_seconds: float = Field(2.0, gt=0)
    outbox_max_attempts: int = Field(10, ge=1)
    outbox_backoff_base_seconds: float = Field(2.0, gt=0)
    outbox_backoff_cap_seconds: float = Field(600.0, gt=0)
    contractor_poll_seconds: float = Field(15.0, gt=0)
    # Open311 GeoReport v2: the one jurisdiction served (a request naming another is a 404).
    open311_jurisdiction_id: str = "bathnes.gov.uk"
    # A POST requests without an external id (attribute[fixmystreet_id]) that repeats, field for field and
    # photo for photo, one the same client sent within this many hours answers the original (a re-send).
    open311_resend_window_hours: float = Field(24.0, ge=0, le=24 * 30)
    # OGC API Features: asset layers and wards readable without a token (jobs always need one).
    ogc_public_assets: bool = True
    # CORS (server/cors.py): origins (scheme://host[:port], comma-separated, or *) whose pages may read the
    # public endpoints (/ogc, /open311 GETs, /healthz); none by default. Credentials (a bearer token, cookies)
    # only with cors_credentials; /api/v1 only with cors_api.
    cors_origins: Annotated[list[str], NoDecode] = []
    cors_credentials: bool = False
    cors_api: bool = False
    # Contact centre: CRM webhook URLs on private/loopback addresses are refused unless this is set
    # (the tests need loopback); production refuses it.
    allow_private_webhook_urls: bool = False
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # Dashboard base map (XYZ tiles); empty for none: the asset and ward layers still work alone.
    map_tiles_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    map_tiles_attribution: str = "© OpenStreetMap contributors"
    log_level: str = "INFO"
    # json: one JSON object per line with the request id; text: the same, human-readable.
    log_format: Literal["json", "text"] = "json"
    # /metrics: with a token, `Authorization: Bearer <token>`; without one, loopback callers only.
    metrics_token: str = ""
    # Unknown/revoked/expired tokens per client address before 429 (a `limits` rate string, e.g. 20/minute).
    auth_failure_rate: str = "20/minute"
    # Reporter contact: erased this many days after the report (the worker sweeps it).
    contact_retention_days: int = Field(395, ge=1, le=3650)
    # GOV.UK Notify: API key (name-serviceid-secret), base URL (the simulator in development), the bearer token
    # Notify sends with its callbacks, and the hours when no texts go out (Europe/London; they wait).
    notify_api_key: str = DEMO_NOTIFY_KEY
    notify_base_url: str = "http://127.0.0.1:8102"
    notify_simulator_port: int = Field(8102, ge=1, le=65535)
    notify_callback_token: str = DEMO_SECRET
    notify_quiet_start: str = Field("21:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    notify_quiet_end: str = Field("08:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

    @field_validator("auth_failure_rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        from limits import parse

        try:
            parse(v)
        except ValueError as exc:
            raise ValueError(f"auth_failure_rate must read like '20/minute': {exc}") from None
        return v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, v: object) -> list[str]:
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v or [])
        out = []
        for item in filter(None, items):
            origin = item.rstrip("/").lower()
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ValueError(f"cors_origins: {item!r} is not an origin like https://maps.example.org[:port]")
            out.append(origin)
        return out

    @model_validator(mode="after")
    def _refuse_star_with_credentials(self) -> "Settings":
        if self.cors_credentials and "*" in self.cors_origins:
            raise ValueError("KERBSIDE_CORS_CREDENTIALS needs a list of origins, not *: any site could act for "
                             "a signed-in user")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        if self.env == "production":
            problems = []
            if self.webhook_secret == DEMO_SECRET or len(self.webhook_secret) < 32:
                problems.append("KERBSIDE_WEBHOOK_SECRET must be set to a random value of 32+ characters")
            if "127.0.0.1" in self.database_url or "localhost" in self.database_url:
                problems.append("KERBSIDE_DATABASE_URL points at a local development database")
            if self.allow_private_webhook_urls:
                problems.append("KERBSIDE_ALLOW_PRIVATE_WEBHOOK_URLS must be off in production")
            if self.metrics_token and len(self.metrics_token) < 32:
                problems.append("KERBSIDE_METRICS_TOKEN must be 32+ random characters (or empty: loopback only)")
            if self.public_base_url.startswith("http://"):
                problems.append("KERBSIDE_PUBLIC_BASE_URL must be https in production")
            if self.notify_api_key == DEMO_NOTIFY_KEY or self.notify_callback_token == DEMO_SECRET:
                problems.append("KERBSIDE_NOTIFY_API_KEY and KERBSIDE_NOTIFY_CALLBACK_TOKEN must be set")
            if problems:
                raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
