"""Why the engine refused a step; each maps to one HTTP status."""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    status = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(EngineError):
    status = 404


class NotAllowed(EngineError):
    status = 409


class Forbidden(EngineError):
    status = 403


class StaleVersion(EngineError):
    status = 412


class InvalidPayload(EngineError):
    status = 422
