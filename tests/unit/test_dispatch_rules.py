"""Dispatch rules and crew choice, pure: the data files, the rule table, and properties of the choice."""
from __future__ import annotations

import json
from datetime import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from server.areas.zones import ZonesError, load_zones, resolve
from server.dispatch.rules import (
    CrewState,
    JobFacts,
    Rule,
    RulesError,
    choose_crew,
    decide,
    eligible,
    load_rules,
    match_rule,
    on_shift,
)

ROOT = Path(__file__).resolve().parents[2]
WARDS_FILE = ROOT.parent / "shared" / "gis" / "banes" / "banes_boundary_review_2018_final_wards_simp.geojson"
SETTINGS = settings(max_examples=200, deadline=None)
RULES = load_rules(ROOT / "gis_data" / "dispatch.yaml")


def facts(category, maintainer=None, ward="lansdown", zone="bath-north", areas=("street-lighting", "green-spaces")):
    a = {("ward", ward), ("crew_zone", zone)} | {("contractor_area", c) for c in areas}
    return JobFacts(category, maintainer, frozenset(a))


# --- the data files -----------------------------------------------------------------------------------


def ward_names() -> list[str]:
    feats = json.loads(WARDS_FILE.read_text())["features"]
    return sorted(f["properties"]["Ward_name"] for f in feats)


def test_every_ward_is_in_exactly_one_crew_zone():
    zones = load_zones(ROOT / "gis_data" / "zones.yaml")
    names = ward_names()
    assert len(names) == 33
    seen: dict[str, list[str]] = {}
    for z in zones.crew_zones:
        for w in z.wards:
            seen.setdefault(w, []).append(z.code)
    assert sorted(seen) == names
    assert all(len(v) == 1 for v in seen.values()), {w: v for w, v in seen.items() if len(v) > 1}
    side = {w: v[0] for w, v in seen.items()}
    for south in ("Widcombe & Lyncombe", "Odd Down", "Combe Down", "Southdown", "Moorlands", "Twerton",
                  "Westmoreland", "Oldfield Park", "Keynsham North", "Saltford", "Radstock"):
        assert side[south] == "bath-south", south
    for north in ("Lansdown", "Walcot", "Weston", "Lambridge", "Kingsmead", "Newbridge"):
        assert side[north] == "bath-north", north
    # The resolver agrees (codes are whatever the importer made; any unique mapping will do here).
    areas = resolve(zones, {n: f"w{i}" for i, n in enumerate(names)})
    kinds = {(k, c) for k, c, _, _ in areas}
    assert {("crew_zone", "bath-north"), ("crew_zone", "bath-south"), ("contractor_area", "street-lighting"),
            ("contractor_area", "green-spaces")} <= kinds
    everything = next(w for k, c, _, w in areas if c == "street-lighting")
    assert len(everything) == 33


def _zones(data: dict):
    from server.areas.zones import ZonesFile

    return ZonesFile.model_validate({"version": 1, **data})


def test_zones_refuse_overlaps_gaps_and_unknown_wards():
    wards = {"A": "a", "B": "b", "C": "c"}
    ok = _zones({"crew_zones": [{"code": "x", "name": "X", "wards": ["A", "b"]}, {"code": "y", "name": "Y",
                                                                                  "wards": ["C"]}]})
    assert [w for *_, w in resolve(ok, wards)] == [["a", "b"], ["c"]]  # names match case-insensitively
    with pytest.raises(ZonesError, match="more than one crew zone: b"):
        resolve(_zones({"crew_zones": [{"code": "x", "name": "X", "wards": ["A", "B"]},
                                       {"code": "y", "name": "Y", "wards": ["B", "C"]}]}), wards)
    with pytest.raises(ZonesError, match="no crew zone: c"):
        resolve(_zones({"crew_zones": [{"code": "x", "name": "X", "wards": ["A", "B"]}]}), wards)
    with pytest.raises(ZonesError, match="no ward named 'Atlantis'"):
        resolve(_zones({"contractor_areas": [{"code": "x", "name": "X", "wards": ["Atlantis"]}]}), wards)


