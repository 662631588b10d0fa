"""Settings refuse unsafe production values; docker-compose points at real modules."""
import importlib
import importlib.util
import os
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_production_refuses_demo_secrets_and_local_database(monkeypatch):
    with pytest.raises(ValidationError) as exc:
        Settings(_env_file=None, env="production")
    msg = str(exc.value)
    assert "KERBSIDE_WEBHOOK_SECRET" in msg and "KERBSIDE_DATABASE_URL" in msg


def test_production_accepts_real_values():
    s = Settings(_env_file=None, env="production", webhook_secret="x" * 40,
                 database_url="postgresql+psycopg://k:p@db.internal:5432/kerbside",
                 public_base_url="https://kerbside.council.example",
                 notify_api_key="council-" + "1" * 36 + "-" + "2" * 36, notify_callback_token="y" * 40)
    assert s.env == "production" and s.srid == 27700


def test_settings_come_from_kerbside_environment_variables(monkeypatch):
    monkeypatch.setenv("KERBSIDE_PORT", "8123")
    monkeypatch.setenv("KERBSIDE_SRID", "3857")
    s = Settings(_env_file=None)
    assert s.port == 8123 and s.srid == 3857
    monkeypatch.setenv("KERBSIDE_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_the_async_pool_is_one_connection_per_core_unless_set(monkeypatch):
    monkeypatch.delenv("KERBSIDE_DB_ASYNC_POOL_SIZE", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert Settings(_env_file=None).db_async_pool_size == 8
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown, or one core: still two
    assert Settings(_env_file=None).db_async_pool_size == 2
    monkeypatch.setenv("KERBSIDE_DB_ASYNC_POOL_SIZE", "3")
    assert Settings(_env_file=None).db_async_pool_size == 3
    monkeypatch.setenv("KERBSIDE_DB_ASYNC_POOL_SIZE", "0")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"KERBSIDE_{name.upper()}" in text, name


def _target_exists(command: list[str]) -> str:
    """Return the module a compose command runs, after checking it (and its attribute) exists."""
    if command[:2] == ["python", "-m"]:
        module = command[2]
        assert importlib.util.find_spec(module) is not None, module
        return module
    assert command[0] == "uvicorn", command
    module, _, attr = command[1].partition(":")
    mod = importlib.import_module(module)
    assert callable(getattr(mod, attr)), command[1]
    return module


def test_compose_services_run_real_modules_with_the_same_settings_names():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "migrate", "api", "worker", "contractor-simulator"} <= set(services)
    assert "healthcheck" in services["db"] and "postgis" in services["db"]["image"]
    modules = {name: _target_exists(svc["command"]) for name, svc in services.items() if name != "db"}
    assert modules["api"] == "server.main" and modules["worker"] == "server.worker"
    assert modules["migrate"] == "server.cli"
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        unknown = [k for k in env if not k.startswith("KERBSIDE_") or k[9:].lower() not in Settings.model_fields]
        assert not unknown, (name, unknown)
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
