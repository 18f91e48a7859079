"""Liveness, readiness and metrics."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from service.migrations import current_revision, head_revision, is_newer, is_unknown
from service.models import Notification, Timer
from service.problems import problem_response

OUTBOX_STATES = ("pending", "failed", "dead")
logger = logging.getLogger("duban.metrics")

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Database unreachable or not migrated"}})
def readyz(request: Request):
    """Ready when the database answers and its schema is at the newest migration."""
    db = request.app.state.db
    try:
        with db.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(db.read_engine)
    except Exception as exc:  # any driver error means not ready
        return problem_response(
            request, 503, f"The database is not reachable: {type(exc).__name__}."
        )
    head = head_revision(db.url)
    if current != head and is_newer(db.url, current):
        # A rolling deploy: the newer release migrated first. Migrations keep the release
        # before them working (docs/operations.md), so this replica stays in service.
        return {"status": "ready", "database": db.dialect, "revision": current, "release": head}
    if current != head and is_unknown(db.url, current):
        return problem_response(
            request,
            503,
            f"The database records schema revision {current!r}, which no release of duban has; "
            "restore it from a backup.",
        )
    if current != head:
        return problem_response(
            request,
            503,
            f"The database schema is at {current or 'nothing'}, not {head}; run 'duban db upgrade'.",
        )
    return {"status": "ready", "database": db.dialect, "revision": current}


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition: this process's counters, and the state of the loop as the
    database has it (the same from every replica)."""
    return Response(
        request.app.state.metrics.render() + _loop_gauges(request),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


def _loop_gauges(request: Request) -> bytes:
    """Whether the database answers; and, when it does, the outbox by status and the timers
    overdue by more than a minute (no sweep running). The process's own counters are
    served whatever the database does: an outage is when they are needed."""
    up = [
        "# HELP duban_database_up Whether the database answered this scrape's queries",
        "# TYPE duban_database_up gauge",
    ]
    try:
        gauges = _database_gauges(request)
    except SQLAlchemyError:
        logger.warning("metrics: the database did not answer; serving this process's counters")
        return ("\n".join([*up, "duban_database_up 0"]) + "\n").encode()
    return ("\n".join([*up, "duban_database_up 1"]) + "\n").encode() + gauges


def _database_gauges(request: Request) -> bytes:
    db, now = request.app.state.db, request.app.state.ctx.clock.now()
    with db.unit_of_work(readonly=True) as session:
        by_status = dict(
            session.exec(
                select(Notification.status, func.count())
                .where(Notification.status.in_(OUTBOX_STATES))
                .group_by(Notification.status)
            ).all()
        )
        late = session.exec(
            select(func.count())
            .select_from(Timer)
            .where(Timer.status == "pending", Timer.due_at < now - timedelta(minutes=1))
        ).one()
    lines = [
        "# HELP duban_notifications Outbox rows by status (dead ones need an operator)",
        "# TYPE duban_notifications gauge",
        *(f'duban_notifications{{status="{s}"}} {by_status.get(s, 0)}' for s in OUTBOX_STATES),
        "# HELP duban_timers_late Pending timers due more than a minute ago (is a sweep running?)",
        "# TYPE duban_timers_late gauge",
        f"duban_timers_late {late}",
    ]
    return ("\n".join(lines) + "\n").encode()
