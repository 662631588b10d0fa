"""FastAPI dependencies: the session, the current principal, role checks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.auth.tokens import verify
from server.db import get_session
from server.errors import Forbidden, Unauthorized

SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: token id, role and scope."""

    token_id: int
    name: str
    role: str
    contractor_id: int | None = None
    crew_id: int | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


def current_principal(request: Request, session: SessionDep) -> Principal:
    """The caller of a bearer-token request, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>'", fields=["Authorization"])
    row = verify(session, token.strip())
    if row is None:
        raise Unauthorized("the token is unknown, revoked or expired", fields=["Authorization"])
    return Principal(row.id, row.name, row.role, row.contractor_id, row.crew_id)


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(*roles: str):
    """Dependency factory: the caller must hold one of `roles` (admin always may)."""

    def check(user: CurrentUser) -> Principal:
        if user.role != "admin" and user.role not in roles:
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
        return user

    return Depends(check)
