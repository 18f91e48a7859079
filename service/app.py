"""The application factory."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import Depends, FastAPI, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import openapi, problems
from service.api import (
    admin,
    api_keys,
    blockers,
    channels,
    escalations,
    events,
    health,
    notifications,
    officers,
    projects,
    reports,
    units,
)
from service.auth import PrincipalCache
from service.db import Database
from service.deps import reject_unknown_query
from service.jobs import Jobs
from service.limits import LimitsMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.settings import Settings, get_settings
from service.sim_clock import saved_clock, store_clock
from workflows.calendar_store import CalendarStore
from workflows.clock import ManualClock, SystemClock
from workflows.context import EngineContext
from workflows.definition import load_all

log = logging.getLogger("duban")

DESCRIPTION = """
督办 duban — the closed loop on the blockers of major investment projects:
collect → assign (交办) → acknowledge (签收) → supervise (督办) → resolve (办结)
→ verify (核验回访) → close (销号), with working-day deadlines, reminders and escalation.

Authenticate with `Authorization: Bearer <key>`. Errors are `application/problem+json`.
"""


def build_context(settings: Settings, db: Database) -> EngineContext:
    if settings.clock == "manual":
        start = (
            datetime.fromisoformat(settings.clock_start)
            if settings.clock_start
            else saved_clock(db) or SystemClock().now()
        )
        clock = ManualClock(start)
    else:
        clock = SystemClock()
    opens, closes = settings.office_hours.split("-", 1)
    return EngineContext(
        workflows=load_all(),
        clock=clock,
        calendars=CalendarStore(tz=settings.timezone),
        default_workflow=settings.workflow,
        office_open=opens.strip(),
        office_close=closes.strip(),
        lock_rows=db.is_postgres,
    )


class RequestIdMiddleware:
    """X-Request-Id on every answer: the caller's (first 64 characters) or a new one.

    Plain ASGI rather than BaseHTTPMiddleware, which runs every request through an extra
    task and a streaming wrapper.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = given.decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        raw_id = request_id.encode("latin-1")

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", raw_id))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if started:
                raise
            # Logged once, with the id the caller was given, and answered as a problem
            # (Starlette's own last resort would log it again, without the id).
            response = problems.internal_error(Request(scope))
            await response(scope, receive, send_with_id)


class HeadMiddleware:
    """HEAD answers what GET would, headers only (RFC 9110): a probe or a cache checking
    an ETag need not fetch the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


class ETagMiddleware:
    """api.md: reads return an ETag. A blocker's is its version (set by the endpoint, used
    by If-Match); any other successful read gets a weak one from its body, so a client can
    tell whether what it read has changed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def send_with_etag(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if message["status"] != 200 or any(k.lower() == b"etag" for k, _ in headers):
                    await send(message)
                    return
                held.append(message)  # until the body is known
                return
            if held and message["type"] == "http.response.body":
                start = held.pop()
                if message.get("more_body"):
                    await send(start)  # streamed: no ETag
                else:
                    digest = hashlib.sha1(message.get("body", b"")).hexdigest()[:20]
                    etag = f'W/"{digest}"'.encode()
                    start = {**start, "headers": [*start.get("headers", ()), (b"etag", etag)]}
                    await send(start)
            await send(message)

        await self.app(scope, receive, send_with_etag)


def create_app(settings: Settings | None = None, *, background: bool | None = None) -> FastAPI:
    """Build the app. `background` starts the timer sweep and dispatcher (default: settings)."""
    settings = settings or get_settings()
    db = Database(settings.database_url)
    ctx = build_context(settings, db)
    if ctx.clock.manual and settings.clock_start:
        with contextlib.suppress(SQLAlchemyError):  # not migrated yet: the first move stores it
            store_clock(db, ctx.clock.now())  # the start given is everyone's time from now on
    if ctx.default_workflow not in ctx.workflows:
        raise ValueError(
            f"DUBAN_WORKFLOW: there is no workflow definition '{ctx.default_workflow}'"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs = Jobs(app) if (background if background is not None else True) else None
        if jobs is not None:
            jobs.start()
        try:
            yield
        finally:
            if jobs is not None:
                jobs.stop()
            db.dispose()

    app = FastAPI(
        title="duban 督办",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.settings = settings
    app.state.db = db
    app.state.ctx = ctx
    app.state.metrics = Metrics(sweeps=settings.scheduler and background is not False)
    app.state.principals = PrincipalCache(settings.auth_cache_s)
    problems.install(app)
    openapi.install(app)
    # The last added runs first: metrics, HEAD, request id, limits, ETag, the app.
    app.add_middleware(ETagMiddleware)
    app.add_middleware(
        LimitsMiddleware,
        max_body=settings.max_body_bytes,
        per_minute=settings.rate_limit_per_minute,
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    for module in (
        health,
        units,
        officers,
        api_keys,
        projects,
        blockers,
        escalations,
        events,
        admin,
        reports,
        channels,
        notifications,
    ):
        app.include_router(module.router)
    return app


def worker_app() -> FastAPI:
    """One of the HTTP processes of `duban serve --workers N`: it serves requests only;
    the supervising process runs the timer sweep and the dispatcher."""
    return create_app(Settings(), background=False)
