"""Which webhook URLs we will post to: http(s) only, and no private or loopback address unless allowed."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from server.config import get_settings
from server.errors import Unprocessable


class UnsafeUrl(ValueError):
    """A URL we refuse to call; `code` is the problem type and `retryable` says whether DNS may yet answer."""

    def __init__(self, message: str, code: str = "invalid-webhook-url", retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"the host {host!r} does not resolve ({exc})", code="unresolvable-webhook-url",
                        retryable=True) from None
    out = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        # An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
        mapped = getattr(ip, "ipv4_mapped", None)
        out.append(mapped or ip)
    return out


def check_url(url: str, *, allow_private: bool | None = None) -> str:
    """Return the URL if we may post to it, else raise UnsafeUrl (scheme, credentials, private address)."""
    s = get_settings()
    allow_private = s.allow_private_webhook_urls if allow_private is None else allow_private
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl(f"the URL cannot be read: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("a webhook URL must start with http:// or https://")
    if s.env == "production" and parts.scheme != "https":
        raise UnsafeUrl("in production a webhook URL must be https")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("put credentials in the shared secret, not in the URL")
    if parts.fragment:
        raise UnsafeUrl("a webhook URL has no #fragment")
    if not allow_private:
        for ip in _addresses(parts.hostname, port):
            if not ip.is_global or ip.is_multicast:
                raise UnsafeUrl(f"the host resolves to {ip}, a private, loopback or reserved address",
                                code="private-webhook-url")
    return url.strip()


def validated(url: str) -> str:
    """check_url for API input: a refusal is a 422 problem naming the `url` field."""
    try:
        return check_url(url)
    except UnsafeUrl as exc:
        raise Unprocessable(str(exc), fields=["url"], code=exc.code) from None
