"""FastAPI dependencies: the unit of work at the edge, the caller, the app's services."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from service.auth import Principal, admin_principal, bearer_token, principal_for_key
from service.db import Database
from service.problems import Problem
from service.settings import Settings
from service.sim_clock import follow_shared_clock

bearer = HTTPBearer(auto_error=False, description="An API key, or DUBAN_ADMIN_KEY")


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


EDGE = "duban.edge"  # session.info key: this session is the request's unit of work


def _unit_of_work_dependency(*, readonly: bool):
    """The request's unit of work, opened without a thread-pool hop (a new session does no
    I/O) and normally ended by `UnitOfWorkRoute` in the endpoint's own thread. What is
    left here runs in a worker thread only if a transaction is still open (the endpoint
    raised), shielded from cancellation so a client that hangs up never leaves a
    transaction — or SQLite's writer gate — open."""

    async def unit_of_work(request: Request) -> AsyncIterator[Session]:
        uow = request.app.state.db.unit_of_work(readonly=readonly)
        session = uow.__enter__()
        session.info[EDGE] = "read" if readonly else "write"
        exit_limiter = anyio.CapacityLimiter(1)  # never wait for pool capacity to clean up
        try:
            yield session
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                swallowed = await anyio.to_thread.run_sync(
                    uow.__exit__, type(exc), exc, exc.__traceback__, limiter=exit_limiter
                )
            if not swallowed:
                raise
        else:
            if not session.in_transaction():  # ended by the route: closing does no I/O
                uow.__exit__(None, None, None)
                return
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(uow.__exit__, None, None, None, limiter=exit_limiter)

    return unit_of_work


# Committed when the handler returns, rolled back on any error.
write_session = _unit_of_work_dependency(readonly=False)
read_session = _unit_of_work_dependency(readonly=True)


def _ending_unit_of_work(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                edge = value.info.get(EDGE)
                if edge == "write":
                    value.commit()
                elif edge == "read":
                    value.close()  # its rows stay readable, detached
        return result

    return run


class UnitOfWorkRoute(APIRoute):
    """Ends the request's unit of work in the endpoint's own worker thread.

    FastAPI validates a sync endpoint's answer in another thread-pool hop before it closes
    the `scope="function"` dependencies. Committing only then held the transaction (SQLite's
    write lock, PostgreSQL's row locks, a pooled connection) across two hops through a busy
    event loop; and once every pool thread waited for that lock, no thread was left to
    validate the holder's answer: a deadlock. Committing as the endpoint returns shortens
    the hold and removes the cycle.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _ending_unit_of_work(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _principal_from_db(request: Request, token: str) -> Principal:
    with request.app.state.db.unit_of_work(readonly=True) as session:
        return principal_for_key(session, token)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller. The admin key and cached keys cost no database read and no thread hop."""
    token = bearer_token(request.headers.get("authorization"))
    principal = admin_principal(token, request.app.state.settings.admin_key)
    if principal is None:
        cache = request.app.state.principals
        principal = cache.get(token)
        if principal is None:
            generation = cache.generation()
            principal = await run_in_threadpool(_principal_from_db, request, token)
            cache.put(token, principal, generation)
    request.state.principal = principal
    ctx = request.app.state.ctx
    if ctx.clock.manual:  # replicas share the simulated time (not a cost in production)
        await run_in_threadpool(follow_shared_clock, request.app.state.db, ctx.clock)
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


async def reject_unknown_query(request: Request) -> None:
    """A misspelt filter must not silently return everything: unknown query keys are 422.
    Nor may a path or a query hold a NUL character, which no stored text can."""
    if "\x00" in request.url.path:
        raise Problem(422, "The path contains a NUL character (%00); remove it.")
    if not request.query_params:
        return
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise Problem(
                422,
                f"Query parameter {key!r} contains a NUL character (%00); remove it.",
                field=key,
            )
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or getattr(route, "path", None) in ("/healthz", "/readyz"):
        return  # a load balancer's probe may carry its own parameters
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
