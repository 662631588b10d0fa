"""Kerbside command line: migrate, import GIS data, seed demo data, manage tokens."""
from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Kerbside administration",
                  pretty_exceptions_enable=False)
token_app = typer.Typer(no_args_is_help=True, help="Create and revoke API tokens")
app.add_typer(token_app, name="token")
err = Console(stderr=True)


def _register_import() -> None:
    from server.assets.cli import import_gis

    app.command("import-gis")(import_gis)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply Alembic migrations up to head."""
    from alembic import command
    from alembic.config import Config

    from server.config import REPO_ROOT

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "server" / "migrations"))
    try:
        command.upgrade(cfg, "head")
    except Exception as exc:  # one clear line, not a traceback
        _fail(f"migration failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    err.print("[green]database schema is up to date[/]")


@app.command()
def seed() -> None:
    """Sync the category catalogue and insert the demo crews and contractors (idempotent)."""
    from server.catalogue.service import sync_to_db
    from server.db import new_session
    from server.dispatch.seed import seed_demo

    with new_session() as s:
        n = sync_to_db(s)
        seed_demo(s)
        s.commit()
    err.print(f"[green]{n} categories synced; demo crews and contractors are in place[/]")


@app.command()
def setup(ctx: typer.Context) -> None:
    """Everything a fresh database needs: migrate, import the GIS data, seed (each idempotent)."""
    ctx.invoke(migrate)
    from server.assets.cli import import_gis

    ctx.invoke(import_gis, only=None)
    ctx.invoke(seed)


@app.command("demo-tokens")
def demo_tokens(out: Optional[str] = typer.Option(None, help="also write NAME=token lines to this file")) -> None:
    """Revoke the previous demo tokens and make one per role; print them as a table."""
    from datetime import datetime, timezone

    from rich.table import Table
    from sqlalchemy import select

    from server.auth.models import ApiToken
    from server.auth.tokens import create_token
    from server.db import new_session

    wanted = [("field_worker", {}), ("crew", {"crew": "cleansing_north"}), ("advisor", {}), ("supervisor", {}),
              ("contractor", {"contractor": "street-lighting"}), ("admin", {})]
    made = []
    with new_session() as s:
        for row in s.scalars(select(ApiToken).where(ApiToken.name.like("demo-%"), ApiToken.revoked_at.is_(None))):
            row.revoked_at = datetime.now(timezone.utc)
        for role, scope in wanted:
            _, secret = create_token(s, role, name=f"demo-{role}", **scope)
            made.append((role, scope, secret))
        s.commit()
    table = Table(title="Demo tokens (new each start; the previous ones are revoked)")
    table.add_column("role")
    table.add_column("scope")
    table.add_column("token", no_wrap=True, overflow="ignore")
    for role, scope, secret in made:
        table.add_row(role, ", ".join(f"{k}={v}" for k, v in scope.items()), secret)
    Console(width=120).print(table)
    if out:
        with open(out, "w") as fh:
            for role, _, secret in made:
                fh.write(f"KERBSIDE_DEMO_TOKEN_{role.upper()}={secret}\n")


@app.command("simulator-env")
def simulator_env(contractor: str = typer.Argument(..., help="contractor name, e.g. street-lighting"),
                  step_seconds: float = typer.Option(20.0, help="seconds per status step in the simulator")) -> None:
    """Print the SIM_* environment that makes a simulator act as this contractor (secrets from the DB)."""
    from urllib.parse import urlparse

    from sqlalchemy import select

    from server.config import get_settings
    from server.db import new_session
    from server.dispatch.models import Contractor

    with new_session() as s:
        c = s.scalar(select(Contractor).where(Contractor.name == contractor))
    if c is None:
        _fail(f"no contractor named {contractor!r}")
    cfg = c.config or {}
    missing = [k for k in ("base_url", "api_key", "webhook_secret") if not cfg.get(k)]
    if missing:
        _fail(f"contractor {contractor!r} has no {', '.join(missing)} in its config")
    settings = get_settings()
    env = {
        "SIM_PORT": str(urlparse(cfg["base_url"]).port or 80),
        "SIM_API_KEY": cfg["api_key"],
        "SIM_SECRET": cfg.get("request_secret") or cfg["webhook_secret"],
        "SIM_WEBHOOK_SECRET": cfg["webhook_secret"],
        "SIM_STEP_SECONDS": str(step_seconds),
        "SIM_CALLBACK_URL": f"http://{settings.host}:{settings.port}",
        "SIM_CALLBACK_PATH": f"/api/v1/contractors/{c.name}/webhook",
        "SIM_REF_PREFIX": "".join(w[0] for w in c.name.split("-")).upper() or "SIM",
    }
    for k, v in env.items():
        sys.stdout.write(f"{k}={v}\n")


@token_app.command("create")
def token_create(
    role: str = typer.Option(..., help="field_worker, crew, advisor, supervisor, contractor, admin or open311_client"),
    contractor: Optional[str] = typer.Option(None, help="contractor name (contractor tokens)"),
    crew: Optional[str] = typer.Option(None, help="crew name (crew tokens)"),
    name: Optional[str] = typer.Option(None, help="a label for the token; for open311_client the client's name "
                                                 "(e.g. fixmystreet), which owns its requests"),
) -> None:
    """Create a token and print it (only the token) on stdout."""
    from server.auth.tokens import create_token
    from server.db import new_session
    from server.errors import DomainError

    with new_session() as s:
        try:
            _, secret = create_token(s, role, name=name, contractor=contractor, crew=crew)
        except DomainError as exc:
            _fail(exc.detail)
        s.commit()
    sys.stdout.write(secret + "\n")


@token_app.command("revoke")
def token_revoke(token: str = typer.Argument(..., help="token id, the token or its printed prefix")) -> None:
    """Revoke a token."""
    from server.auth.tokens import revoke
    from server.db import new_session

    with new_session() as s:
        n = revoke(s, token)
        s.commit()
    if n == 0:
        _fail("no live token matched")
    err.print(f"revoked {n} token(s)")


@app.command("notify-simulator-env")
def notify_simulator_env() -> None:
    """Print NOTIFY_SIM_* lines that make the Notify simulator act as our Notify service."""
    from server.config import get_settings

    s = get_settings()
    base = s.public_base_url.rstrip("/")
    for name, value in (("API_KEY", s.notify_api_key), ("PORT", s.notify_simulator_port),
                        ("RECEIPT_URL", f"{base}/api/v1/notify/receipts"),
                        ("INBOUND_URL", f"{base}/api/v1/notify/inbound-sms"),
                        ("CALLBACK_TOKEN", s.notify_callback_token)):
        sys.stdout.write(f"NOTIFY_SIM_{name}={value}\n")


contact_app = typer.Typer(no_args_is_help=True, help="Reporters' contact details")
app.add_typer(contact_app, name="contact")


@contact_app.command("erase")
def contact_erase(
    report: Optional[str] = typer.Option(None, help="erase the contact of this report (R-001234)"),
    email: Optional[str] = typer.Option(None, help="erase this email address's contact from every report"),
    phone: Optional[str] = typer.Option(None, help="erase this phone number's contact from every report"),
) -> None:
    """Erase a person on request: their name, email and phone go; reports, jobs and history stay."""
    from server.db import new_session
    from server.notifications.contacts import erase_person

    if sum(v is not None for v in (report, email, phone)) != 1:
        _fail("give exactly one of --report, --email, --phone")
    with new_session() as s:
        n = erase_person(s, report=report, email=email, phone=phone, actor="cli:erase", role="admin")
    err.print(f"erased {n} contact(s)")
    sys.stdout.write(f"{n}\n")


_register_import()

if __name__ == "__main__":
    app()
