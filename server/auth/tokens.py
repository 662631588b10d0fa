"""Create, verify and revoke bearer tokens (only a SHA-256 of each token is stored)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timezone
from types import SimpleNamespace

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from server.auth import throttle
import re

from server.auth.models import OPEN311_CLIENT, ROLES, ApiToken
from server.dispatch.models import Contractor, Crew
from server.errors import Unprocessable

PREFIX = "ks_"
CLIENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, role: str, *, name: str | None = None, contractor: str | None = None,
                 crew: str | None = None, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Make a token for a role (contractor tokens need a contractor); returns the row and the secret."""
    if role not in ROLES:
        raise Unprocessable(f"unknown role {role!r}; one of {', '.join(ROLES)}", fields=["role"])
    contractor_id = crew_id = None
    if role == OPEN311_CLIENT:
        # The name is the client's identity: its requests' idempotency keys and the channel shown on reports.
        if not name or not CLIENT_NAME.match(name):
            raise Unprocessable("an open311_client token needs --name CLIENT, lower case letters, digits, '.', "
                                "'_' or '-' (e.g. fixmystreet)", fields=["name"])
        if contractor or crew:
            raise Unprocessable("an open311_client token has no contractor or crew", fields=["role"])
    if role == "contractor":
        if not contractor:
            raise Unprocessable("a contractor token needs --contractor NAME", fields=["contractor"])
    if contractor:
        c = session.scalar(select(Contractor).where(Contractor.name == contractor))
        if c is None:
            raise Unprocessable(f"no contractor named {contractor!r}", fields=["contractor"])
        contractor_id = c.id
    if crew:
        cr = session.scalar(select(Crew).where(Crew.name == crew))
        if cr is None:
            raise Unprocessable(f"no crew named {crew!r}", fields=["crew"])
        crew_id = cr.id
    secret = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name or role, role=role, token_hash=hash_token(secret), prefix=secret[:10],
                   contractor_id=contractor_id, crew_id=crew_id, expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, secret


_LOOKUP = select(ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.contractor_id, ApiToken.crew_id,
                 ApiToken.token_hash, ApiToken.revoked_at, ApiToken.expires_at).where(
    ApiToken.token_hash == bindparam("h"))


def verify(session: Session, presented: str):
    """The live token row for a presented secret, or None (revoked, expired, unknown, or the caller throttled)."""
    if throttle.is_blocked():  # too many failures from this address: do not even look
        return None
    digest = hash_token(presented)
    # Columns, not the entity: this runs on every request, and a plain row skips the ORM's identity map.
    # On the session's connection (Core): the ORM layer adds nothing to a lookup of plain columns.
    return live(session.connection().execute(_LOOKUP, {"h": digest}).first(), digest)


# The same lookup as a column of another statement (a hot path folding it into its first round trip).
LOOKUP_JSON = ("(SELECT json_build_object('id', t.id, 'name', t.name, 'role', t.role, 'contractor_id', "
               "t.contractor_id, 'crew_id', t.crew_id, 'token_hash', t.token_hash, 'revoked_at', t.revoked_at, "
               "'expires_at', t.expires_at) FROM api_tokens t WHERE t.token_hash = :token_hash)")


def live(row, digest: str):
    """The looked-up row (a row, or LOOKUP_JSON's object) if its token is live, else None (a failure counted)."""
    if isinstance(row, dict):
        row = SimpleNamespace(**{**row, **{k: datetime.fromisoformat(row[k]) if row[k] else None
                                           for k in ("revoked_at", "expires_at")}})
    # The lookup is by hash; compare again in constant time so timing says nothing of near misses.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        throttle.note_failure()
        return None
    now = datetime.now(timezone.utc)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        throttle.note_failure()
        return None
    return row


def revoke(session: Session, token_id_or_prefix: str) -> int:
    """Revoke tokens by id or by their printed prefix; returns how many were revoked."""
    q = select(ApiToken).where(ApiToken.revoked_at.is_(None))
    if token_id_or_prefix.isdigit():
        q = q.where(ApiToken.id == int(token_id_or_prefix))
    else:
        q = q.where(ApiToken.prefix == token_id_or_prefix[:10])
    rows = list(session.scalars(q))
    for r in rows:
        r.revoked_at = datetime.now(timezone.utc)
    return len(rows)
