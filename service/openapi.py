"""What the routes cannot say about themselves in /openapi.json: the headers and answers
that middleware and the idempotency layer add to them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

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


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
