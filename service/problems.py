"""RFC 9457 problem details for every error the API can answer."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("duban.api")

INTERNAL_ERROR = "An internal error occurred; it has been logged with the request id."

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise anywhere below a router to answer a problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_ or "about:blank"
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    request: Request | None,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_ or "about:blank",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
            # Also as a header: a 500 is answered outside the middleware that adds it.
            headers = {**(headers or {}), "X-Request-Id": request_id}
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def internal_error(request: Request) -> JSONResponse:
    """The answer to an exception nothing handled, logged once with the request's id (call
    it while the exception is being handled)."""
    request_id = getattr(request.state, "request_id", None)
    log.exception(
        "unhandled error on %s %s (request id %s)", request.method, request.url.path, request_id
    )
    return problem_response(request, 500, INTERNAL_ERROR)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _plain_reason(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field you can set"
    if kind == "json_invalid":
        return "is not valid JSON"
    message = error.get("msg", "is invalid")
    return message[0].lower() + message[1:] if message else "is invalid"


def validation_problem(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem_response(
            request, 400, "The request body is not valid JSON.", title="Malformed JSON"
        )
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if (
        media != "application/json"
        and not media.endswith("+json")
        and any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors)
    ):
        return problem_response(
            request,
            422,
            "The request body must be JSON, sent with Content-Type: application/json "
            f"(this one came as {content_type or 'no content type'!r}).",
            title="Invalid request",
            errors=[{"field": "body", "reason": "is not sent as application/json"}],
        )
    fields = []
    for error in errors:
        name = _field_name(tuple(error.get("loc", ())))
        if error.get("type") == "nul_character":  # found by a whole-body check: say where
            where = error["ctx"]["field"]
            name = where if name == "body" else f"{name}.{where}"
        fields.append({"field": name, "reason": _plain_reason(error)})
    detail = "; ".join(f"{f['field']} {f['reason']}" for f in fields)
    return problem_response(
        request, 422, f"Invalid request: {detail}.", title="Invalid request", errors=fields
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path, asked of the router itself (routes
    may sit in included routers)."""
    methods = {
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request,
            exc.status,
            exc.detail,
            title=exc.title,
            type_=exc.type,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(request, list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"There is no resource at {request.url.path}."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # A uniqueness race lost to a concurrent request: the transaction was rolled back.
        log.info("integrity conflict on %s %s: %s", request.method, request.url.path, exc.orig)
        return problem_response(
            request,
            409,
            "This conflicts with a record created at the same moment; read it and retry.",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request)
