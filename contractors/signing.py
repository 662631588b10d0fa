"""HMAC-SHA256 request signing, both directions: `timestamp + "." + body` under a shared secret.

Headers: `X-Kerbside-Timestamp: <unix seconds>` and `X-Kerbside-Signature: sha256=<hex>`.
The timestamp bounds replays to `tolerance_s`; the update_id dedupe catches the rest.
`verify` accepts several secrets (rotation) and several comma-separated signatures.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

TIMESTAMP_HEADER = "X-Kerbside-Timestamp"
SIGNATURE_HEADER = "X-Kerbside-Signature"
SCHEME = "sha256="


class SignatureError(ValueError):
    """A signed request failed verification; `reason` is missing, malformed, expired or mismatch."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def signature(secret: str | bytes, body: str | bytes, ts: int) -> str:
    """Hex HMAC-SHA256 of `ts.body` under `secret`."""
    return hmac.new(_bytes(secret), str(int(ts)).encode() + b"." + _bytes(body), hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: str | bytes, ts: int | None = None) -> dict[str, str]:
    """The two signature headers for `body` (now, unless `ts` is given)."""
    if not secret:
        raise ValueError("refusing to sign with an empty secret")
    ts = int(time.time()) if ts is None else int(ts)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: SCHEME + signature(secret, body, ts)}


def verify(secret: str | bytes | Iterable[str | bytes], headers: Mapping[str, str], body: str | bytes,
           tolerance_s: int = 300, now: float | None = None) -> int:
    """Check the headers sign `body` under (one of) `secret`; return the timestamp or raise SignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ts, raw_sig = lower.get(TIMESTAMP_HEADER.lower()), lower.get(SIGNATURE_HEADER.lower())
    if not raw_ts or not raw_sig:
        raise SignatureError("missing", f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        ts = int(raw_ts.strip())
    except ValueError:
        raise SignatureError("malformed", f"{TIMESTAMP_HEADER} is not unix seconds") from None
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        raise SignatureError("expired", f"signature timestamp is {int(now - ts)} s away from now "
                                        f"(tolerance {tolerance_s} s)")
    offered = [p.strip()[len(SCHEME):] for p in raw_sig.split(",") if p.strip().startswith(SCHEME)]
    if not offered:
        raise SignatureError("malformed", f"{SIGNATURE_HEADER} must be {SCHEME}<hex>")
    secrets = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    if not any(s for s in secrets):
        raise SignatureError("mismatch", "no secret configured to verify with")
    # Check every pair (no early exit) so timing does not reveal which part matched.
    ok = False
    for s in secrets:
        if not s:
            continue
        expected = signature(s, body, ts)
        for candidate in offered:
            ok |= hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace"))
    if not ok:
        raise SignatureError("mismatch", "signature does not match the body")
    return ts