def test_rules_file_is_strict(tmp_path):
    bad = tmp_path / "d.yaml"
    bad.write_text(yaml.safe_dump({"version": 1, "rules": [{"name": "r", "category": ["x"], "crew_team": "a",
                                                            "contractor": "b"}]}))
    with pytest.raises(RulesError, match="exactly one of crew_team and contractor"):
        load_rules(bad)
    bad.write_text(yaml.safe_dump({"version": 1, "rules": [{"name": "r", "colour": ["x"], "crew_team": "a"}]}))
    with pytest.raises(RulesError, match="colour"):
        load_rules(bad)


# --- the demo rule table ----------------------------------------------------------------------------


@pytest.mark.parametrize("f, target", [
    (facts("street_light", "street_lighting"), ("contractor", "street-lighting")),
    (facts("graffiti", None), ("crew", "cleansing")),
    (facts("fly_tipping", None, zone="bath-south"), ("crew", "cleansing")),
    (facts("bench", "parks"), ("contractor", "green-spaces")),
    (facts("dog_bin", "cleansing"), ("contractor", "green-spaces")),
    (facts("bench", "parks", areas=()), ("crew", "highways")),  # outside the green-spaces area
    (facts("grit_bin", "highways"), ("crew", "highways")),
    (facts("pothole", "highways"), ("crew", "highways")),
    (facts("abandoned_vehicle"), ("crew", "enforcement")),
    (facts("litter_bin", "cleansing"), ("crew", "cleansing")),
], ids=lambda v: v if isinstance(v, str) else None)
def test_demo_rules_route_each_category(f, target):
    rule = match_rule(RULES, f)
    assert rule is not None
    assert (("contractor", rule.contractor) if rule.contractor else ("crew", rule.crew_team)) == target


def test_no_rule_queues_with_the_reason():
    d = decide(RULES, facts("unicorn_sighting"), [], time(10))
    assert d.outcome == "queue" and "no dispatch rule matches category 'unicorn_sighting'" in d.reason


def test_area_conditions_need_the_job_inside():
    rule = Rule(name="south", category=("graffiti",), crew_zone=("bath-south",), crew_team="cleansing")
    assert match_rule([rule], facts("graffiti", zone="bath-south")) is rule
    assert match_rule([rule], facts("graffiti", zone="bath-north")) is None
    ward_rule = Rule(name="w", ward=("odd-down",), contractor="x")
    assert match_rule([ward_rule], facts("graffiti", ward="odd-down")) is ward_rule
    assert match_rule([ward_rule], facts("graffiti", ward="lansdown")) is None


# --- shifts ---------------------------------------------------------------------------------------


def test_shifts_including_across_midnight():
    assert on_shift(time(7), time(19), time(7)) and on_shift(time(7), time(19), time(18, 59))
    assert not on_shift(time(7), time(19), time(19)) and not on_shift(time(7), time(19), time(6, 59))
    night = (time(22), time(6))
    assert on_shift(*night, time(23, 30)) and on_shift(*night, time(0)) and on_shift(*night, time(5, 59))
    assert not on_shift(*night, time(6)) and not on_shift(*night, time(12))
    assert on_shift(time(0), time(0), time(13))  # round the clock


def crew(i, **kw) -> CrewState:
    base = dict(id=i, name=f"c{i}", team="cleansing", skills=frozenset({"graffiti"}), zone="bath-north",
                shift_start=time(7), shift_end=time(19), capacity=5, open_jobs=0, distance_m=None)
    return CrewState(**{**base, **kw})


@pytest.mark.parametrize("crews, reason", [
    ([], "no active cleansing crew"),
    ([crew(1, team="highways")], "no active cleansing crew"),
    ([crew(1, active=False)], "no active cleansing crew"),
    ([crew(1, skills=frozenset({"litter_bin"}))], "no cleansing crew has the skill 'graffiti'"),
    ([crew(1, zone="bath-south")], "no cleansing crew covers this place"),
    ([crew(1, shift_start=time(20), shift_end=time(23))], "no cleansing crew on shift (shifts 20:00-23:00)"),
    ([crew(1, open_jobs=5)], "every cleansing crew on shift is at capacity"),
])
def test_no_crew_says_why(crews, reason):
    chosen, why = choose_crew(crews, team="cleansing", category="graffiti", zones=frozenset({"bath-north"}),
                              at=time(10))
    assert chosen is None and reason in why


