"""The category catalogue: the real YAML loads, bad YAML is refused clearly, answers are checked."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from server.catalogue.answers import AnswerError, normalise_registration, priority_for, validate_answers
from server.catalogue.loader import DEFAULT_PATH, CatalogueError, load_catalogue, parse_catalogue
from server.catalogue.schemas import PRIORITIES, UnknownCategory

CAT = load_catalogue()
RAW = yaml.safe_load(DEFAULT_PATH.read_text())
REQUIRED_CODES = {"graffiti", "fly_tipping", "abandoned_vehicle", "street_light", "litter_bin", "grit_bin",
                  "dog_bin", "bench", "pothole"}


# --- the real catalogue ------------------------------------------------------------------------

def test_real_catalogue_has_the_required_categories_and_layers():
    assert REQUIRED_CODES <= set(CAT.codes())
    layers = {c.code: c.layer for c in CAT.categories}
    assert layers["street_light"] == "street_lights"
    assert layers["litter_bin"] == "litter_bins"
    assert layers["grit_bin"] == "grit_bins"
    assert layers["dog_bin"] == "dog_bins"
    assert layers["bench"] == "benches"
    assert layers["pothole"] == "roads"
    assert layers["graffiti"] is None and layers["fly_tipping"] is None and layers["abandoned_vehicle"] is None


def test_every_priority_used_has_an_sla_and_default_is_listed():
    for cat in CAT.categories:
        assert cat.default_priority in cat.priorities
        for rule in cat.priority_rules:
            assert rule.priority in cat.priorities
        for p in cat.priorities:
            assert p in PRIORITIES
            assert cat.sla_for(p)["kind"] in ("hours", "working_days")


def test_street_light_contract_is_three_working_days_with_cutoff():
    sl = CAT.get("street_light")
    assert sl.sla_for("normal") == {"kind": "working_days", "days": 3, "cutoff": "15:00",
                                    "end_of_day": "17:30", "start_of_day": "08:00"}
    assert sl.sla_for("emergency")["kind"] == "hours"
    assert sl.dispatch.team == "street_lighting" and sl.dispatch.via == "contractor"
    assert CAT.get("abandoned_vehicle").sla_for("normal") == {"kind": "hours", "hours": 24}
    assert CAT.get("graffiti").sla_for("urgent") == {"kind": "hours", "hours": 24}


def test_get_unknown_category_raises_and_contains_works():
    with pytest.raises(UnknownCategory) as err:
        CAT.get("unicorns")
    assert err.value.code == "unicorns"
    assert "graffiti" in CAT and "unicorns" not in CAT
    with pytest.raises(KeyError):
        CAT.get("graffiti").sla_for("emergency")


def test_questions_come_in_order():
    fly = CAT.get("fly_tipping")
    assert [q.code for q in fly.ordered_questions()] == ["waste_type", "size"]
    assert fly.question("size").value_keys() == ["bag", "car_boot", "small_van", "lorry"]
    assert fly.question("nope") is None


# --- invalid catalogues ------------------------------------------------------------------------

def _broken(mutate) -> str:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(raw)
    return str(err.value)


def _cat(raw, code):
    return next(c for c in raw["categories"] if c["code"] == code)


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: _cat(r, "graffiti").update(colour="red"), ["category 'graffiti'", "colour", "Extra inputs"]),
    (lambda r: _cat(r, "graffiti")["questions"][0].update(values=[]),
     ["category 'graffiti'", "questions[offensive]", "need values"]),
    (lambda r: _cat(r, "graffiti")["questions"][0].update(datatype="colour"),
     ["category 'graffiti'", "questions[offensive].datatype"]),
    (lambda r: _cat(r, "pothole")["questions"][0].update(values=[{"key": "a", "name": "A"}]),
     ["category 'pothole'", "questions[depth_mm]", "only for list questions"]),
    (lambda r: _cat(r, "pothole")["questions"][0].update(min=10, max=5), ["category 'pothole'", "min must not"]),
    (lambda r: _cat(r, "pothole")["priority_rules"][0]["when"].append({"question": "width", "gte": 1}),
     ["category 'pothole'", "unknown question 'width'"]),
    (lambda r: _cat(r, "pothole")["priority_rules"][0]["when"][0].update({"in": ["sky"]}),
     ["category 'pothole'", "no value(s) ['sky']"]),
    (lambda r: _cat(r, "street_light")["priority_rules"][0].update(priority="low"),
     ["category 'street_light'", "'low' has no entry"]),
    (lambda r: _cat(r, "street_light")["priority_rules"][0].update(priority="critical"),
     ["category 'street_light'", "priority_rules[0].priority"]),
    (lambda r: _cat(r, "litter_bin")["priorities"].pop("normal"), ["category 'litter_bin'", "default_priority"]),
    (lambda r: _cat(r, "litter_bin")["priorities"]["normal"].pop("sla"), ["category 'litter_bin'", "sla"]),
    (lambda r: _cat(r, "street_light")["priorities"]["normal"]["sla"].update(cutoff=900),
     ["category 'street_light'", "cutoff", "HH:MM"]),
    (lambda r: _cat(r, "street_light")["priorities"]["normal"]["sla"].update(cutoff="18:00"),
     ["category 'street_light'", "cutoff must not be after end_of_day"]),
    (lambda r: _cat(r, "street_light")["priorities"]["normal"]["sla"].update(kind="fortnights"),
     ["category 'street_light'", "priorities.normal.sla"]),
    (lambda r: _cat(r, "graffiti")["questions"][0]["values"][0].update(key=True),
     ["category 'graffiti'", "must be quoted"]),
    (lambda r: _cat(r, "bench").update(layer="benches", snap_radius_m=0), ["category 'bench'", "snap_radius_m"]),
    (lambda r: r["categories"].append(copy.deepcopy(r["categories"][0])), ["unique", "graffiti"]),
    (lambda r: _cat(r, "dog_bin")["questions"].append(copy.deepcopy(_cat(r, "dog_bin")["questions"][0])),
     ["category 'dog_bin'", "question codes must be unique"]),
    (lambda r: _cat(r, "abandoned_vehicle")["questions"][1].update(pattern="(["),
     ["category 'abandoned_vehicle'", "pattern does not compile"]),
    (lambda r: _cat(r, "fly_tipping").pop("dispatch"), ["category 'fly_tipping'", "dispatch"]),
])
def test_invalid_catalogue_names_category_and_field(mutate, expected):
    message = _broken(mutate)
    for part in expected:
        assert part in message


def test_load_catalogue_reports_yaml_syntax_and_missing_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncategories: [\n  {code: x\n")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(DEFAULT_PATH.read_text())
    assert load_catalogue(good).codes() == CAT.codes()


# --- answers ------------------------------------------------------------------------------------

G, F, AV, SL, P, B = (CAT.get(c) for c in ("graffiti", "fly_tipping", "abandoned_vehicle", "street_light",
                                             "pothole", "bench"))


def _error(category, answers, **kw) -> AnswerError:
    with pytest.raises(AnswerError) as err:
        validate_answers(category, answers, **kw)
    assert err.value.code == "invalid-answer"
    return err.value


@pytest.mark.parametrize("category, answers, field", [
    (G, {}, "answers.offensive"),  # required missing
    (G, {"offensive": ""}, "answers.offensive"),  # blank counts as missing
    (G, {"offensive": None}, "answers.offensive"),
    (G, {"offensive": "maybe"}, "answers.offensive"),  # not a key
    (G, {"offensive": "Yes"}, "answers.offensive"),  # names/case are not keys
    (G, {"offensive": True}, "answers.offensive"),
    (G, {"offensive": "no", "surface": "moon"}, "answers.surface"),
    (G, {"offensive": "no", "colour": "red"}, "answers.colour"),  # unknown question
    (F, {"waste_type": "household", "size": "bag"}, "answers.waste_type"),  # multi needs a list
    (F, {"waste_type": [], "size": "bag"}, "answers.waste_type"),  # required, empty
    (F, {"waste_type": ["household", "household"], "size": "bag"}, "answers.waste_type"),  # repeats
    (F, {"waste_type": ["household", "gold"], "size": "bag"}, "answers.waste_type"),
    (F, {"waste_type": [1], "size": "bag"}, "answers.waste_type"),
    (F, {"waste_type": ["tyres"]}, "answers.size"),
    (P, {"depth_mm": "45", "location": "footway"}, "answers.depth_mm"),  # string is not a number
    (P, {"depth_mm": True, "location": "footway"}, "answers.depth_mm"),  # bool is not a number
    (P, {"depth_mm": float("nan"), "location": "footway"}, "answers.depth_mm"),
    (P, {"depth_mm": float("inf"), "location": "footway"}, "answers.depth_mm"),
    (P, {"depth_mm": -1, "location": "footway"}, "answers.depth_mm"),  # below min
    (P, {"depth_mm": 1001, "location": "footway"}, "answers.depth_mm"),  # above max
    (P, {"depth_mm": 30}, "answers.location"),
    (AV, {"untaxed": "yes", "registration": "NOT A PLATE"}, "answers.registration"),
    (AV, {"untaxed": "yes", "registration": "AB12 CD"}, "answers.registration"),
    (AV, {"untaxed": "yes", "registration": 1234}, "answers.registration"),
    (AV, {"untaxed": "yes", "make": "x" * 501}, "answers.make"),  # string > 500
    (B, {"problem": "damaged", "details": "x" * 4001}, "answers.details"),  # text > 4000
    (B, {"problem": "damaged", "details": ["a"]}, "answers.details"),
])
def test_each_bad_answer_names_its_field(category, answers, field):
    err = _error(category, answers)
    assert err.field == field
    assert err.reason


def test_answers_must_be_an_object():
    assert _error(G, ["offensive"]).field == "answers"


def test_limits_are_inclusive():
    assert validate_answers(AV, {"untaxed": "no", "make": "x" * 500})["make"] == "x" * 500
    assert len(validate_answers(B, {"problem": "damaged", "details": "y" * 4000})["details"]) == 4000
    assert validate_answers(P, {"depth_mm": 0, "location": "footway"})["depth_mm"] == 0
    assert validate_answers(P, {"depth_mm": 1000, "location": "footway"})["depth_mm"] == 1000


def test_answers_are_normalised():
    out = validate_answers(F, {"waste_type": ["tyres", "household"], "size": "lorry"})
    assert out == {"waste_type": ["household", "tyres"], "size": "lorry"}  # catalogue order
    out = validate_answers(AV, {"untaxed": "unknown", "registration": " ab12 cde ", "make": "  Ford Fiesta ",
                                "colour": ""})
    assert out == {"registration": "AB12 CDE", "make": "Ford Fiesta", "untaxed": "unknown"}
    assert validate_answers(P, {"depth_mm": 45.0, "location": "carriageway"})["depth_mm"] == 45
    assert validate_answers(P, {"depth_mm": 45.5, "location": "carriageway"})["depth_mm"] == 45.5


def test_form_encoded_answers_can_be_coerced():
    out = validate_answers(P, {"depth_mm": " 45 ", "location": "carriageway"}, coerce_strings=True)
    assert out["depth_mm"] == 45
    assert _error(P, {"depth_mm": "deep", "location": "carriageway"}, coerce_strings=True).field == "answers.depth_mm"
    out = validate_answers(F, {"waste_type": "tyres", "size": "bag"}, coerce_strings=True)
    assert out["waste_type"] == ["tyres"]


def _with_datetime_question():
    raw = copy.deepcopy(RAW)
    _cat(raw, "bench")["questions"].append(
        {"code": "seen_at", "prompt": "When did you see it?", "datatype": "datetime", "required": True, "order": 3})
    return parse_catalogue(raw).get("bench")


def test_datetime_answers_need_an_offset():
    bench = _with_datetime_question()
    out = validate_answers(bench, {"problem": "damaged", "seen_at": "2026-11-26T10:00:00+01:00"})
    assert out["seen_at"] == "2026-11-26T09:00:00+00:00"
    assert validate_answers(bench, {"problem": "damaged", "seen_at": "2026-11-26T10:00:00Z"})["seen_at"] == \
        "2026-11-26T10:00:00+00:00"
    for bad in ("2026-11-26T10:00:00", "yesterday", "2026-13-01T00:00:00+00:00", 1764151200):
        assert _error(bench, {"problem": "damaged", "seen_at": bad}).field == "answers.seen_at"


def test_pattern_is_enforced_for_strings():
    raw = copy.deepcopy(RAW)
    _cat(raw, "abandoned_vehicle")["questions"][2]["pattern"] = "[A-Za-z ]+"
    av = parse_catalogue(raw).get("abandoned_vehicle")
    assert validate_answers(av, {"untaxed": "no", "colour": "dark blue"})["colour"] == "dark blue"
    assert _error(av, {"untaxed": "no", "colour": "#0000ff"}).field == "answers.colour"


# --- registrations -----------------------------------------------------------------------------

@pytest.mark.parametrize("given_, expected", [
    ("ab12 cde", "AB12 CDE"), ("AB12CDE", "AB12 CDE"), ("ab-12-cde", "AB12 CDE"),  # current
    ("a123bcd", "A123 BCD"), ("P7 ABC", "P7 ABC"),  # prefix
    ("abc123d", "ABC 123D"), ("XYZ 1A", "XYZ 1A"),  # suffix
    ("abc1234", "ABC 1234"), ("1 a", "1 A"), ("1234ab", "1234 AB"), ("ABZ 1234", "ABZ 1234"),  # dateless / NI
])
def test_registration_normalisation(given_, expected):
    assert normalise_registration(given_) == expected


@pytest.mark.parametrize("bad", ["", "   ", "AB12 CD", "ABCDEFGH", "AB12CDEF", "12345", "ABCD 1", "AB12 C1E", "é1"])
def test_not_registrations(bad):
    assert normalise_registration(bad) is None


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Z]{2}[0-9]{2}[A-Z]{3}", fullmatch=True), st.sampled_from(["", " ", "-", "  "]),
       st.booleans())
def test_current_format_round_trips(plate, sep, lower):
    typed = plate[:4] + sep + plate[4:]
    typed = typed.lower() if lower else typed
    canonical = f"{plate[:4]} {plate[4:]}"
    assert normalise_registration(typed) == canonical
    assert normalise_registration(canonical) == canonical  # idempotent


# --- priority rules ----------------------------------------------------------------------------

@pytest.mark.parametrize("category, answers, expected", [
    (G, {"offensive": "yes"}, "urgent"),
    (G, {"offensive": "no", "surface": "wall"}, "normal"),
    (F, {"waste_type": ["household", "asbestos_hazardous"], "size": "bag"}, "urgent"),
    (F, {"waste_type": ["household", "tyres"], "size": "lorry"}, "normal"),
    (SL, {"fault": "damaged_exposed_wiring"}, "emergency"),
    (SL, {"fault": "out"}, "normal"),
    (SL, {"fault": "day_burning"}, "normal"),
    (P, {"depth_mm": 40, "location": "carriageway"}, "urgent"),
    (P, {"depth_mm": 39.9, "location": "carriageway"}, "normal"),
    (P, {"depth_mm": 30, "location": "footway"}, "urgent"),
    (P, {"depth_mm": 30, "location": "carriageway"}, "normal"),
    (B, {"problem": "unsafe"}, "urgent"),
    (B, {"problem": "damaged"}, "low"),
    (AV, {"untaxed": "yes"}, "normal"),
])
def test_priority_rules(category, answers, expected):
    assert priority_for(category, validate_answers(category, answers)) == expected


def test_most_severe_matching_rule_wins_and_rules_may_lower():
    raw = copy.deepcopy(RAW)
    fly = _cat(raw, "fly_tipping")
    fly["priorities"]["low"] = {"sla": {"kind": "working_days", "days": 10}}
    fly["priority_rules"].append({"priority": "low", "when": [{"question": "size", "in": ["bag"]}]})
    fly = parse_catalogue(raw).get("fly_tipping")
    assert priority_for(fly, {"waste_type": ["household"], "size": "bag"}) == "low"
    assert priority_for(fly, {"waste_type": ["asbestos_hazardous"], "size": "bag"}) == "urgent"
    assert priority_for(fly, {"waste_type": ["household"], "size": "lorry"}) == "normal"


def test_stored_definition_reads_back_unchanged():
    # service.sync_to_db stores model_dump(mode="json"); reading it back must give the same category.
    from server.catalogue.schemas import CategoryDef

    for cat in CAT.categories:
        dumped = cat.model_dump(mode="json")
        assert CategoryDef.model_validate(dumped) == cat
    assert "in" in CAT.get("pothole").model_dump(mode="json")["priority_rules"][0]["when"][0]
