"""FastAPI dependencies: the unit of work at the edge, the caller, the app's services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from service.auth import Principal, authenticate
from service.db import Database
from service.problems import Problem
from service.settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key, or DUBAN_ADMIN_KEY")


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def write_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed when the handler returns, rolled back on error."""
    with request.app.state.db.unit_of_work() as session:
        yield session


def read_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.unit_of_work(readonly=True) as session:
        yield session


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    header = request.headers.get("authorization")
    with request.app.state.db.unit_of_work(readonly=True) as session:
        principal = authenticate(session, header, request.app.state.settings.admin_key)
    request.state.principal = principal
    if request.method in ("GET", "HEAD") and not principal.has("read"):
        raise Problem(403, "This API key lacks the 'read' scope needed to read.")
    return principal


WriteSession = Annotated[Session, Depends(write_session, scope="function")]
ReadSession = Annotated[Session, Depends(read_session, scope="function")]
Caller = Annotated[Principal, Depends(get_principal)]


def _query_names(dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """A misspelt filter must not silently return everything: unknown query keys are 422."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    repeated = sorted(
        {
            k
            for k, _ in request.query_params.multi_items()
            if len(request.query_params.getlist(k)) > 1
        }
    )
    if repeated:
        raise Problem(
            422, f"Query parameter {repeated[0]!r} is given more than once.", field=repeated[0]
        )
    unknown = sorted(k for k in request.query_params if k not in known)
    if unknown:
        listed = ", ".join(repr(k) for k in unknown[:5])
        raise Problem(
            422,
            f"Unknown query parameter {listed}; this endpoint takes: {', '.join(sorted(known)) or 'none'}.",
            field=unknown[0],
        )