def test_least_loaded_then_nearest_then_name():
    zones = frozenset({"bath-north"})
    pick = lambda cs: choose_crew(cs, team="cleansing", category="graffiti", zones=zones, at=time(10))[0].name
    assert pick([crew(1, open_jobs=3, distance_m=10), crew(2, open_jobs=1, distance_m=9000)]) == "c2"
    assert pick([crew(1, open_jobs=1, distance_m=500), crew(2, open_jobs=1, distance_m=20)]) == "c2"
    assert pick([crew(1, open_jobs=1, distance_m=None), crew(2, open_jobs=1, distance_m=5000)]) == "c2"
    assert pick([crew(2, name="b"), crew(1, name="a")]) == "a"
    assert pick([crew(1, zone=None, open_jobs=0), crew(2, open_jobs=2)]) == "c1"  # no zone = anywhere


# --- properties -----------------------------------------------------------------------------------

ZONES = ["bath-north", "bath-south", "elsewhere"]
times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))
crews_st = st.lists(st.builds(
    CrewState, id=st.integers(1, 10_000), name=st.sampled_from(["a", "b", "c", "d", "e"]),
    team=st.sampled_from(["cleansing", "highways"]),
    skills=st.frozensets(st.sampled_from(["graffiti", "fly_tipping", "pothole"]), max_size=3),
    zone=st.none() | st.sampled_from(ZONES), shift_start=times, shift_end=times, capacity=st.integers(0, 6),
    open_jobs=st.integers(0, 8), distance_m=st.none() | st.floats(0, 20_000, allow_nan=False),
    active=st.booleans()), max_size=8, unique_by=lambda c: c.id)
job_st = st.tuples(st.sampled_from(["cleansing", "highways"]), st.sampled_from(["graffiti", "pothole"]),
                   st.frozensets(st.sampled_from(ZONES), max_size=2), times)


@SETTINGS
@given(crews_st, job_st)
def test_chosen_crew_is_always_eligible_and_never_more_loaded(crews, job):
    team, category, zones, at = job
    chosen, why = choose_crew(crews, team=team, category=category, zones=zones, at=at)
    ok = [c for c in crews if eligible(c, team=team, category=category, zones=zones, at=at)]
    if chosen is None:
        assert ok == [] and why
        return
    assert chosen in ok
    assert chosen.team == team and category in chosen.skills and chosen.active
    assert chosen.zone is None or chosen.zone in zones
    assert on_shift(chosen.shift_start, chosen.shift_end, at) and chosen.open_jobs < chosen.capacity
    assert all(chosen.open_jobs <= c.open_jobs for c in ok)
    equal = [c for c in ok if c.open_jobs == chosen.open_jobs]
    if chosen.distance_m is not None:
        assert all(c.distance_m is None or chosen.distance_m <= c.distance_m for c in equal)
    else:
        assert all(c.distance_m is None for c in equal)


@SETTINGS
@given(crews_st, job_st, st.randoms(use_true_random=False))
def test_choice_is_deterministic_whatever_the_order(crews, job, rnd):
    team, category, zones, at = job
    first = choose_crew(crews, team=team, category=category, zones=zones, at=at)
    shuffled = list(crews)
    rnd.shuffle(shuffled)
    assert choose_crew(shuffled, team=team, category=category, zones=zones, at=at) == first


@SETTINGS
@given(crews_st, job_st)
def test_decide_agrees_with_choose_crew(crews, job):
    team, category, zones, at = job
    rules = [Rule(name="only", category=(category,), crew_team=team)]
    f = JobFacts(category, None, frozenset(("crew_zone", z) for z in zones))
    d = decide(rules, f, crews, at)
    chosen, _ = choose_crew(crews, team=team, category=category, zones=zones, at=at)
    assert (d.outcome == "crew") == (chosen is not None)
    assert d.crew == chosen and d.rule == "only"
    if chosen is None:
        assert d.outcome == "queue" and d.reason
