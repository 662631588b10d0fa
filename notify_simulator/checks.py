"""What Notify checks before it accepts a message: the JWT, the body, the template and its placeholders.

Each failure is an (HTTP status, error, message) in Notify's error shape:
{"status_code": 400, "errors": [{"error": "BadRequestError", "message": "..."}]}.
"""
from __future__ import annotations

import re
import time
import uuid

import jwt

CLOCK_SKEW = 30  # seconds either side, as Notify allows
_EMAIL = re.compile(r"^[^@\s]+@([^.@\s]+\.)+[^.@\s]+$")
_UK_MOBILE = re.compile(r"^(?:\+?44|0)7\d{9}$")
PLACEHOLDER = re.compile(r"\(\(([a-z_]+)\)\)")


class Refused(Exception):
    """A request Notify would refuse."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def body(self) -> dict:
        return {"status_code": self.status, "errors": [{"error": self.error, "message": self.message}]}


def check_token(header: str | None, service_id: str, secret: str, now: float | None = None) -> None:
    """The Authorization header must be `Bearer <JWT>`: HS256, iss = service id, iat within 30 s, signed."""
    if not header or not header.startswith("Bearer "):
        raise Refused(401, "AuthError", "Unauthorized: authentication token must be provided")
    token = header[len("Bearer "):].strip()
    try:
        head = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Refused(403, "AuthError", "Invalid token: signature, api token not found") from None
    if head.get("alg") != "HS256":
        raise Refused(403, "AuthError", "Invalid token: algorithm used is not HS256")
    if claims.get("iss") != service_id:
        raise Refused(403, "AuthError", "Invalid token: service id not found" if claims.get("iss")
                      else "Invalid token: iss field not provided")
    if "iat" not in claims:
        raise Refused(403, "AuthError", "Invalid token: iat field not provided")
    now = time.time() if now is None else now
    if abs(now - float(claims["iat"])) > CLOCK_SKEW:
        raise Refused(403, "AuthError", "Error: Your system clock must be accurate to within 30 seconds")
    try:
        jwt.decode(token, secret, algorithms=["HS256"], options={"verify_iat": False})
    except jwt.PyJWTError:
        raise Refused(403, "AuthError", "Invalid token: signature, api token not found") from None


def check_body(kind: str, body, templates: dict[str, dict]) -> tuple[dict, str]:
    """(the template, the recipient) of a valid POST /v2/notifications/{kind} body."""
    if not isinstance(body, dict):
        raise Refused(400, "ValidationError", "Invalid JSON supplied in POST data")
    field = "email_address" if kind == "email" else "phone_number"
    allowed = {"template_id", "personalisation", "reference", field,
               "email_reply_to_id" if kind == "email" else "sms_sender_id", "one_click_unsubscribe_url"}
    if kind == "sms":
        allowed.discard("one_click_unsubscribe_url")
    for name in body:
        if name not in allowed:
            raise Refused(400, "ValidationError", f"Additional properties are not allowed ({name} was unexpected)")
    for name in ("template_id", field):
        if not isinstance(body.get(name), str):
            raise Refused(400, "ValidationError", f"{name} is a required property")
    try:
        uuid.UUID(body["template_id"])
    except ValueError:
        raise Refused(400, "ValidationError", "template_id is not a valid UUID") from None
    to = body[field]
    if kind == "email" and not _EMAIL.match(to):
        raise Refused(400, "ValidationError", "email_address Not a valid email address")
    if kind == "sms" and not _UK_MOBILE.match(re.sub(r"[\s()-]", "", to)):
        raise Refused(400, "ValidationError", "phone_number Not a UK mobile number")
    if "reference" in body and not isinstance(body["reference"], str):
        raise Refused(400, "ValidationError", "reference is not of type string")
    values = body.get("personalisation") or {}
    if not isinstance(values, dict):
        raise Refused(400, "ValidationError", "personalisation is not of type object")
    template = templates.get(body["template_id"])
    if template is None or template["type"] != kind:
        raise Refused(400, "BadRequestError", "Template not found")
    text = template.get("subject", "") + template["body"]
    missing = [p for p in dict.fromkeys(PLACEHOLDER.findall(text)) if p not in values]
    if missing:
        raise Refused(400, "BadRequestError", f"Missing personalisation: {', '.join(missing)}")
    return template, to


def render(text: str, values: dict) -> str:
    """Placeholders filled in."""
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
