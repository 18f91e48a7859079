"""Idempotency-Key on creating POSTs: the same key and body answer the first response again.

The key is claimed in its own short transaction before the request's unit of work
starts, so concurrent duplicates see it at once (in flight → 409); the first answer
is stored in the same transaction as the creation itself, so they land together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from service.auth import Principal
from service.models import IdempotencyKey
from service.problems import Problem

KEEP = timedelta(hours=48)


def _hash(request: Request, body: BaseModel) -> str:
    raw = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{request.method} {request.url.path}\n{raw}".encode()).hexdigest()


def idempotent(
    request: Request,
    session: Session,
    caller: Principal,
    body: BaseModel,
    create: Callable[[], tuple[int, BaseModel]],
) -> Any:
    key = request.headers.get("idempotency-key")
    if key is None:
        status, model = create()
        return (
            JSONResponse(model.model_dump(mode="json"), status_code=status)
            if status != 201
            else model
        )
    key = key.strip()
    if not key or len(key) > 200:
        raise Problem(422, "Idempotency-Key must be 1 to 200 characters.", field="Idempotency-Key")
    db = request.app.state.db
    digest = _hash(request, body)
    now = datetime.now(UTC)
    method_path = f"{request.method} {request.url.path}"
    try:
        with db.unit_of_work() as claim:
            claim.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))
            claim.add(
                IdempotencyKey(
                    principal=caller.actor,
                    key=key,
                    method_path=method_path,
                    request_hash=digest,
                    created_at=now,
                    expires_at=now + KEEP,
                )
            )
    except IntegrityError:
        with db.unit_of_work(readonly=True) as peek:
            first = peek.exec(
                select(IdempotencyKey).where(
                    IdempotencyKey.principal == caller.actor, IdempotencyKey.key == key
                )
            ).first()
        if first is None:
            raise Problem(
                409, "This Idempotency-Key is being released; retry the request."
            ) from None
        if first.request_hash != digest or first.method_path != method_path:
            raise Problem(
                422,
                "This Idempotency-Key was used with a different request body; use a new key.",
                field="Idempotency-Key",
            ) from None
        if first.status != "done" and first.created_at < now - timedelta(minutes=2):
            with db.unit_of_work() as release:  # its request died before storing an answer
                release.execute(delete(IdempotencyKey).where(IdempotencyKey.id == first.id))
        if first.status != "done":
            raise Problem(
                409,
                "A request with this Idempotency-Key is still in flight; retry shortly.",
                headers={"Retry-After": "1"},
            ) from None
        return JSONResponse(
            first.response_body,
            status_code=first.response_status or 200,
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        status, model = create()
        row = session.exec(
            select(IdempotencyKey).where(
                IdempotencyKey.principal == caller.actor, IdempotencyKey.key == key
            )
        ).one()
        row.status, row.response_status = "done", status
        row.response_body = model.model_dump(mode="json")
        session.flush()
    except BaseException:
        session.rollback()  # let go of the write lock before releasing the key
        with db.unit_of_work() as release:
            release.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.principal == caller.actor, IdempotencyKey.key == key
                )
            )
        raise
    return JSONResponse(model.model_dump(mode="json"), status_code=status)
