"""Pure parts of the reporter loop: quiet hours, phone numbers, which move sends which message, and the
Notify simulator's checks of a request (JWT and body) as Notify makes them."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from notifications_python_client.authentication import create_jwt_token

from notify_simulator.app import load_templates
from notify_simulator.checks import Refused, check_body, check_token
from notify_simulator.settings import DEFAULT_TEMPLATES
from server.notifications.quiet import is_quiet, next_allowed
from server.notifications.schemas import normalise_phone
from server.notifications.templates import event_template, placeholders, templates

TZ = "Europe/London"
LONDON = ZoneInfo(TZ)
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                        timezones=st.just(timezone.utc))


@given(instants)
@example(datetime(2028, 10, 28, 20, 0, tzinfo=timezone.utc))  # 21:00 BST the night the clocks go back: 12 hours
def test_no_text_is_ever_scheduled_inside_quiet_hours(at):
    out = next_allowed(at, "21:00", "08:00", TZ)
    assert out >= at and not is_quiet(out, "21:00", "08:00", TZ)
    # At most one 11-hour night, an hour longer when the clocks go back during it (21:00 BST to 08:00 GMT).
    gained = at.astimezone(LONDON).utcoffset() - out.astimezone(LONDON).utcoffset()
    assert out - at <= timedelta(hours=11) + max(gained, timedelta(0))
    if not is_quiet(at, "21:00", "08:00", TZ):
        assert out == at


@given(instants)
def test_quiet_hours_are_21_to_08_london_time(at):
    local = at.astimezone(LONDON).time()
    assert is_quiet(at, "21:00", "08:00", TZ) == (local.hour >= 21 or local.hour < 8)


def test_quiet_hours_follow_the_clock_change_and_a_window_that_does_not_cross_midnight():
    # 22:30 BST on 26 October 2024: the clocks go back overnight; the text still goes at 08:00 on the clock.
    at = datetime(2024, 10, 26, 21, 30, tzinfo=timezone.utc)
    out = next_allowed(at, "21:00", "08:00", TZ)
    assert out.astimezone(LONDON).hour == 8 and out.astimezone(timezone.utc).hour == 8
    assert is_quiet(datetime(2024, 6, 1, 12, 30, tzinfo=timezone.utc), "13:00", "14:00", TZ)
    assert not is_quiet(datetime(2024, 6, 1, 14, 30, tzinfo=timezone.utc), "13:00", "14:00", TZ)
    assert not is_quiet(datetime(2024, 6, 1, 3, 0, tzinfo=timezone.utc), "00:00", "00:00", TZ)


@pytest.mark.parametrize("raw, phone", [("07700 900123", "07700900123"), ("+44 7700 900123", "07700900123"),
                                        ("447700900123", "07700900123"), ("0044 (0)7700", None),
                                        ("+1 202 555 0123", "+12025550123"), ("12", None), ("call me", None)])
def test_phone_numbers_are_normalised(raw, phone):
    assert normalise_phone(raw) == phone


def test_which_move_sends_which_message():
    assert event_template("scheduled", {}) == "scheduled"
    assert event_template("completed", {}) == "fixed"
    assert event_template("closed", {}) is None  # closed follows completed: the reporter heard "fixed" already
    assert event_template("duplicate", {}) == "duplicate"
    assert event_template("cancelled", {"reason": "not_councils_responsibility"}) == "not_ours"
    assert event_template("cancelled", {"reason": "no_further_action"}) == "closed"
    assert event_template("in_progress", {}) is None and event_template("accepted", {}) is None


def test_every_template_has_both_kinds_and_only_placeholders_we_send():
    sent = {"reference", "job_reference", "category", "street", "promised_date", "status_url", "unsubscribe_url",
            "other_reference", "who_to_contact"}
    ids = set()
    for key, kinds in templates().items():
        assert set(kinds) == {"email", "sms"}, key
        for kind, t in kinds.items():
            ids.add(uuid.UUID(t["id"]))
            assert set(placeholders(t.get("subject", "") + t["body"])) <= sent, (key, kind)
            assert "((status_url))" in t["body"], (key, kind)
        assert "((unsubscribe_url))" in kinds["email"]["body"]
    assert len(ids) == 2 * len(templates())


SERVICE, SECRET = str(uuid.uuid4()), str(uuid.uuid4())


def test_the_simulator_takes_the_real_clients_token_and_refuses_bad_ones():
    check_token(f"Bearer {create_jwt_token(SECRET, SERVICE)}", SERVICE, SECRET)
    cases = {
        None: 401,
        "Basic abc": 401,
        f"Bearer {create_jwt_token(str(uuid.uuid4()), SERVICE)}": 403,  # wrong secret
        f"Bearer {create_jwt_token(SECRET, str(uuid.uuid4()))}": 403,  # another service
        f"Bearer {jwt.encode({'iss': SERVICE, 'iat': int(time.time()) - 120}, SECRET, algorithm='HS256')}": 403,
        f"Bearer {jwt.encode({'iss': SERVICE, 'iat': int(time.time())}, SECRET, algorithm='HS512')}": 403,
        f"Bearer {jwt.encode({'iss': SERVICE}, SECRET, algorithm='HS256')}": 403,
        "Bearer not.a.jwt": 403,
    }
    for header, status in cases.items():
        with pytest.raises(Refused) as exc:
            check_token(header, SERVICE, SECRET)
        assert exc.value.status == status and exc.value.body()["errors"][0]["error"] == "AuthError", header


def test_the_simulator_checks_bodies_as_notify_does():
    t = load_templates(str(DEFAULT_TEMPLATES))
    email_id = templates()["fixed"]["email"]["id"]
    values = {k: "x" for k in ("category", "street", "reference", "status_url", "unsubscribe_url")}
    template, to = check_body("email", {"email_address": "a@example.org", "template_id": email_id,
                                        "personalisation": values}, t)
    assert to == "a@example.org" and template["type"] == "email"
    bad = [
        ("email", {"email_address": "a@example.org", "template_id": email_id}, "Missing personalisation"),
        ("email", {"email_address": "nope", "template_id": email_id, "personalisation": values}, "email_address"),
        ("sms", {"phone_number": "07700900123", "template_id": email_id, "personalisation": values}, "Template not found"),
        ("sms", {"phone_number": "01225 477000", "template_id": templates()["fixed"]["sms"]["id"],
                 "personalisation": values}, "Not a UK mobile number"),
        ("email", {"email_address": "a@example.org", "template_id": "x", "personalisation": values}, "valid UUID"),
        ("email", {"email_address": "a@example.org", "template_id": email_id, "colour": "red"}, "Additional"),
    ]
    for kind, body, message in bad:
        with pytest.raises(Refused) as exc:
            check_body(kind, body, t)
        assert exc.value.status == 400 and message in exc.value.message, (body, exc.value.message)


def test_the_status_page_catalogue_has_words_for_every_status_and_falls_back_to_english(tmp_path, monkeypatch):
    from server.jobs.rules import STATUSES
    from server.notifications import templates as t

    english = t.catalogue("en")
    assert set(STATUSES) <= set(english["status_words"])
    # A Welsh catalogue with one key translated: that key in Welsh, every other key in English.
    (tmp_path / "messages").mkdir()
    (tmp_path / "messages" / "en.yaml").write_text((t.HERE / "messages" / "en.yaml").read_text())
    (tmp_path / "messages" / "cy.yaml").write_text('what: "Beth a adroddwyd"\nstatus_words:\n  closed: "Ar gau"\n')
    monkeypatch.setattr(t, "HERE", tmp_path)
    t.catalogue.cache_clear()
    try:
        welsh = t.catalogue("cy")
        assert welsh["what"] == "Beth a adroddwyd" and welsh["where"] == english["where"]
        assert welsh["status_words"]["closed"] == "Ar gau" and welsh["status_words"]["new"] == english["status_words"]["new"]
    finally:
        t.catalogue.cache_clear()
