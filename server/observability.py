"""Request ids, structured JSON logs, security headers and per-request metrics (one outer ASGI middleware).

Every log line written while a request is handled carries that request's id: the id lives in a
context variable and a log-record factory copies it onto every record, so it reaches any handler
(ours, uvicorn's, pytest's). Sync endpoints run in worker threads; anyio copies the context there.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode


REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("kerbside_request_id", default=None)
# Accept a caller's id only if it is short and plain (it ends up in every log line and response).
SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
# Query parameters whose values never reach a log line.
SECRET_PARAMS = frozenset({"api_key", "token", "access_token", "secret", "password", "key", "signature"})
# Bearer tokens minted by server.auth.tokens, anything after "Bearer ", and secret-named query values
# (a URL logged by a library), masked in every log line.
_TOKENISH = re.compile(r"(ks_)[A-Za-z0-9_\-]{8,}|((?i:bearer)\s+)[^\s\"',]+"
                       r"|((?i:api_key|access_token|token|secret|password|signature)=)[^&\s\"',]+")
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc load their scripts from a CDN with inline bootstrapping: no CSP of ours there.
DOC_PAGES = ("/docs", "/redoc")
access_log = logging.getLogger("kerbside.access")
log = logging.getLogger("kerbside")

_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime",
                                                                                    "request_id", "taskName"}


def redact(text: str) -> str:
    """Mask anything that looks like one of our bearer tokens."""
    # Every log line passes through here: skip the regex when none of its anchors can be present.
    if "ks_" not in text and "=" not in text and "bearer" not in text.lower():
        return text
    return _TOKENISH.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)


def safe_target(path: str, query: str) -> str:
    """The request target for a log line, with secret query values masked."""
    if not query:
        return path
    pairs = [(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """Plain lines for a developer's terminal, still with the request id and still redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest swaps it per test)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _install_record_factory() -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, "kerbside", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    factory.kerbside = True
    logging.setLogRecordFactory(factory)


_install_record_factory()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """One handler on the root logger (JSON or text); uvicorn's loggers go through it too. Idempotent."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "kerbside", False)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.kerbside = True
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    # Our own access line replaces uvicorn's (which would print query strings unmasked); HTTP client
    # libraries log every URL they call at INFO, query strings (a contractor's api_key) included.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def route_template(scope) -> str:
    """The matched route's path template (bounded label values), or 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


_ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"))
_CSP = (b"content-security-policy", API_CSP.encode())
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_NO_STORE = (b"cache-control", b"no-store")


def _response_headers(message: dict, scope, rid: str, has_auth: bool) -> None:
    """Add the request id and the security headers to a response start, keeping any the app set itself.

    Works on the raw header list (every answer passes here: no header object, one pass over the names).
    """
    raw = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]  # ours replaces any
    present = {k.lower() for k, _ in raw}
    raw.append((b"x-request-id", rid.encode("latin-1")))
    raw.extend(h for h in _ALWAYS if h[0] not in present)
    if _CSP[0] not in present and not scope.get("path", "").startswith(DOC_PAGES):
        raw.append(_CSP)
    if scope.get("scheme") == "https" and _HSTS[0] not in present:
        raw.append(_HSTS)
    if has_auth and _NO_STORE[0] not in present:
        raw.append(_NO_STORE)
    message["headers"] = raw


class RequestContext:
    """Outermost middleware: request id, security headers, access log, request metrics, last-resort 500."""

    def __init__(self, app, throttle=None) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from server import metrics
        from server.auth import throttle as auth_throttle

        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), "")
        rid = given if SANE_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        client = (scope.get("client") or ("", 0))[0]
        throttle_token = auth_throttle.enter(self.throttle, client)
        has_auth = any(k == b"authorization" for k, _ in scope.get("headers", []))
        started = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                _response_headers(message, scope, rid, has_auth)
            await send(message)

        try:
            refused = auth_throttle.refusal(self.throttle, scope, client)
            if refused is not None:
                await refused(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not state["started"]:
                from server.errors import problem

                await problem(500, "internal-error", "Internal error", "An unexpected error occurred.",
                              request_id=rid)(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            metrics.observe_request(scope.get("method", ""), route, state["status"], elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("%s %s %s", scope.get("method"), route, state["status"], extra={
                    "http": {"method": scope.get("method"), "route": route, "status": state["status"],
                             "target": safe_target(scope.get("path", ""),
                                                   scope.get("query_string", b"").decode("latin-1")),
                             "duration_ms": round(elapsed * 1000, 1), "client": client}})
            auth_throttle.leave(throttle_token)
            REQUEST_ID.reset(token)
