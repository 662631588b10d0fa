"""The Kerbside API as the field app uses it (httpx), with errors sorted into retryable and not.

Only 200/201 counts as done. Offline, timeouts, 5xx, 408 and 429 are retryable; 401 means the token
is no good (sign in again, keep the queue); any other 4xx is a refusal carrying the server's reason
(problem+json `detail`) and its stable code (the end of `type`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .models import Asset, distance_m

RETRYABLE_STATUSES = {408, 429}
TIMEOUT = httpx.Timeout(20.0, connect=8.0)


class ApiError(Exception):
    """Something went wrong talking to the server; `retryable` says whether to try again later."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 fields: list[str] | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.fields = message, status, code, fields or []


class Offline(ApiError):
    """No answer: no network, the server is down or the connection dropped."""


class ServerTrouble(ApiError):
    """The server answered but could not do it now (5xx, 408, 429, or an answer we do not expect)."""


class AuthError(ApiError):
    """401: the token is unknown, revoked or expired."""

    retryable = False


class Refused(ApiError):
    """A 4xx refusal (other than 401/408/429): trying again will not help."""

    retryable = False


class NotKerbside(ApiError):
    """The address answers, but not as a Kerbside server."""

    retryable = False


def problem_of(r: httpx.Response) -> tuple[str, str | None, list[str]]:
    """(detail, code, fields) of a problem+json answer, with a fallback for anything else."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("detail" in body or "type" in body):
        code = str(body.get("type") or "").rstrip("/").rsplit("/", 1)[-1] or None
        detail = body.get("detail") or body.get("title") or f"HTTP {r.status_code}"
        if not isinstance(detail, str):  # FastAPI's plain 422 has a list here
            detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        return detail, code, list(body.get("fields") or [])
    return f"HTTP {r.status_code} {r.reason_phrase}".strip(), None, []


class Api:
    """One server, one token; a keep-alive connection pool."""

    def __init__(self, base_url: str, token: str | None, *, transport: httpx.BaseTransport | None = None,
                 timeout: httpx.Timeout = TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc or self.base_url
        headers = {"Accept": "application/json", "User-Agent": "kerbside-fieldapp/1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TimeoutException:
            raise Offline(f"{self.host} did not answer in time") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError,
                httpx.NetworkError) as exc:
            raise Offline(f"cannot reach {self.host} ({type(exc).__name__})") from None
        if r.status_code in ok:
            return r
        detail, code, fields = problem_of(r)
        if r.status_code == 401:
            raise AuthError(f"the server refused the token: {detail}", status=401, code=code, fields=fields)
        if r.status_code >= 500 or r.status_code in RETRYABLE_STATUSES:
            raise ServerTrouble(f"the server could not take it now: {detail}", status=r.status_code, code=code)
        if 400 <= r.status_code < 500:
            raise Refused(detail, status=r.status_code, code=code, fields=fields)
        raise ServerTrouble(f"unexpected answer HTTP {r.status_code}", status=r.status_code)

    def _json(self, r: httpx.Response) -> Any:
        try:
            return r.json()
        except ValueError:
            raise NotKerbside(f"{self.host} answered with something that is not JSON", status=r.status_code) from None

    # -- reading ------------------------------------------------------------------------------
    def categories(self) -> list[dict]:
        """The category catalogue (public)."""
        try:
            body = self._json(self._call("GET", "/api/v1/categories"))
        except Refused as exc:
            raise NotKerbside(f"{self.host} answered HTTP {exc.status} for the category list", status=exc.status) \
                from None
        if not isinstance(body, list) or not all(isinstance(c, dict) and "code" in c for c in body):
            raise NotKerbside(f"{self.host} does not answer like a Kerbside server")
        return body

    def role(self) -> str:
        """'crew' for a crew token, 'reporter' for any other valid token (raises AuthError if refused)."""
        try:
            self._call("GET", "/api/v1/me/jobs", params={"limit": 1})
            return "crew"
        except Refused as exc:
            if exc.status == 403:
                return "reporter"
            raise

    def report(self, reference: str) -> dict:
        """A report as first answered plus its job now (`job_now`)."""
        return self._json(self._call("GET", f"/api/v1/reports/{reference}"))

    def my_jobs(self, limit: int = 200) -> list[dict]:
        """The crew's jobs, open first, soonest due first."""
        return self._json(self._call("GET", "/api/v1/me/jobs", params={"limit": limit}))["items"]

    def my_plan(self) -> dict:
        """Today's ordered stops for the crew (empty when today is not planned)."""
        return self._json(self._call("GET", "/api/v1/me/plan"))

    def job(self, reference: str) -> dict:
        """One job with its asset location, timeline and photos."""
        return self._json(self._call("GET", f"/api/v1/jobs/{reference}"))

    def assets_near(self, layer: str, lat: float, lon: float, radius_m: float = 150, limit: int = 50) -> list[Asset]:
        """Assets of a layer around a point, nearest first (OGC API Features items with a bbox)."""
        dlat = radius_m / 111_320.0
        dlon = radius_m / (111_320.0 * max(0.01, math.cos(math.radians(lat))))
        bbox = f"{lon - dlon:.6f},{lat - dlat:.6f},{lon + dlon:.6f},{lat + dlat:.6f}"
        r = self._call("GET", f"/ogc/collections/{layer}/items", params={"bbox": bbox, "limit": limit})
        out = []
        for f in self._json(r).get("features") or ():
            geom, props = f.get("geometry") or {}, f.get("properties") or {}
            if geom.get("type") != "Point":
                continue
            alon, alat = geom["coordinates"][:2]
            ref = str(props.get("ref") or f.get("id"))
            out.append(Asset(layer, ref, props.get("name"), alat, alon, distance_m(lat, lon, alat, alon)))
        return sorted(out, key=lambda a: a.distance_m)

    # -- writing ------------------------------------------------------------------------------
    def submit_report(self, payload: dict) -> tuple[int, dict]:
        """POST a report: (201 new | 200 a replay, the server's answer)."""
        r = self._call("POST", "/api/v1/reports", ok=(200, 201), json=payload)
        return r.status_code, self._json(r)

    def report_photo(self, reference: str, client_id: str, path: str | Path) -> dict:
        """Upload a report photo (idempotent by client_id)."""
        return self._upload(f"/api/v1/reports/{reference}/photos", client_id, path, {})

    def job_photo(self, reference: str, client_id: str, path: str | Path, kind: str = "completion") -> dict:
        """Upload a job photo (e.g. completion evidence), idempotent by client_id."""
        return self._upload(f"/api/v1/jobs/{reference}/photos", client_id, path, {"kind": kind})

    def _upload(self, url: str, client_id: str, path: str | Path, extra: dict) -> dict:
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise Refused(f"the photo file {p.name} cannot be read on this device ({exc.strerror})",
                          code="photo-missing-on-device") from None
        kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
        r = self._call("POST", url, ok=(200, 201), data={"client_id": client_id, **extra},
                       files={"file": (p.name, data, kind)})
        return self._json(r)

    def job_status(self, reference: str, body: dict) -> dict:
        """Move a job (crew: accepted, in_progress, completed…); idempotent by body['client_id']."""
        return self._json(self._call("POST", f"/api/v1/jobs/{reference}/status", ok=(200, 201), json=body))
