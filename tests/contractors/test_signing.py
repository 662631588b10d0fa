"""HMAC-SHA256 signing: round trip, tampering, expiry, malformed headers, rotation."""
from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contractors import signing
from contractors.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError


def test_sign_produces_documented_headers():
    headers = signing.sign("s3cret-key", b'{"a":1}', ts=1_700_000_000)
    expected = hmac.new(b"s3cret-key", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: f"sha256={expected}"}


@settings(max_examples=60, deadline=None)
@given(secret=st.text(min_size=1, max_size=40), body=st.binary(max_size=300), flip=st.integers(min_value=0))
def test_round_trip_and_any_tamper_fails(secret, body, flip):
    headers = signing.sign(secret, body)
    assert abs(signing.verify(secret, headers, body) - time.time()) < 5
    tampered = body + b"x" if not body else bytes(b ^ (1 if i == flip % len(body) else 0) for i, b in enumerate(body))
    with pytest.raises(SignatureError) as err:
        signing.verify(secret, headers, tampered)
    assert err.value.reason == "mismatch"


def test_wrong_secret_is_a_mismatch():
    headers = signing.sign("right-secret", b"body")
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify("wrong-secret", headers, b"body")


def test_expired_and_future_timestamps_are_refused():
    old = signing.sign("k" * 10, b"body", ts=int(time.time()) - 301)
    with pytest.raises(SignatureError) as err:
        signing.verify("k" * 10, old, b"body", tolerance_s=300)
    assert err.value.reason == "expired"
    future = signing.sign("k" * 10, b"body", ts=int(time.time()) + 1000)
    with pytest.raises(SignatureError):
        signing.verify("k" * 10, future, b"body")
    # Just inside the window is fine.
    recent = signing.sign("k" * 10, b"body", ts=int(time.time()) - 200)
    assert signing.verify("k" * 10, recent, b"body") == int(recent[TIMESTAMP_HEADER])


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing"),
    ({TIMESTAMP_HEADER: "1"}, "missing"),
    ({TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: "sha256=ab"}, "malformed"),
    ({TIMESTAMP_HEADER: str(int(time.time())), SIGNATURE_HEADER: "md5=abc"}, "malformed"),
    ({TIMESTAMP_HEADER: str(int(time.time())), SIGNATURE_HEADER: "sha256=zz\u00e9"}, "mismatch"),
])
def test_bad_headers_name_the_reason(headers, reason):
    with pytest.raises(SignatureError) as err:
        signing.verify("secret-key", headers, b"body")
    assert err.value.reason == reason


def test_header_names_are_case_insensitive_and_rotation_accepts_either_secret():
    headers = {k.lower(): v for k, v in signing.sign("old-secret", b"payload").items()}
    assert signing.verify(["new-secret", "old-secret"], headers, b"payload")
    with pytest.raises(SignatureError):
        signing.verify(["new-secret"], headers, b"payload")


def test_refuses_to_sign_with_empty_secret():
    with pytest.raises(ValueError):
        signing.sign("", b"x")
