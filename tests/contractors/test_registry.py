"""Registry: short names, dotted paths, one instance per config, loud config and status-map errors."""
from __future__ import annotations

import pytest

from contractors import registry
from contractors.base import StatusMapError
from contractors.open311.adapter import Open311Adapter
from contractors.street_lighting.adapter import StreetLightingAdapter
from contractors.street_lighting.mapping import DEFAULT_STATUS_MAP
from tests.contractors.conftest import o311_config, sl_config

URL = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.clear()
    yield
    registry.clear()


def test_short_names_resolve_to_the_adapters():
    assert isinstance(registry.get_adapter("street_lighting", sl_config(URL)), StreetLightingAdapter)
    assert isinstance(registry.get_adapter("open311", o311_config(URL)), Open311Adapter)


@pytest.mark.parametrize("path", ["contractors.street_lighting.adapter:StreetLightingAdapter",
                                  "contractors.street_lighting.adapter.StreetLightingAdapter"])
def test_dotted_paths_resolve(path):
    assert type(registry.get_adapter(path, sl_config(URL))) is StreetLightingAdapter


def test_one_instance_per_adapter_and_config():
    a = registry.get_adapter("street_lighting", sl_config(URL))
    assert registry.get_adapter("street_lighting", dict(reversed(list(sl_config(URL).items())))) is a
    assert registry.get_adapter("street_lighting", sl_config(URL, timeout_s=3)) is not a
    registry.clear()
    assert registry.get_adapter("street_lighting", sl_config(URL)) is not a


@pytest.mark.parametrize("config, words", [
    ({"base_url": URL, "webhook_secret": "x" * 10}, ["'street_lighting'", "'api_key'", "required"]),
    (sl_config("ftp://nope"), ["'base_url'", "http(s) URL"]),
    (sl_config(URL, timeout_s=-1), ["'timeout_s'"]),
    (sl_config(URL, webhook_secret="short"), ["'webhook_secret'"]),
    (sl_config(URL, colour="blue"), ["'colour'", "not permitted"]),
])
def test_bad_config_names_contractor_and_setting(config, words):
    with pytest.raises(ValueError) as err:
        registry.get_adapter("street_lighting", config)
    for word in words:
        assert word in str(err.value)


def test_open311_requires_service_codes_and_email():
    with pytest.raises(ValueError) as err:
        registry.get_adapter("open311", {"base_url": URL, "api_key": "k"})
    assert "'service_codes'" in str(err.value) and "'email'" in str(err.value)


def test_unknown_names_and_non_adapters_are_refused():
    with pytest.raises(ValueError, match="unknown contractor adapter"):
        registry.get_adapter("carrier_pigeon", {})
    with pytest.raises(ValueError, match="cannot import"):
        registry.get_adapter("contractors.nothing_here:Thing", {})
    with pytest.raises(ValueError, match="is not a ContractorAdapter"):
        registry.get_adapter("contractors.signing:sign", {})


def test_env_references_are_resolved_and_missing_ones_named(monkeypatch):
    monkeypatch.setenv("KS_TEST_BSL_KEY", "from-env")
    adapter = registry.get_adapter("street_lighting", sl_config(URL, api_key="env:KS_TEST_BSL_KEY"))
    assert adapter.config.api_key.get_secret_value() == "from-env"
    with pytest.raises(ValueError, match="'api_key'.*KS_TEST_MISSING"):
        registry.get_adapter("street_lighting", sl_config(URL, api_key="env:KS_TEST_MISSING"))


def test_incomplete_status_map_fails_loudly_at_creation():
    partial = {k: v for k, v in DEFAULT_STATUS_MAP.items() if k != "ON_HOLD"}
    with pytest.raises(StatusMapError, match="no mapping for contractor status.*ON_HOLD"):
        registry.get_adapter("street_lighting", sl_config(URL, status_map=partial))
    wrong_target = {**DEFAULT_STATUS_MAP, "FIXED": "fixed"}
    with pytest.raises(StatusMapError, match="FIXED → 'fixed'"):
        registry.get_adapter("street_lighting", sl_config(URL, status_map=wrong_target))
    # A complete override is taken as given.
    custom = {**DEFAULT_STATUS_MAP, "NOT_FOUND": "on_hold"}
    assert registry.get_adapter("street_lighting", sl_config(URL, status_map=custom)).map_status("NOT_FOUND") \
        == "on_hold"


def test_open311_status_map_may_add_local_statuses_but_must_cover_the_extended_set():
    from contractors.open311.mapping import DEFAULT_STATUS_MAP as O311

    extended = registry.get_adapter("open311", o311_config(URL, status_map={**O311, "AWAITING_PARTS": "on_hold"}))
    assert "awaiting_parts" in extended.statuses and extended.map_status("awaiting_parts") == "on_hold"
    with pytest.raises(StatusMapError, match="fixed"):
        registry.get_adapter("open311", o311_config(URL, status_map={k: v for k, v in O311.items() if k != "fixed"}))


def test_a_subclass_with_a_bigger_vocabulary_must_map_it():
    class Extended(StreetLightingAdapter):
        statuses = (*StreetLightingAdapter.statuses, "PARTS_ORDERED")

    adapter = Extended.from_config(sl_config(URL))
    with pytest.raises(StatusMapError, match="PARTS_ORDERED"):
        adapter.validate()
    adapter.close()
