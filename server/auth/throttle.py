"""Failed-credential throttling per client address (the `limits` library: moving window, in memory).

Every presented token that does not verify (unknown, revoked, expired) counts one failure against
the caller's address. Past KERBSIDE_AUTH_FAILURE_RATE (e.g. 20/minute), requests from that address
that carry credentials (an Authorization header or an api_key) are refused with 429 and Retry-After
until the oldest failure leaves the window; credentials sent in a form body are simply not checked
meanwhile. The count is per API process: behind N processes an address gets at most N × the rate,
which still makes guessing a 256-bit token hopeless, and needs no shared store.
"""
from __future__ import annotations

import contextvars
import math
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

_CURRENT: contextvars.ContextVar[tuple["AuthThrottle", str] | None] = contextvars.ContextVar(
    "kerbside_auth_throttle", default=None)
NAMESPACE = "auth-failed"


class AuthThrottle:
    """Counts failed credentials per address and says when an address must wait."""

    def __init__(self, rate: str) -> None:
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        # When each address last failed: an address with no failure in the window cannot be blocked, and
        # that is nearly every request, so the limiter is only asked about addresses that did fail.
        self.last_failed: dict[str, float] = {}

    def failed(self, address: str) -> None:
        """Record one failed credential from this address."""
        now = time.monotonic()
        if len(self.last_failed) > 10_000:  # keep the map to the addresses of the current window
            window = self.item.get_expiry()
            self.last_failed = {a: t for a, t in self.last_failed.items() if now - t <= window}
        self.last_failed[address] = now
        self.limiter.hit(self.item, NAMESPACE, address)

    def blocked(self, address: str) -> bool:
        """Has this address used up its failures for the window?"""
        last = self.last_failed.get(address)
        if last is None or time.monotonic() - last > self.item.get_expiry():
            return False
        return not self.limiter.test(self.item, NAMESPACE, address)

    def reset(self) -> None:
        """Forget every failure (tests; an operator restarting the process does the same)."""
        self.limiter.storage.reset()
        self.last_failed.clear()

    def retry_after(self, address: str) -> int:
        """Whole seconds until the address may try again."""
        stats = self.limiter.get_window_stats(self.item, NAMESPACE, address)
        return max(1, math.ceil(stats.reset_time - time.time()))


def enter(throttle: AuthThrottle | None, address: str):
    """Make this request's throttle and address known to token checks (returns a reset token)."""
    return _CURRENT.set((throttle, address) if throttle is not None else None)


def leave(token) -> None:
    """Forget the request's throttle context."""
    _CURRENT.reset(token)


def note_failure() -> None:
    """A presented credential did not verify (called by server.auth.tokens.verify)."""
    current = _CURRENT.get()
    if current is not None:
        current[0].failed(current[1])


def is_blocked() -> bool:
    """Is the current request's address blocked (credentials must not even be checked)?"""
    current = _CURRENT.get()
    return current is not None and current[0].blocked(current[1])


def _carries_credentials(scope) -> bool:
    if any(k == b"authorization" for k, _ in scope.get("headers", [])):
        return True
    return b"api_key=" in scope.get("query_string", b"")


def refusal(throttle: AuthThrottle | None, scope, address: str):
    """A 429 problem response for a blocked address sending credentials, else None."""
    if throttle is None or not _carries_credentials(scope) or not throttle.blocked(address):
        return None
    from server.errors import problem

    wait = throttle.retry_after(address)
    return problem(429, "too-many-failed-credentials", "Too many requests",
                   f"too many unknown, revoked or expired tokens from this address; try again in {wait} s",
                   fields=["Authorization"], headers={"Retry-After": str(wait)})
