"""FastAPI dependencies: the unit of work at the edge, the caller, the app's services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from service.auth import Principal, authenticate
from service.db import Database
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
    return principal


WriteSession = Annotated[Session, Depends(write_session, scope="function")]
ReadSession = Annotated[Session, Depends(read_session, scope="function")]
Caller = Annotated[Principal, Depends(get_principal)]
