"""Signing in once: check the server address and the token, and say clearly what is wrong."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .api import Api, ApiError, AuthError, NotKerbside, Offline, Refused


class SignInError(Exception):
    """Why sign-in failed, in words for the person holding the phone."""


@dataclass(frozen=True)
class Account:
    """A checked server address and token, the token's role, and the catalogue fetched on the way."""

    server_url: str
    token: str
    role: str  # 'crew' or 'reporter'
    categories: list[dict]


def normalise_url(raw: str) -> str:
    """The server address as a base URL ('https://' added when no scheme is given)."""
    url = (raw or "").strip().rstrip("/")
    if not url:
        raise SignInError("Enter the server address, for example https://kerbside.bathnes.gov.uk")
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise SignInError(f"{raw.strip()!r} is not a server address; it should look like https://kerbside.example")
    return url


def sign_in(raw_url: str, token: str, transport: httpx.BaseTransport | None = None) -> Account:
    """Check the address answers as Kerbside and the token is accepted; raises SignInError."""
    url = normalise_url(raw_url)
    token = (token or "").strip()
    if not token:
        raise SignInError("Enter the token your supervisor gave you.")
    api = Api(url, token, transport=transport)
    try:
        categories = api.categories()
        role = api.role()
    except Offline as exc:
        raise SignInError(f"Cannot reach the server at {url}: {exc.message}. "
                          "Check the address and that you have a signal.") from None
    except NotKerbside as exc:
        raise SignInError(f"{url} answered, but not as a Kerbside server ({exc.message}). Check the address.") \
            from None
    except AuthError as exc:
        raise SignInError(f"The server did not accept the token ({_reason(exc)}). "
                          "Ask your supervisor for a new one.") from None
    except Refused as exc:
        raise SignInError(f"The server refused the sign-in: {exc.message}") from None
    except ApiError as exc:
        raise SignInError(f"The server at {url} has a problem right now: {exc.message}. Try again shortly.") \
            from None
    finally:
        api.close()
    return Account(url, token, role, categories)


def _reason(exc: AuthError) -> str:
    return exc.message.split(": ", 1)[-1]
