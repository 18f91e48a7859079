"""Idempotency-Key on creating POSTs: the same key and body answer the first response again.

The key is claimed in its own short transaction before the request's unit of work
starts, so concurrent duplicates see it at once (in flight → 409); the first answer
is stored in the same transaction as the creation itself, so they land together.

A field of the answer that must never rest in the database in clear (a new API key's
secret) is stored sealed: encrypted and authenticated with a key derived from the caller's
own bearer token and the Idempotency-Key. Only a replay that presents both again can open
it; the database alone cannot.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from service.auth import Principal, bearer_token
from service.models import IdempotencyKey
from service.problems import Problem

KEEP = timedelta(hours=48)
# A claim with no answer after this long belongs to a request that died (a crashed replica):
# clients give up on a creating POST well before.
STALE = timedelta(seconds=60)


def _hash(request: Request, body: BaseModel) -> str:
    raw = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{request.method} {request.url.path}\n{raw}".encode()).hexdigest()


def _sealing_key(request: Request, key: str) -> bytes:
    token = bearer_token(request.headers.get("authorization")).encode()
    return hashlib.sha256(b"duban-idempotency-seal\0" + token + b"\0" + key.encode()).digest()


def _stream(secret: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    return b"".join(
        hmac.new(secret, nonce + i.to_bytes(4, "big"), hashlib.sha256).digest()
        for i in range(blocks)
    )[:length]


def seal(secret: bytes, value: str) -> dict[str, str]:
    """`value` encrypted (HMAC-SHA256 in counter mode) and authenticated (encrypt-then-MAC)."""
    nonce, data = os.urandom(16), value.encode()
    box = bytes(a ^ b for a, b in zip(data, _stream(secret, nonce, len(data)), strict=True))
    tag = hmac.new(secret, b"tag" + nonce + box, hashlib.sha256).hexdigest()
    return {"nonce": nonce.hex(), "box": box.hex(), "tag": tag}


def unseal(secret: bytes, sealed: dict[str, str]) -> str | None:
    """The value, or None when `secret` is not the one it was sealed with."""
    nonce, box = bytes.fromhex(sealed["nonce"]), bytes.fromhex(sealed["box"])
    tag = hmac.new(secret, b"tag" + nonce + box, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(tag, sealed["tag"]):
        return None
    return bytes(a ^ b for a, b in zip(box, _stream(secret, nonce, len(box)), strict=True)).decode()


def _replay(stored: dict[str, Any], sealed: tuple[str, ...], secret: bytes) -> dict[str, Any]:
    answer = dict(stored)
    for name in sealed:
        value = unseal(secret, answer[name]) if isinstance(answer.get(name), dict) else None
        if value is None:
            raise Problem(
                422,
                "This Idempotency-Key was first used with another credential; use a new key.",
                field="Idempotency-Key",
            )
        answer[name] = value
    return answer


def _claim(
    db, caller: Principal, key: str, method_path: str, digest: str, now: datetime
) -> tuple[bool, IdempotencyKey | None]:
    """Take the key for this request in its own transaction: (True, None); or (False, the
    row that holds it), or (False, None) when that row went away meanwhile."""
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
        return True, None
    except IntegrityError:
        with db.unit_of_work(readonly=True) as peek:
            first = peek.exec(
                select(IdempotencyKey).where(
                    IdempotencyKey.principal == caller.actor, IdempotencyKey.key == key
                )
            ).first()
        return False, first


def idempotent(
    request: Request,
    session: Session,
    caller: Principal,
    body: BaseModel,
    create: Callable[[], tuple[int, BaseModel]],
    sealed: tuple[str, ...] = (),
) -> Any:
    """Run `create` once per Idempotency-Key. The answer's `sealed` fields are stored sealed."""
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
    claimed, first = _claim(db, caller, key, method_path, digest, now)
    if first is not None and first.status != "done" and first.created_at < now - STALE:
        # Its request died before storing an answer (a crashed replica): free the key and
        # take it for this request at once, rather than answering 409 for a while yet.
        with db.unit_of_work() as release:
            release.execute(delete(IdempotencyKey).where(IdempotencyKey.id == first.id))
        claimed, first = _claim(db, caller, key, method_path, digest, now)
    if not claimed:
        if first is None:
            raise Problem(409, "This Idempotency-Key is being released; retry the request.")
        if first.request_hash != digest or first.method_path != method_path:
            what = "body" if first.method_path == method_path else "endpoint"
            raise Problem(
                422,
                f"This Idempotency-Key was used with a different request {what}; use a new key.",
                field="Idempotency-Key",
            )
        if first.status != "done":
            raise Problem(
                409,
                "A request with this Idempotency-Key is still in flight; retry shortly.",
                headers={"Retry-After": "1"},
            )
        return JSONResponse(
            _replay(first.response_body, sealed, _sealing_key(request, key)),
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
        stored = model.model_dump(mode="json")
        for name in sealed:
            stored[name] = seal(_sealing_key(request, key), stored[name])
        row.response_body = stored
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
