"""FastAPI dependencies: the session, the current principal, role checks."""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Annotated, Union, get_args, get_origin

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.auth import throttle
from server.auth.models import OPEN311_CLIENT
from server.auth.tokens import LOOKUP_JSON, hash_token, live, verify
from server.db import get_session
from server.errors import Forbidden, Unauthorized, Unprocessable

SessionDep = Annotated[Session, Depends(get_session)]
CHALLENGE = {"WWW-Authenticate": "Bearer"}


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


def bearer_token(request: Request) -> str:
    """The bearer token the request carries, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>'", fields=["Authorization"], headers=CHALLENGE)
    return token.strip()


def principal_from(row) -> Principal:
    """The Principal of a live token row (tokens.verify / tokens.live), or 401 when there is none."""
    if row is None:
        raise Unauthorized("the token is unknown, revoked or expired", fields=["Authorization"], headers=CHALLENGE)
    if row.role == OPEN311_CLIENT:  # a front end's key speaks GeoReport only: never the staff or contractor API
        raise Forbidden("an open311_client token is an api_key for /open311/v2 only")
    return Principal(row.id, row.name, row.role, row.contractor_id, row.crew_id)


def current_principal(request: Request, session: SessionDep) -> Principal:
    """The caller of a bearer-token request, or 401."""
    return principal_from(verify(session, bearer_token(request)))


@dataclass(frozen=True)
class Caller:
    """A caller not yet looked up: a handler that folds the token lookup into its own first statement.

    `column` is selected alongside the handler's own columns (bind `token_hash`); resolve() then judges the
    result exactly as current_principal and require(*roles) would: 401, then 403.
    """

    digest: str
    roles: tuple[str, ...]
    column = LOOKUP_JSON

    @classmethod
    def from_request(cls, request: Request, roles: tuple[str, ...]) -> "Caller":
        token = bearer_token(request)
        if throttle.is_blocked():  # too many failures from this address: do not even look
            raise Unauthorized("the token is unknown, revoked or expired", fields=["Authorization"],
                               headers=CHALLENGE)
        return cls(hash_token(token), roles)

    def resolve(self, found) -> Principal:
        return check_role(principal_from(live(found, self.digest)), self.roles)


CurrentUser = Annotated[Principal, Depends(current_principal)]


def check_role(user: Principal, roles: tuple[str, ...]) -> Principal:
    """The caller must hold one of `roles` (admin always may), else 403."""
    if user.role != "admin" and user.role not in roles:
        raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
    return user


def require(*roles: str):
    """Dependency factory: the caller must hold one of `roles` (admin always may)."""

    async def check(user: CurrentUser) -> Principal:  # async: no I/O, so no trip through the thread pool
        return check_role(user, roles)

    check.roles = roles  # read by server.openapi to declare the 403
    return Depends(check)


def authenticate(request: Request, session: Session, roles: tuple[str, ...]) -> Principal:
    """current_principal and require(*roles) as one plain call.

    For a hot handler that does its whole job in one trip through the thread pool (the token lookup is
    database I/O, so as a dependency of its own it costs a trip). Declare it with authenticated_in_handler.
    """
    return check_role(current_principal(request, session), roles)


def authenticated_in_handler(*roles: str):
    """Declares, for OpenAPI and the access matrix, that the handler calls authenticate(…, roles) first."""

    async def declared() -> None:  # nothing to do here: the handler authenticates before anything else
        return None

    declared.roles = roles
    declared.bearer = True  # read by server.openapi: the route takes a bearer token (401, 429)
    return Depends(declared)


def _is_list(annotation) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_list(a) for a in get_args(annotation))
    if origin is Annotated:
        return _is_list(get_args(annotation)[0])
    return origin in (list, set, tuple, frozenset)


async def single_valued_query(request: Request) -> None:
    """App-wide: a query parameter declared as one value may be given once (not silently last-wins).

    Async: it only reads the request, so it needs no worker thread.
    """
    if not request.scope.get("query_string"):
        return  # nothing given, nothing repeated (most requests: skip walking the dependency tree)
    stack = [getattr(request.scope.get("route"), "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        for param in dependant.query_params:
            name = param.alias or param.name
            n = len(request.query_params.getlist(name))
            if n > 1 and not _is_list(param.field_info.annotation):
                raise Unprocessable(f"{name} was given {n} times; give it once", fields=[name],
                                    code="repeated-parameter")
        stack.extend(dependant.dependencies)
