"""Adapter name or dotted path + config → one validated adapter instance per (adapter, config).

    get_adapter("street_lighting", {"base_url": ..., "api_key": ..., "webhook_secret": ...})
    get_adapter("contractors.open311.adapter:Open311Adapter", {...})   # or ...adapter.Open311Adapter

Config values written "env:NAME" are read from the environment, so secrets need not sit in the
database. Bad or missing settings raise ValueError naming the contractor and the setting; an
incomplete status map raises StatusMapError (a ValueError) — both at creation, i.e. start-up.
"""
from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from contractors.base import ContractorAdapter

ADAPTERS: dict[str, str] = {
    "street_lighting": "contractors.street_lighting.adapter:StreetLightingAdapter",
    "open311": "contractors.open311.adapter:Open311Adapter",
}

_instances: dict[tuple[str, str], ContractorAdapter] = {}
_lock = threading.Lock()


def resolve(name_or_path: str) -> type[ContractorAdapter]:
    """The adapter class for a short name or "package.module:Class" / "package.module.Class"."""
    target = ADAPTERS.get(name_or_path, name_or_path)
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        raise ValueError(f"unknown contractor adapter {name_or_path!r}; "
                         f"known: {', '.join(sorted(ADAPTERS))}, or give a dotted path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"contractor adapter {name_or_path!r}: cannot import {module_name!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, ContractorAdapter)):
        raise ValueError(f"contractor adapter {name_or_path!r}: {module_name}.{attr} is not a ContractorAdapter")
    return cls


def _resolve_env(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if isinstance(value, str) and value.startswith("env:"):
            var = value[4:]
            if var not in os.environ:
                raise ValueError(f"contractor {name!r}: setting {key!r} refers to environment variable "
                                 f"{var!r}, which is not set")
            value = os.environ[var]
        out[key] = value
    return out


def _explain(name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(config)"
        parts.append(f"setting {where!r}: {err['msg']}")
    return f"contractor {name!r}: bad config: " + "; ".join(parts)


def create(name_or_path: str, config: Mapping[str, Any]) -> ContractorAdapter:
    """A new, validated adapter (no caching)."""
    cls = resolve(name_or_path)
    try:
        adapter = cls.from_config(_resolve_env(name_or_path, config or {}))
    except ValidationError as exc:
        raise ValueError(_explain(name_or_path, exc)) from None
    adapter.validate()
    return adapter


def get_adapter(name_or_path: str, config: Mapping[str, Any]) -> ContractorAdapter:
    """The shared adapter for this (adapter, config), created and validated on first use."""
    key = (name_or_path, json.dumps(config or {}, sort_keys=True, default=str))
    with _lock:
        adapter = _instances.get(key)
        if adapter is None:
            adapter = _instances[key] = create(name_or_path, config)
        return adapter


def clear() -> None:
    """Close and forget every cached adapter (tests, config reloads)."""
    with _lock:
        for adapter in _instances.values():
            adapter.close()
        _instances.clear()
