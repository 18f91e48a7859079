"""What the routes cannot say about themselves in /openapi.json: the headers and answers
that middleware and the idempotency layer add to them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header
from pydantic import BaseModel, Field

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    "description": "Makes a retry safe: the same key and body answer the first response "
    "again (kept at least 24 h); the same key with another body is 422; while the first "
    "request with the key is still running, 409.",
}
TOO_LARGE = {
    "description": "The request body is larger than DUBAN_MAX_BODY_BYTES",
    "content": {"application/problem+json": {}},
}


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.get("responses", {})
            if "requestBody" in operation:
                responses.setdefault("413", TOO_LARGE)
            if method == "post" and "201" in responses:  # a creating POST
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
                replay = responses.get("200")
                if replay is not None and "content" not in replay:
                    replay["content"] = responses["201"].get("content", {})
    return schema


class TimelineEntry(BaseModel):
    id: int
    seq: int
    action: str
    actor: str
    state_before: str | None
    state_after: str
    at: str
    payload: dict[str, Any]
    hash: str


class Delivery(BaseModel):
    """What duban POSTs to a subscriber's URL (docs/integration.md, "Webhooks")."""

    type: str = Field(examples=["blocker.escalated"])
    blocker_id: int
    action: str
    state: str
    escalation_level: int
    version: int = Field(description="Apply a delivery only if it is newer than what you hold")
    project: str | None
    unit: str | None
    deadline: str | None = Field(description="YYYY-MM-DD")
    due_at: str | None = Field(description="RFC 3339, Asia/Shanghai")
    overdue: bool
    external_ref: str | None
    seq: int
    at: str
    event: TimelineEntry


def _document_webhooks(app: FastAPI) -> None:
    @app.webhooks.post("blocker-event")
    def blocker_event(
        body: Delivery,
        x_duban_event: Annotated[str, Header(description="The event type, e.g. blocker.escalated")],
        x_duban_delivery: Annotated[
            str, Header(description="Unique per delivery, the same on every retry: dedupe on it")
        ],
        x_duban_signature: Annotated[
            str,
            Header(description="sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>"),
        ],
    ) -> None:
        """Every event a subscription asked for (POST /api/v1/webhooks), at least once: answer
        2xx; 408, 429, 5xx and timeouts are retried with backoff under the same delivery id."""


def install(app: FastAPI) -> None:
    _document_webhooks(app)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
