"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from service.migrations import current_revision, head_revision, is_newer
from service.problems import problem_response

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
    if current != head:
        return problem_response(
            request,
            503,
            f"The database schema is at {current or 'nothing'}, not {head}; run 'duban db upgrade'.",
        )
    return {"status": "ready", "database": db.dialect, "revision": current}


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
